"""`tracehold change ...`: record and list change events through the daemon."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from appliance.cli.client import DaemonClient
from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.domain.change_kinds import kinds_text

app = typer.Typer(no_args_is_help=True, help="Change events: deploys, prompt templates, "
                                             "index refreshes, document updates, model "
                                             "swaps, config and other changes.")


def _line(c: dict[str, Any]) -> str:
    return (f"{c['at']}  {c['id']:15} {c['service']:20} {c['kind']:16} "
            f"{c['from'] or '-'} -> {c['to'] or '-'}  ({c['source']}, {c['actor']})")


@app.command()
def record(
    kind: Annotated[str, typer.Option(help=kinds_text())],
    service: Annotated[str, typer.Option()],
    from_: Annotated[str | None, typer.Option("--from", help="Value before")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Value after")] = None,
    at: Annotated[str | None, typer.Option(help="ISO 8601 (default now)")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Record a change event."""
    body = {"kind": kind, "service": service, "from": from_, "to": to, "at": at, "note": note}
    event = DaemonClient(settings(data_dir)).json("POST", "/api/v1/changes", json=body)
    emit(event, as_json, [f"recorded {event['id']}", _line(event)])


@app.command("list")
def list_changes(
    service: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601")] = None,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """List change events, newest first."""
    params = {k: v for k, v in (("service", service), ("since", since), ("until", until)) if v}
    events = DaemonClient(settings(data_dir)).json("GET", "/api/v1/changes",
                                                   params=params)["changes"]
    emit(events, as_json, [_line(e) for e in events] or ["no change events"])
