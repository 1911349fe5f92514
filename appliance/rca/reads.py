"""The span-store reads behind the RCA evidence: a signal against its baseline with a
robust score, a signal per cohort of a version-like value, and the shapes of traces.

Like the detectors' (``appliance/detect/windows.py``), the SQL text is assembled only
from fixed fragments declared in code (detector expressions, column names, attributes
declared in ``appliance/ingest/conventions.py``); every window bound, service and
threshold is a parameter.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from appliance.detect.windows import SEEN
from appliance.store.spans import SpanStore

Agg = Literal["avg", "median"]
TRACE_SAMPLE = 5  # trace ids a fact carries as examples
# A robust score needs a spread; a flat baseline (a share that was 0 every minute) gets
# this floor, in the signal's unit, so one bad minute is not an infinite score.
SPREAD_FLOOR = {"avg": 0.02, "median": 0.05}


@dataclass(frozen=True)
class Span:
    """Where and when: the spans of ``service`` (all services when None) in the baseline
    [baseline_start, onset) and the recent window [onset, end)."""

    service: str | None
    baseline_start: datetime
    onset: datetime
    end: datetime

    def where(self) -> tuple[str, list[Any]]:
        sql = f"{SEEN} >= ? AND {SEEN} < ?"
        params: list[Any] = [self.baseline_start, self.end]
        if self.service is not None:
            sql += " AND service_name = ?"
            params.append(self.service)
        return sql, params


@dataclass(frozen=True)
class Stat:
    recent: float | None
    n_recent: int
    baseline: float | None
    n_baseline: int
    robust_z: float | None  # (recent - median of baseline minutes) / (1.4826 * their MAD)

    @property
    def judged(self) -> bool:
        return self.recent is not None and self.baseline is not None


def stat(store: SpanStore, w: Span, value: str, where: str, agg: Agg) -> Stat:
    """``agg(value)`` over the recent window and the baseline, and how far the recent
    value lies from the baseline's per-minute values in robust units."""
    scope, params = w.where()
    inner = f"SELECT {SEEN} AS seen, {value} AS v FROM spans WHERE {scope} AND ({where})"
    total = store.read(
        f"SELECT {agg}(v) FILTER (WHERE seen >= ?) AS recent, "
        "count(v) FILTER (WHERE seen >= ?) AS n_recent, "
        f"{agg}(v) FILTER (WHERE seen < ?) AS baseline, "
        f"count(v) FILTER (WHERE seen < ?) AS n_baseline FROM ({inner})",
        [w.onset] * 4 + params)[0]
    minutes = [float(r["v"]) for r in store.read(
        f"SELECT {agg}(v) AS v FROM ({inner}) WHERE seen < ? AND v IS NOT NULL "
        "GROUP BY time_bucket(INTERVAL 1 MINUTE, seen)", [*params, w.onset])
        if r["v"] is not None]
    recent, baseline = _f(total["recent"]), _f(total["baseline"])
    z = None
    if recent is not None and len(minutes) >= 3:
        mid = statistics.median(minutes)
        mad = statistics.median(abs(m - mid) for m in minutes)
        spread = max(1.4826 * mad, SPREAD_FLOOR[agg] * (abs(mid) if agg == "median" else 1.0),
                     1e-9)
        z = round((recent - mid) / spread, 2)
    return Stat(recent, int(total["n_recent"]), baseline, int(total["n_baseline"]), z)


@dataclass(frozen=True)
class Cohort:
    value: str
    recent: float | None
    n_recent: int
    baseline: float | None
    n_baseline: int
    first_seen: datetime | None
    traces_recent: int
    trace_ids: list[str]  # a few recent traces of this value (ordered by id: stable)


