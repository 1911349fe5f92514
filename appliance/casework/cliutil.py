"""What the casework commands share with ``appliance.cli`` without importing it
(``python -m appliance.cli`` runs it as __main__; importing it again would
re-execute it): ``register`` hands over its ``emit`` and ``current_settings``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from appliance.settings import Settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="TRACEHOLD_DATA_DIR",
                 help="Data folder (default ~/.tracehold)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

_hooks: dict[str, Callable[..., Any]] = {}


def install(emit_fn: Callable[[Any, bool, list[str]], None],
            settings_fn: Callable[[Path | None], Settings]) -> None:
    _hooks.update(emit=emit_fn, settings=settings_fn)


def emit(data: Any, as_json: bool, lines: list[str]) -> None:
    _hooks["emit"](data, as_json, lines)


def settings(data_dir: Path | None) -> Settings:
    s: Settings = _hooks["settings"](data_dir)
    return s


def write_atomic(path: Path, data: bytes) -> None:
    """Write whole or not at all: a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
