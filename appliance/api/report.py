"""/api/v1/report: the compliance report as JSON, HTML or PDF (each one audited)."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from appliance.api.body import actor_of
from appliance.api.state import records_of
from appliance.errors import InvalidRequest
from appliance.records import Records
from appliance.report import compliance
from appliance.times import parse_time

FORMATS = ("json", "html", "pdf")


def _report(records: Records, start: str, end: str, fmt: str, actor: str) -> dict[str, Any]:
    report = compliance.build(records, parse_time(start, "from"), parse_time(end, "to"))
    records.audit.append(actor, "report.generate", "report", {**report["period"],
                                                              "format": fmt})
    return report


async def report(request: Request, start: str | None = Query(None, alias="from"),
                 end: str | None = Query(None, alias="to"), format: str = "json") -> Any:
    if not start or not end:
        raise InvalidRequest("from and to are required (ISO 8601)")
    if format not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    records = records_of(request)
    data = await run_in_threadpool(_report, records, start, end, format, actor_of(request))
    if format == "json":
        return data
    from appliance.export import html, pdf  # reportlab loads on first use
    from appliance.report import document

    doc = document.build(data)
    if format == "html":
        return Response(html.render(doc), media_type="text/html; charset=utf-8")
    return Response(await run_in_threadpool(pdf.render, doc), media_type="application/pdf")
