"""`tracehold investigate`: the detectors and the RCA over a stored window.

Through the daemon when it runs (it owns the span store; the run queues on its RCA
worker), else offline on the data folder's store with the model and knowledge base
loaded here. Either way nothing is stored: investigating opens no case.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from appliance.cli.client import DaemonClient
from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.errors import DaemonUnavailable


def _lines(result: dict[str, Any]) -> list[str]:
    if not result["cases"]:
        return [f"no fault found between {result['from']} and {result['to']}"]
    lines = []
    for c in result["cases"]:
        root = c["root_cause"]
        cause = f"{root['kind']} {root['ref']}" if root else "unable to determine root cause"
        lines.append(f"{c['onset']}  {c['service']:20} {c['failure_type']:24} "
                     f"{c['confidence']:.2f}  {cause}")
        lines += [f"    {i}. {h['kind']} {h['ref']} ({h['score']}; "
                  f"{', '.join(h['evidence_ids'])})" for i, h in enumerate(c["hypotheses"], 1)]
    return lines


def _offline(data_dir: Any, start: str, end: str, services: list[str]) -> dict[str, Any]:
    from appliance.rca.investigate import investigate as run
    from appliance.rca.worker import load_model, open_kb
    from appliance.records import opened
    from appliance.times import parse_time

    s = settings(data_dir)
    begin, finish = parse_time(start, "--from"), parse_time(end, "--to")
    with opened(s) as records:
        return run(records, begin, finish, services or None, open_kb(s), load_model(s))


def investigate(
    start: Annotated[str, typer.Option("--from", help="ISO 8601 start of the window")],
    end: Annotated[str, typer.Option("--to", help="ISO 8601 end of the window")],
    service: Annotated[list[str] | None, typer.Option(
        "--service", help="Only this service (repeatable)")] = None,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Run the detectors and the RCA over a stored window; prints the cases found."""
    body = {"from": start, "to": end, "services": service or []}
    try:
        # An hour of spans with the model answering every case takes minutes.
        result = DaemonClient(settings(data_dir), timeout=1800).json(
            "POST", "/api/v1/investigate", json=body)
    except DaemonUnavailable:
        result = _offline(data_dir, start, end, service or [])
    emit(result, as_json, _lines(result))
