"""The compliance report as a Document (rendered to PDF and HTML)."""

from __future__ import annotations

from typing import Any

from appliance.export.document import Document, Paragraph, Section, Table, text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def build(report: dict[str, Any]) -> Document:
    req, inc, audit = report["requests"], report["incidents"], report["audit"]
    period = f"{report['period']['from']} to {report['period']['to']}"
    return Document(
        title="Tracehold compliance report",
        subtitle=f"Period {period}; generated {report['generated_at']} on {report['host']}",
        sections=[
            Section("Requests processed", [
                Paragraph(f"{req['spans']} spans in {req['traces']} traces; "
                          f"{req['errors']} spans with an error status."),
                Table(["service", "spans", "traces", "errors"],
                      [[r["service"], str(r["spans"]), str(r["traces"]), str(r["errors"])]
                       for r in req["by_service"]])]),
            Section("Quality scores against thresholds", [
                Table(["evaluation", "mean", "samples", "threshold", "verdict"],
                      [[q["name"], text(q["mean"]), str(q["samples"]), text(q["threshold"]),
                        text(q["verdict"])] for q in report["quality"]])]),
            Section("Incidents", [
                Paragraph(f"Cases opened: {inc['count']}; resolved: {inc['resolved']}. "
                          f"Mean time to detect {_duration(inc['mttd_s'])}; mean time to "
                          f"resolve (MTTR) {_duration(inc['mttr_s'])}."),
                Table(["case", "service", "type", "status", "detect", "resolve"],
                      [[c["id"], c["service"], c["failure_type"], c["status"],
                        _duration(c["time_to_detect_s"]), _duration(c["time_to_resolve_s"])]
                       for c in inc["cases"]])]),
            Section("SLA breaches", [
                Paragraph(f"A case open longer than {inc['sla_resolve_hours']} h breaches the "
                          f"resolution SLA: {inc['sla_breaches']} in this period."),
                Table(["case", "service", "opened", "open for"],
                      [[c["id"], c["service"], c["opened_at"], _duration(c["open_s"])]
                       for c in inc["cases"] if c["sla_breached"]])]),
            Section("Audit log", [Paragraph(
                f"Hash chain {'verified' if audit['ok'] else 'BROKEN'}: {audit['entries']} "
                f"entries, head #{audit['head']['seq']} {audit['head']['hash']}; signing key "
                f"{audit['key_id']}."
                + (f" First broken entry: {audit['first_broken']['seq']} "
                   f"({audit['first_broken']['reason']})." if audit["first_broken"] else ""))]),
            Section("Data residency", [
                Paragraph(report["data_residency"]["statement"]),
                Table(["data", "location on this host"],
                      [[k, v] for k, v in report["data_residency"]["locations"].items()])]),
        ])
