"""`tracehold report --from --to`: the daemon computes, the CLI renders PDF and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.client import DaemonClient
from appliance.cli.output import DataDir, JsonOpt, emit, settings, write_atomic


def report_cmd(
    start: Annotated[str, typer.Option("--from", help="ISO 8601, inclusive")],
    end: Annotated[str, typer.Option("--to", help="ISO 8601, exclusive")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PDF and HTML")] = Path("."),
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Compliance report as PDF and HTML: requests, quality, incidents, SLA, data residency."""
    # quality: each evaluation score's mean against quality_thresholds; incidents: cases
    # opened in the period, time to detect and to resolve (MTTR); SLA breach: a case open
    # longer than sla_resolve_hours (appliance/report/compliance.py).
    from appliance.export import html, pdf
    from appliance.report import document

    report = DaemonClient(settings(data_dir)).json(
        "GET", "/api/v1/report", params={"from": start, "to": end})
    doc = document.build(report)
    stem = f"tracehold-report-{report['period']['from'][:10]}-{report['period']['to'][:10]}"
    paths = {"pdf": out / f"{stem}.pdf", "html": out / f"{stem}.html"}
    write_atomic(paths["pdf"], pdf.render(doc))
    write_atomic(paths["html"], html.render(doc).encode())
    inc = report["incidents"]
    emit({**report, "files": {k: str(v) for k, v in paths.items()}}, as_json, [
        f"wrote {paths['pdf']} and {paths['html']}",
        f"{report['requests']['spans']} spans / {report['requests']['traces']} traces; "
        f"{inc['count']} incidents, MTTR {inc['mttr_s']} s, {inc['sla_breaches']} SLA breaches"])
