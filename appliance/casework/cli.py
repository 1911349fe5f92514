"""Registers the casework commands on the `tracehold` app: `cases`, `change`, `audit`,
`report`, `verify-export`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from appliance.audit.cli import app as audit_app
from appliance.cases.cli import app as cases_app
from appliance.casework import cliutil
from appliance.changes.cli import app as change_app
from appliance.export.cli import verify_export_cmd
from appliance.report.cli import report_cmd
from appliance.settings import Settings


def register(app: typer.Typer, emit: Callable[[Any, bool, list[str]], None],
             current_settings: Callable[[Path | None], Settings]) -> None:
    cliutil.install(emit, current_settings)
    app.add_typer(cases_app, name="cases")
    app.add_typer(change_app, name="change")
    app.add_typer(audit_app, name="audit")
    app.command("report")(report_cmd)
    app.command("verify-export")(verify_export_cmd)
