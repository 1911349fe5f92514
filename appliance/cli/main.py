"""Builds the ``tracehold`` command from the command modules beside it, in one place,
and runs it: a ``TraceholdError`` becomes ``Error: <message>`` and exit 1."""

from __future__ import annotations

import sys

import typer

from appliance.cli import audit, cases, changes, demo, export, keys, report, stack, users
from appliance.errors import TraceholdError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Tracehold: a self-hosted GenAI observability appliance.",
)
stack.register(app)
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.command("demo")(demo.demo)
app.add_typer(cases.app, name="cases")
app.add_typer(changes.app, name="change")
app.add_typer(audit.app, name="audit")
app.command("report")(report.report_cmd)
app.command("verify-export")(export.verify_export_cmd)


def main() -> None:
    try:
        app()
    except TraceholdError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
