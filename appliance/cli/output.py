"""What every command shares: the ``--data-dir`` and ``--json`` options, the settings
they resolve to, one way to print, and whole-or-nothing file writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from appliance.settings import Settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="TRACEHOLD_DATA_DIR",
                 help="Data folder (default ~/.tracehold)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def emit(data: Any, as_json: bool, lines: list[str]) -> None:
    """One way every read command prints: JSON for machines, lines for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            typer.echo(line)


def settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """The settings a command talks to: a running stack's effective ones for that data
    folder if there is one, else resolved from flags, environment, config.toml."""
    from appliance.settings import resolve

    return resolve(data_dir, running=True, **overrides)


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
