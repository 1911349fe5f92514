"""Investigate the past: the detectors and the RCA over any stored window (last night's
incident, an imported trace set), not only live traffic.

The detectors run as the daemon would, at each step from the window's start to its end;
the first finding of each (failure type, service) becomes a case held in memory (never
stored: investigating opens nothing) and is diagnosed by the full pipeline as of the
moment it first fired. A window with no fault answers no case.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from appliance.cases.model import Case, CaseContext, Signal
from appliance.detect.model import Finding
from appliance.detect.runner import detect
from appliance.errors import InvalidRequest
from appliance.rca.pipeline import KnowledgeBaseLike, ModelLike, Unavailable, run_case
from appliance.rca.run import Sources
from appliance.times import iso

MAX_WINDOW = timedelta(days=31)
MAX_ROUNDS = 20_000  # a month at the 3-minute step it falls back to past this


def _step(sources: Sources, start: datetime, end: datetime) -> timedelta:
    """A third of the detectors' recent window: a fault lasting one window is seen."""
    cfg = sources.settings.detect
    step = timedelta(seconds=max(cfg.interval_s, cfg.recent_window_s / 3))
    return max(step, (end - start) / MAX_ROUNDS)


def findings(sources: Sources, start: datetime, end: datetime,
             services: list[str] | None = None) -> list[tuple[datetime, Finding]]:
    """The first finding of each (type, service) in [start, end), with when it fired."""
    if end <= start:
        raise InvalidRequest("--to must be after --from")
    if end - start > MAX_WINDOW:
        raise InvalidRequest(f"a window is at most {MAX_WINDOW.days} days")
    cfg, seen = sources.settings.detect, dict[tuple[str, str], tuple[datetime, Finding]]()
    step = _step(sources, start, end)
    t = min(start + timedelta(seconds=cfg.recent_window_s), end)
    while t <= end:
        for f in detect(sources.store, cfg, now=t):
            if not services or f.service in services:
                seen.setdefault((str(f.failure_type), f.service), (t, f))
        if t == end:
            break
        t = min(t + step, end)
    return sorted(seen.values(), key=lambda x: (x[0], x[1].service, str(x[1].failure_type)))


def _case(n: int, at: datetime, f: Finding) -> Case:
    stamp = iso(at) or ""
    return Case(id=f"investigation_{n}", title=f"{f.failure_type} in {f.service}",
                service=f.service, failure_type=f.failure_type,
                signature=f"{f.service}|{f.failure_type}|{f.signature}", opened_at=stamp,
                onset_at=iso(f.onset_at or at) or stamp, updated_at=stamp,
                detected_by=f.detector, trace_ids=list(f.trace_ids)[:1000],
                signals=[Signal.model_validate(s.as_dict()) for s in f.signals],
                context=CaseContext(detector=dict(f.context)))


def investigate(sources: Sources, start: datetime, end: datetime,
                services: list[str] | None,
                kb: KnowledgeBaseLike | Unavailable | None,
                model: ModelLike | Unavailable | None) -> dict[str, Any]:
    """``{"cases": [...]}``: each case's type, service, onset, whether the RCA is
    determined, its confidence, the root cause ``{kind, ref}`` (null when undetermined)
    and the ranked hypotheses."""
    out = []
    for n, (at, f) in enumerate(findings(sources, start, end, services), 1):
        rca = run_case(sources, _case(n, at, f), kb, model, now=at)
        hyps = rca.details.get("hypotheses") or []
        determined = bool(rca.details.get("determined"))
        out.append({
            "failure_type": str(rca.failure_type or f.failure_type), "service": f.service,
            "onset": rca.details.get("evidence", {}).get("onset") or iso(f.onset_at or at),
            "detected_at": iso(at), "determined": determined,
            "confidence": rca.confidence,
            "root_cause": ({"kind": hyps[0]["kind"], "ref": hyps[0]["ref"]}
                           if determined and hyps else None),
            "hypotheses": [{"kind": h["kind"], "ref": h["ref"], "score": h["score"],
                            "evidence_ids": h["evidence_ids"]} for h in hyps],
            "status": rca.details.get("status"), "engine": rca.details.get("engine")})
    return {"from": iso(start), "to": iso(end), "cases": out}
