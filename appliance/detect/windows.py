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
        # Two detectors may ask the same in a round: the second gets the first's answer
        # unless something was invalidated since.
        key = (value, where, agg, group)
        when = (w.now, w.recent_start, w.baseline_start, w.cache.generation)
        done = w.cache.compared.get(key)
        if done is None or done[0] != when:
            done = when, _from_buckets(store, w, key, w.cache)
            w.cache.compared[key] = done
        return dict(done[1])
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


# A batched read covers at most this many whole buckets besides the edges: a round in
# steady state reads the newest one; a comparison that lost most of its buckets (a
# replay, a retention pass) reads alone, as a batch would hold every comparison's values
# of all those spans at once.
_BATCH_BUCKETS = 3
# The runs of kept buckets a read leaves out, longest first: in steady state there are
# two, the baseline's and the recent window's, on either side of the bucket the recent
# window starts inside. Each gap between them is a branch of the read.
_RUNS = 3


@dataclass(frozen=True)
class _Plan:
    """What a comparison reads this round: the whole buckets from ``first`` up to now's,
    the one the recent window starts inside (``split``, an edge), the runs of kept buckets
    left out of the read, and the seen-time ranges read (``gaps``)."""

    first: int
    split: int | None
    whole: list[int]
    runs: tuple[range, ...]
    gaps: tuple[tuple[datetime, datetime], ...]

    @property
    def to_read(self) -> int:
        return sum(1 for b in self.whole if not any(b in run for run in self.runs))


def _plan(w: Windows, key: Key, cache: BucketCache, count: bool = True
          ) -> tuple[_Plan, dict[int, dict[str, Partial]]]:
    first = bucket_of(w.baseline_start)
    if bucket_start(first) < w.baseline_start:
        first += 1
    # The bucket the recent window starts inside, if it does: an edge on both sides.
    split = bucket_of(w.recent_start) if bucket_start(bucket_of(w.recent_start)) < \
        w.recent_start else None
    whole = [b for b in range(first, bucket_of(w.now)) if b != split]
    kept = cache.get(key, range(first, bucket_of(w.now)), count)
    runs = tuple(sorted(_runs(sorted(b for b in kept if b != split))[:_RUNS],
                        key=lambda r: r.start))
    gaps, lo = [], w.baseline_start
    for run in runs:
        if bucket_start(run.start) > lo:
            gaps.append((lo, bucket_start(run.start)))
        lo = bucket_start(run.stop)
    if w.now > lo:
        gaps.append((lo, w.now))
    return (_Plan(first, split, whole, runs, tuple(gaps)),
            {b: kept[b] for run in runs for b in run})


def _read(store: SpanStore, w: Windows, keys: list[Key],
          gaps: tuple[tuple[datetime, datetime], ...], lead: timedelta
          ) -> dict[Key, list[dict[str, Any]]]:
    """Per comparison, its values per group, bucket and window in ``gaps``: one query for
    all of ``keys``, which scans ``spans`` once."""
    out: dict[Key, list[dict[str, Any]]] = {k: [] for k in keys}
    if not gaps:
        return out
    cols = ", ".join(f"{group} AS g{i}, {value} AS v{i}, ({where}) AS w{i}"
                     for i, (value, where, _, group) in enumerate(keys))
    # A read of seen times per gap, each bounded by arrival too (seen is never before
    # arrival, nor more than ``lead`` after it), so DuckDB skips the row groups of the
    # kept runs and of what arrived before the baseline.
    branch = (f"SELECT epoch_us({SEEN}) // {BUCKET_S * 1_000_000} AS b, {SEEN} >= ? AS r, "
              f"{cols} FROM spans WHERE received_at >= ? AND received_at < ? "
              f"AND {SEEN} >= ? AND {SEEN} < ?")
    aggs = " UNION ALL ".join(
        f"SELECT {i} AS k, g{i} AS g, b, r, count(v{i}) AS n, "
        + (f"CAST(sum(v{i}) AS DOUBLE) AS total, NULL::DOUBLE[] AS vals" if agg == "avg"
           else f"0.0 AS total, CAST(list(v{i}) FILTER (WHERE v{i} IS NOT NULL) AS DOUBLE[])"
                " AS vals")
        + f" FROM rows WHERE w{i} AND g{i} IS NOT NULL GROUP BY ALL"
        for i, (_, _, agg, _) in enumerate(keys))
    # One comparison: the CTE is inlined and streams into its aggregate; several: it is
    # computed once and each aggregates it.
    materialized = "MATERIALIZED " if len(keys) > 1 else ""
    params: list[Any] = []
    for lo, hi in gaps:
        params += [w.recent_start, lo - lead, hi, lo, hi]
    rows = store.read(f"WITH rows AS {materialized}("
                      + " UNION ALL ".join([branch] * len(gaps)) + f") {aggs}", params)
    for r in rows:
        out[keys[int(r["k"])]].append(r)
    return out


