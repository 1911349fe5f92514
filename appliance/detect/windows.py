"""Recent-versus-baseline comparisons over the span store.

Windows are cut on when the appliance knew of a span (``SEEN``: it had ended
and arrived), so a long agent run that started in the baseline but finished
just now is recent evidence, and a replay in simulated time sees only what
had arrived by then.

The SQL text is assembled only from fixed fragments written in the detector
modules (never from data); the window bounds are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from appliance.detect.buckets import (
    BUCKET_S,
    BucketCache,
    Key,
    Partial,
    bucket_of,
    bucket_start,
    merge,
    sampled,
)
from appliance.ingest.conventions import BY_COLUMN, MODEL_CALL_OPERATIONS, SpanAttribute
from appliance.settings import DetectConfig
from appliance.store.spans import SEEN as SEEN  # the detectors' and readers' name for it
from appliance.store.spans import SpanStore

# Spans that are calls to a model (as opposed to retrieval, tools, agent steps).
_OPERATIONS = ", ".join(f"'{op}'" for op in MODEL_CALL_OPERATIONS)  # fixed names, not input
MODEL_CALL = f"{BY_COLUMN['operation'].column} IN ({_OPERATIONS})"


def attribute(attr: SpanAttribute) -> str:
    """SQL for a declared span attribute (``conventions.ATTRIBUTES``) as text: the first
    of its names that the span has."""
    paths = [f"json_extract_string(attributes, '$.\"{name}\"')" for name in attr.names]
    return paths[0] if len(paths) == 1 else f"coalesce({', '.join(paths)})"


@dataclass(frozen=True)
class Windows:
    now: datetime
    recent_start: datetime
    baseline_start: datetime
    label: str
    # The detector runner's buckets kept from earlier rounds (None: read both windows whole)
    cache: BucketCache | None = None

    @classmethod
    def at(cls, now: datetime, cfg: DetectConfig, cache: BucketCache | None = None) -> Windows:
        recent = now - timedelta(seconds=cfg.recent_window_s)
        return cls(now, recent, recent - timedelta(seconds=cfg.baseline_window_s),
                   f"recent {cfg.recent_window_s}s vs baseline {cfg.baseline_window_s}s",
                   cache)


@dataclass(frozen=True)
class Comparison:
    group: str
    recent: float | None
    n_recent: int
    baseline: float | None
    n_baseline: int

    def enough(self, cfg: DetectConfig) -> bool:
        return (self.n_recent >= cfg.min_recent and self.n_baseline >= cfg.min_baseline
                and self.recent is not None and self.baseline is not None)


def compare(store: SpanStore, w: Windows, value: str, where: str = "TRUE",
            agg: str = "avg", group: str = "service_name") -> dict[str, Comparison]:
    """agg(value) in the recent window and in the baseline, per group (``agg``: avg or
    median). With the runner's cache, from its kept buckets and a read of the rest."""
    if w.cache is not None:
        return _from_buckets(store, w, (value, where, agg, group), w.cache)
    sql = (
        f"SELECT {group} AS g, "
        f"{agg}(v) FILTER (WHERE {SEEN} >= ?) AS recent, "
        f"count(v) FILTER (WHERE {SEEN} >= ?) AS n_recent, "
        f"{agg}(v) FILTER (WHERE {SEEN} < ?) AS baseline, "
        f"count(v) FILTER (WHERE {SEEN} < ?) AS n_baseline "
        f"FROM (SELECT *, {value} AS v FROM spans "
        f"      WHERE {SEEN} >= ? AND {SEEN} < ? AND ({where})) "
        f"WHERE g IS NOT NULL GROUP BY g"
    )
    rows = store.read(sql, [w.recent_start] * 4 + [w.baseline_start, w.now])
    return {r["g"]: Comparison(r["g"], _f(r["recent"]), int(r["n_recent"]),
                               _f(r["baseline"]), int(r["n_baseline"])) for r in rows}


