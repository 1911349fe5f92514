"""Builds the ``tracehold`` command from the command modules beside it, in one table,
and runs it: a ``TraceholdError`` becomes ``Error: <message>`` and exit 1.

``main`` loads only the module of the command it was asked for: building every
command costs Typer ~70 ms of type-hint evaluation and the imports of every module, and
``tracehold status`` is run in loops (``watch``). ``--help``, an unknown word or no word
build the whole tree, so help and errors list every command. ``app`` (the whole tree)
is built on first use, for the docs generator and tests.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from appliance.errors import TraceholdError

HELP = "Tracehold: a self-hosted GenAI observability appliance."
# command word: (module in appliance.cli, attribute, a sub-app of its own commands?)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "setup": ("stack", "setup", False),
    "up": ("stack", "up", False),
    "down": ("stack", "down", False),
    "status": ("stack", "status", False),
    "logs": ("stack", "logs", False),
    "validate": ("stack", "validate", False),
    "send-test-trace": ("stack", "send_test_trace", False),
    "compose": ("stack", "compose", False),
    "demo": ("demo", "demo", False),
    "keys": ("keys", "app", True),
    "users": ("users", "app", True),
    "cases": ("cases", "app", True),
    "change": ("changes", "app", True),
    "audit": ("audit", "app", True),
    "evals": ("evals", "app", True),
    "kb": ("kb", "app", True),
    "notify": ("notify", "app", True),
    "investigate": ("investigate", "investigate", False),
    "report": ("report", "report_cmd", False),
    "verify-export": ("export", "verify_export_cmd", False),
    "bundle": ("bundle", "app", True),
}


def build(only: str | None = None) -> typer.Typer:
    """The command with every entry of COMMANDS, or with just ``only``'s."""
    app = typer.Typer(no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, help=HELP)

    @app.callback()
    def _group() -> None:
        # Keeps a one-command build a group, so `tracehold status` still reads `status`.
        pass

    for word, (module, attr, is_group) in COMMANDS.items():
        if only is not None and word != only:
            continue
        target = getattr(importlib.import_module(f"appliance.cli.{module}"), attr)
        if is_group:
            app.add_typer(target, name=word)
        else:
            app.command(word)(target)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return build()
    raise AttributeError(name)


def main() -> None:
    word = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        build(word if word in COMMANDS else None)()
    except TraceholdError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