def _from_buckets(store: SpanStore, w: Windows, key: Key,
                  cache: BucketCache) -> dict[str, Comparison]:
    """``compare`` from whole buckets (kept, or read now and kept) and the edges where a
    window starts or ends inside a bucket (read every round)."""
    agg = key[2]
    generation = cache.generation
    plan, kept = _plan(w, key, cache)
    window = (w.now, w.recent_start, w.baseline_start)
    stashed = cache.stash.pop(key, None)
    if stashed is not None and stashed[0] == (window, plan):
        generation, rows = stashed[1], stashed[2]
    else:
        # Every other comparison the cache knows that reads the same seconds this round
        # is read along (``buckets.BucketCache.stash``); only once buckets are kept.
        batch = {key: plan}
        if plan.runs and plan.to_read <= _BATCH_BUCKETS:
            for other in cache.comparisons():
                if other == key:
                    continue
                p = _plan(w, other, cache, count=False)[0]
                if p.gaps == plan.gaps and p.to_read <= _BATCH_BUCKETS:
                    batch[other] = p
        found = _read(store, w, list(batch), plan.gaps, cache.lead)
        cache.reads += 1
        for other, p in batch.items():
            if other != key:
                cache.stash[other] = ((window, p), generation, found[other])
        rows = found[key]
    read: dict[int, dict[str, Partial]] = {b: {} for b in plan.whole if b not in kept}
    edges: dict[bool, list[tuple[str, Partial]]] = {True: [], False: []}
    for r in rows:
        n, b, vals = int(r["n"]), int(r["b"]), r["vals"]
        if b in read:  # a whole bucket: kept, so a sample will do past SAMPLE values
            read[b][r["g"]] = Partial(n, float(r["total"] or 0.0),
                                      None if vals is None else sampled(vals, n, b))
        else:  # an edge, read again next round: every value
            edges[bool(r["r"])].append((r["g"], Partial(
                n, float(r["total"] or 0.0), None if vals is None else np.asarray(vals, float))))
    cache.put(key, generation, read, keep_from=plan.first)
    parts: dict[bool, dict[str, list[Partial]]] = {True: {}, False: {}}
    for b, groups in (kept | read).items():
        recent = bucket_start(b) >= w.recent_start
        for g, part in groups.items():
            parts[recent].setdefault(g, []).append(part)
    for recent, found_edges in edges.items():
        for g, part in found_edges:
            parts[recent].setdefault(g, []).append(part)
    out = {}
    for g in parts[True].keys() | parts[False].keys():
        recent_v, n_recent = merge(parts[True].get(g, ()), agg)
        baseline_v, n_baseline = merge(parts[False].get(g, ()), agg)
        out[g] = Comparison(g, recent_v, n_recent, baseline_v, n_baseline)
    return out


def _runs(buckets: list[int]) -> list[range]:
    """The runs of consecutive buckets in sorted ``buckets``, longest first."""
    runs: list[range] = []
    start = 0
    for i in range(1, len(buckets) + 1):
        if i == len(buckets) or buckets[i] != buckets[i - 1] + 1:
            runs.append(range(buckets[start], buckets[i - 1] + 1))
            start = i
    return sorted(runs, key=len, reverse=True)


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
