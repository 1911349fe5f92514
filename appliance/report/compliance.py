"""The compliance report's numbers, from the span store, the cases and the audit log.

* requests: spans and distinct traces that started in [from, to), errors, per service.
* quality: mean of each evaluation score over the period against ``quality_thresholds``.
* incidents: cases opened in the period; time to detect = opened_at - onset_at, time
  to resolve = resolved_at - opened_at; MTTD/MTTR are their means.
* SLA breach: a case open (until resolved, or until now) longer than
  ``sla_resolve_hours``.
* data residency: where every kind of data is stored on this host.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from appliance.errors import InvalidRequest
from appliance.records import Records
from appliance.times import iso, parse_time


def _seconds(later: str | None, earlier: str | None) -> float | None:
    if not later or not earlier:
        return None
    return (parse_time(later, "t") - parse_time(earlier, "t")).total_seconds()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build(records: Records, start: datetime, end: datetime,
          now: datetime | None = None) -> dict[str, Any]:
    if end <= start:
        raise InvalidRequest(f"to ({iso(end)}) must be after from ({iso(start)})")
    now = now or datetime.now(UTC)
    s, store = records.settings, records.store
    period = [start, end]
    totals = store.read("SELECT count(*) AS spans, count(DISTINCT trace_id) AS traces, "
                        "count(*) FILTER (WHERE status_code = 'error') AS errors FROM spans "
                        "WHERE start_time >= ? AND start_time < ?", period)[0]
    services = store.read("SELECT service_name AS service, count(*) AS spans, "
                          "count(DISTINCT trace_id) AS traces, count(*) FILTER "
                          "(WHERE status_code = 'error') AS errors FROM spans WHERE "
                          "start_time >= ? AND start_time < ? GROUP BY 1 ORDER BY 1", period)
    scores = store.read("SELECT name, avg(score) AS mean, count(*) AS n FROM (SELECT "
                        "unnest(map_keys(eval_scores)) AS name, unnest(map_values(eval_scores))"
                        " AS score FROM spans WHERE start_time >= ? AND start_time < ?) "
                        "GROUP BY 1 ORDER BY 1", period)
    quality = []
    for row in scores:
        threshold = s.quality_thresholds.get(row["name"])
        verdict = None if threshold is None else ("pass" if row["mean"] >= threshold
                                                  else "below threshold")
        quality.append({"name": row["name"], "mean": row["mean"], "samples": row["n"],
                        "threshold": threshold, "verdict": verdict})

    sla_s = s.sla_resolve_hours * 3600
    incidents: list[dict[str, Any]] = []
    for case in records.cases.in_period(start, end):
        resolved = case.closed_at
        open_s = _seconds(resolved or iso(now), case.opened_at) or 0.0
        incidents.append({
            "id": case.id, "service": case.service, "failure_type": case.failure_type,
            "status": case.status, "onset_at": case.onset_at,
            "opened_at": case.opened_at, "resolved_at": resolved,
            "verified_at": case.resolution.verified_at,
            "time_to_detect_s": _seconds(case.opened_at, case.onset_at),
            "time_to_resolve_s": _seconds(resolved, case.opened_at),
            "open_s": open_s, "sla_breached": open_s > sla_s})
    ttd = [i["time_to_detect_s"] for i in incidents if i["time_to_detect_s"] is not None]
    ttr = [i["time_to_resolve_s"] for i in incidents if i["time_to_resolve_s"] is not None]
    audit = records.audit.verify(records.signer.public_pem)
    return {
        "period": {"from": iso(start), "to": iso(end)}, "generated_at": iso(now),
        "host": socket.gethostname(),
        "requests": {**totals, "by_service": services},
        "quality": quality,
        "incidents": {"count": len(incidents), "mttd_s": _mean(ttd), "mttr_s": _mean(ttr),
                      "resolved": len(ttr), "sla_resolve_hours": s.sla_resolve_hours,
                      "sla_breaches": sum(i["sla_breached"] for i in incidents),
                      "cases": incidents},
        "audit": {"ok": audit["ok"], "entries": audit["entries"], "head": audit["head"],
                  "first_broken": audit["first_broken"], "key_id": records.signer.key_id},
        "data_residency": residency(records),
    }


def residency(records: Records) -> dict[str, Any]:
    s = records.settings
    locations = {
        "spans, cases, change events, audit log": str(s.span_db),
        "collector queue (spans not yet stored)": str(s.data_dir / "collector-queue"),
        "metrics, short term (Prometheus)": str(s.data_dir / "prometheus"),
        "metrics, long term (VictoriaMetrics)": str(s.data_dir / "victoriametrics"),
        "audit signing key (private 0600 / public)":
            f"{s.audit_key_file} / {s.audit_public_key_file}",
        "logs": str(s.log_dir),
    }
    external = {k: v for k, v in (("Prometheus", s.byo_prometheus_url),
                                  ("VictoriaMetrics", s.byo_victoriametrics_url)) if v}
    statement = ("All telemetry received in this period stayed on this host "
                 f"({socket.gethostname()}): Tracehold stores spans, metrics, cases and the "
                 "audit log only in the locations below and has no code path that sends "
                 "them elsewhere.")
    if external:
        statement += (" Metrics are also read from operator-run stores configured in "
                      "settings: " + ", ".join(f"{k} at {v}" for k, v in external.items())
                      + ".")
    return {"statement": statement, "profile": str(s.profile), "locations": locations}