def cohorts(store: SpanStore, w: Span, column: str, value: str, where: str, agg: Agg,
            per_trace: bool) -> list[Cohort]:
    """The signal per value of a version-like column. ``per_trace``: the value is the
    trace's (a template version on the request, an index version on its retrieval span)
    rather than the measured span's own (the model that answered that call)."""
    scope, params = w.where()
    spans = (f"SELECT trace_id, {SEEN} AS seen, CAST({column} AS VARCHAR) AS c, "
             f"{value} AS v, ({where}) AS measured FROM spans WHERE {scope}")
    # A trace's value: the one most of its spans carry (ties: the later value).
    trace_value = ("SELECT trace_id, mode(c) AS c, min(seen) AS seen FROM s "
                   "WHERE c IS NOT NULL GROUP BY trace_id")
    keyed = ("SELECT s.seen, s.v, t.c, s.measured, s.trace_id, t.seen AS t_seen "
             "FROM s JOIN t USING (trace_id)") if per_trace else (
             "SELECT seen, v, c, measured, trace_id, seen AS t_seen FROM s")
    rows = store.read(
        f"WITH s AS ({spans}), t AS ({trace_value}), k AS ({keyed}) "
        f"SELECT c, {agg}(v) FILTER (WHERE measured AND seen >= ?) AS recent, "
        "count(v) FILTER (WHERE measured AND seen >= ?) AS n_recent, "
        f"{agg}(v) FILTER (WHERE measured AND seen < ?) AS baseline, "
        "count(v) FILTER (WHERE measured AND seen < ?) AS n_baseline, "
        "min(t_seen) AS first_seen, count(DISTINCT trace_id) FILTER (WHERE seen >= ?) AS tr, "
        "list_slice(list(DISTINCT trace_id ORDER BY trace_id) FILTER (WHERE measured "
        f"AND seen >= ?), 1, {TRACE_SAMPLE}) AS traces "
        "FROM k WHERE c IS NOT NULL GROUP BY c ORDER BY c",
        [*params, *[w.onset] * 6])
    return [Cohort(str(r["c"]), _f(r["recent"]), int(r["n_recent"]), _f(r["baseline"]),
                   int(r["n_baseline"]), r["first_seen"], int(r["tr"]), list(r["traces"] or []))
            for r in rows]


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def change_point(store: SpanStore, w: Span, value: str, where: str, log_scale: bool,
                 worse: int, earliest: datetime, min_side: int = 5,
                 min_after: int | None = None) -> datetime | None:
    """When the signal shifted the bad way: the split of the spans seen from ``earliest``
    to the window's end that maximises the standardised difference of the two sides'
    means (one change point, binary segmentation's first step). None without a shift.
    ``min_after``: fewest samples the recent side keeps (a split that leaves fewer than
    the RCA needs to judge a signal would only discard the evidence).

    A detector's onset is the first symptomatic span of its recent window, which for a
    signal with a baseline rate (a few errors, every latency) is often the window's
    start; judged from there, the minutes before the real onset dilute the evidence."""
    scope, params = w.where()
    rows = store.read(
        f"SELECT seen, v FROM (SELECT {SEEN} AS seen, {value} AS v FROM spans "
        f"WHERE {scope} AND ({where})) WHERE v IS NOT NULL AND seen >= ? ORDER BY seen",
        [*params, w.baseline_start])
    values = [(r["seen"], float(r["v"])) for r in rows]
    if log_scale:
        values = [(t, math.log(v)) for t, v in values if v > 0]
    n = len(values)
    recent_side = max(min_side, min_after or 0)  # the recent side is judged: enough to judge
    if n < min_side + recent_side:
        return None
    prefix = [0.0]
    for _, v in values:
        prefix.append(prefix[-1] + v)
    best, at = 0.0, None
    for k in range(min_side, n - recent_side + 1):
        if values[k][0] < earliest:
            continue
        before, after = prefix[k] / k, (prefix[n] - prefix[k]) / (n - k)
        score = (after - before) * worse * math.sqrt(k * (n - k) / n)
        if score > best:
            best, at = score, values[k][0]
    return at