def _from_buckets(store: SpanStore, w: Windows, key: Key,
                  cache: BucketCache) -> dict[str, Comparison]:
    """``compare`` from whole buckets (kept, or read now and kept) and the edges where a
    window starts or ends inside a bucket (read every round)."""
    value, where, agg, group = key
    first = bucket_of(w.baseline_start)
    if bucket_start(first) < w.baseline_start:
        first += 1
    # The bucket the recent window starts inside, if it does: an edge on both sides.
    split = bucket_of(w.recent_start) if bucket_start(bucket_of(w.recent_start)) < \
        w.recent_start else None
    whole = [b for b in range(first, bucket_of(w.now)) if b != split]
    generation = cache.generation
    kept = cache.get(key, range(first, bucket_of(w.now)))
    # The longest run of kept whole buckets is left out of the read; the rest is read.
    run = _longest_run(sorted(b for b in kept if b != split))
    skip_from, skip_to = (bucket_start(run.start), bucket_start(run.stop)) if run else (
        w.now, w.now)
    kept = {b: kept[b] for b in run} if run else {}
    values = ("sum(v) AS total, NULL AS vals" if agg == "avg"
              else "0.0 AS total, list(v) FILTER (WHERE v IS NOT NULL) AS vals")
    # Two reads of seen times, before and after the kept run, each bounded by arrival too
    # (seen is never before arrival, nor more than ``lead`` after it), so DuckDB skips the
    # row groups of the run and of what arrived before the baseline.
    branch = (f"SELECT {group} AS g, epoch_us({SEEN}) // {BUCKET_S * 1_000_000} AS b, "
              f"{SEEN} >= ? AS r, {value} AS v FROM spans WHERE received_at >= ? "
              f"AND received_at < ? AND {SEEN} >= ? AND {SEEN} < ? AND ({where})")
    rows = store.read(
        f"SELECT g, b, r, count(v) AS n, {values} FROM ({branch} UNION ALL {branch}) "
        "WHERE g IS NOT NULL GROUP BY ALL",
        [w.recent_start, w.baseline_start - cache.lead, skip_from, w.baseline_start, skip_from,
         w.recent_start, skip_to - cache.lead, w.now, skip_to, w.now])
    read: dict[int, dict[str, Partial]] = {b: {} for b in whole if b not in kept}
    edges: dict[bool, list[tuple[str, Partial]]] = {True: [], False: []}
    for r in rows:
        n, b, vals = int(r["n"]), int(r["b"]), r["vals"]
        if b in read:  # a whole bucket: kept, so a sample will do past SAMPLE values
            read[b][r["g"]] = Partial(n, float(r["total"] or 0.0),
                                      None if vals is None else sampled(vals, n, b))
        else:  # an edge, read again next round: every value
            edges[bool(r["r"])].append((r["g"], Partial(
                n, float(r["total"] or 0.0), None if vals is None else np.asarray(vals, float))))
    cache.put(key, generation, read, keep_from=first)
    parts: dict[bool, dict[str, list[Partial]]] = {True: {}, False: {}}
    for b, groups in (kept | read).items():
        recent = bucket_start(b) >= w.recent_start
        for g, part in groups.items():
            parts[recent].setdefault(g, []).append(part)
    for recent, found in edges.items():
        for g, part in found:
            parts[recent].setdefault(g, []).append(part)
    out = {}
    for g in parts[True].keys() | parts[False].keys():
        recent_v, n_recent = merge(parts[True].get(g, ()), agg)
        baseline_v, n_baseline = merge(parts[False].get(g, ()), agg)
        out[g] = Comparison(g, recent_v, n_recent, baseline_v, n_baseline)
    return out


def _longest_run(buckets: list[int]) -> range | None:
    best: range | None = None
    start = 0
    for i in range(1, len(buckets) + 1):
        if i == len(buckets) or buckets[i] != buckets[i - 1] + 1:
            if best is None or i - start > len(best):
                best = range(buckets[start], buckets[i - 1] + 1)
            start = i
    return best


def evidence(store: SpanStore, w: Windows, service: str, where: str,
             group: str = "service_name", limit: int = 10) -> tuple[list[str], datetime | None]:
    """Trace ids of recent spans that show the symptom, and the earliest such span."""
    rows = store.read(
        f"SELECT trace_id, min(start_time) AS t FROM spans WHERE {group} = ? "
        f"AND {SEEN} >= ? AND {SEEN} < ? AND ({where}) "
        f"GROUP BY trace_id ORDER BY t LIMIT ?",
        [service, w.recent_start, w.now, limit])
    return [r["trace_id"] for r in rows], (rows[0]["t"] if rows else None)


def new_values(store: SpanStore, w: Windows, service: str, column: str) -> list[str]:
    """Values of a version-like column seen in the recent window but not in the baseline."""
    rows = store.read(
        f"SELECT {column} AS v FROM spans WHERE service_name = ? AND {SEEN} >= ? "
        f"AND {SEEN} < ? AND {column} IS NOT NULL GROUP BY v "
        f"HAVING min({SEEN}) >= ?",
        [service, w.baseline_start, w.now, w.recent_start])
    return [str(r["v"]) for r in rows]


def _f(v: Any) -> float | None:
    return None if v is None else float(v)
