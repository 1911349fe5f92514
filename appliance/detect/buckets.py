"""Partial aggregates of the detectors' window comparisons, kept between rounds.

Every round compares a recent window with a 30-minute baseline, both ending "now". Before
this cache each comparison re-aggregated both windows over ``spans``: at 10k spans/s a
baseline holds 18M spans, read about fifteen times every round (docs/store-design.md).
The windows slide by one round, so almost every span a round reads was read by the round
before. Here each comparison keeps its aggregate per ``BUCKET_S`` of "seen" time
(``windows.SEEN``) and group: a round reads only the buckets it has not kept and the
ragged edges where a window starts or ends inside a bucket.

What a bucket keeps, per group: the count of values and, for ``avg``, their sum; for
``median``, the values themselves, or a uniform sample of ``SAMPLE`` of them when the
bucket holds more (each sampled value then weighs count / sample). A comparison whose
buckets are all whole gives the same median as DuckDB over the same rows; one with a
sampled bucket gives a weighted median of the samples, within a fraction of a percent of
rank at these sizes: the detectors compare medians by ratios of 1.5x and up. Memory: a
median comparison keeps at most 190 buckets x ``SAMPLE`` values per group, 1.5 MB, for
a group of more than 100 values a second; there are four such comparisons.

Reads name arrival times too (``lead``), so they skip the stored row groups that arrived
before the baseline instead of computing every stored span's seen time.

A kept bucket is dropped when anything that feeds it may have changed:

* an insert whose spans are seen in or before it (``invalidate_from``: a replay, a
  sender's clock ahead of ours; live ingest stamps arrival, so it lands in the newest
  bucket, which is never kept before it has closed);
* a built-in evaluation written for a span seen in or before it, and every bucket when
  scores past their retention are deleted: only the buckets of the comparisons that read
  those scores (the quality detectors'; ``appliance/evals/store.py`` says when). The
  evaluators score calls seen minutes ago; invalidating every comparison from there
  made all of them re-read those minutes each round, one by one;
* a retention pass (``clear``).

An aggregate computed from a read that began before an invalidation is used for that
round, but the buckets that invalidation reached are not kept (``generation``), so an
insert that commits while a round reads can never leave a stale bucket behind.

Once the buckets are kept, a round's comparisons all read the same few seconds (the
newest bucket and the edges), so the first of them reads them for every comparison the
cache knows, in one query, and ``stash`` holds the others' rows until they ask
(``windows.compare``): every read of ``spans`` pays for the hot rows' dedup and for the
sealed row groups those seconds touch, and fifteen reads paid it fifteen times.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from appliance.evals.store import READS_SCORES

BUCKET_S = 10
SAMPLE = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# How many invalidations a read may overlap before its buckets are not kept at all.
_EVENTS = 4096

# (value SQL, where SQL, aggregate, group column): one comparison
Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Partial:
    """One group's values in one bucket or edge: ``n`` non-null values; ``total`` their
    sum (avg); ``values`` all of them or a sample (median)."""

    n: int
    total: float = 0.0
    values: np.ndarray | None = None


def bucket_of(t: datetime) -> int:
    """The bucket that holds the seen time ``t``: buckets are [id, id + 1) * BUCKET_S
    seconds since the Unix epoch."""
    return (t - _EPOCH) // _US // (BUCKET_S * 1_000_000)


def bucket_start(bucket: int) -> datetime:
    return _EPOCH + timedelta(seconds=bucket * BUCKET_S)


def sampled(values: list[float], n: int, seed: int) -> np.ndarray:
    """``values`` as an array, cut to a uniform sample of ``SAMPLE`` when longer (the
    seed makes a bucket's sample the same every time it is computed)."""
    arr = np.asarray(values, dtype=np.float64)
    if n > SAMPLE:
        arr = np.random.default_rng(seed).choice(arr, SAMPLE, replace=False)
    return arr


def merge(parts: Iterable[Partial], agg: str) -> tuple[float | None, int]:
    """The aggregate of the values of ``parts`` and how many there were."""
    parts = [p for p in parts if p.n]
    n = sum(p.n for p in parts)
    if not n:
        return None, 0
    if agg == "avg":
        return sum(p.total for p in parts) / n, n
    arrays = [p.values for p in parts if p.values is not None]
    if all(p.values is not None and len(p.values) == p.n for p in parts):
        return float(np.median(np.concatenate(arrays))), n  # every value: exact
    values = np.concatenate(arrays)
    weights = np.concatenate([np.full(len(p.values), p.n / len(p.values))
                              for p in parts if p.values is not None and len(p.values)])
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)]), n


class BucketCache:
    """Kept buckets per comparison. Thread-safe: the detector thread reads and fills it,
    ingest and the evaluators invalidate it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Key, dict[int, dict[str, Partial]]] = {}
        self._generation = 0
        # (generation, first bucket it reached, scores only) of the latest invalidations
        self._events: deque[tuple[int, int, bool]] = deque(maxlen=_EVENTS)
        self.filled = self.reused = 0  # buckets computed and kept / found kept (for bench)
        self.reads = 0  # queries that read spans for kept comparisons (for tests, bench)
        # Rows read for a comparison by another's batched read this round, by key: (the
        # read's signature, its generation, the rows). Only the detector thread uses it.
        self.stash: dict[Key, tuple[object, int, list[dict[str, Any]]]] = {}
        # Each comparison's answer this round, for a second detector that asks the same.
        self.compared: dict[Key, tuple[object, dict[str, Any]]] = {}
        # How long after its arrival a stored span can be seen (its end, by the sender's
        # clock, after our receipt): a read of seen times from t needs only the spans that
        # arrived from t - lead, and DuckDB skips the row groups that arrived before.
        self._lead = timedelta(0)

    @property
    def lead(self) -> timedelta:
        return self._lead

    def note_lead(self, lead: timedelta) -> None:
        with self._lock:
            self._lead = max(self._lead, lead)

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key: Key, buckets: range, count: bool = True
            ) -> dict[int, dict[str, Partial]]:
        with self._lock:
            kept = self._kept.get(key, {})
            found = {b: kept[b] for b in buckets if b in kept}
            if count:
                self.reused += len(found)
            return found

    def comparisons(self) -> list[Key]:
        """Every comparison that has kept buckets (or had, before an invalidation)."""
        with self._lock:
            return list(self._kept)

    def put(self, key: Key, generation: int, found: dict[int, dict[str, Partial]],
            keep_from: int) -> None:
        """Keep ``found``, computed from a read that began at ``generation``, except the
        buckets an invalidation since then reached; buckets before ``keep_from`` are
        forgotten (they have left every window)."""
        with self._lock:
            if generation != self._generation:
                if not self._events or self._events[0][0] > generation + 1:
                    return  # more invalidations than remembered: keep nothing
                scored = reads_scores(key)
                reached = min((first for g, first, scores in self._events
                               if g > generation and (scored or not scores)), default=None)
                if reached is not None:
                    found = {b: p for b, p in found.items() if b < reached}
            kept = self._kept.setdefault(key, {})
            kept.update(found)
            self.filled += len(found)
            for b in [b for b in kept if b < keep_from]:
                del kept[b]

    def invalidate_from(self, seen: datetime, scores_only: bool = False) -> None:
        """Forget every bucket that ends after ``seen`` (``scores_only``: of the
        comparisons that read built-in scores)."""
        self._invalidate(bucket_of(seen), scores_only)

    def clear(self, scores_only: bool = False) -> None:
        self._invalidate(-1, scores_only)

    def _invalidate(self, first: int, scores_only: bool) -> None:
        with self._lock:
            self._generation += 1
            self._events.append((self._generation, first, scores_only))
            for key, kept in self._kept.items():
                if not scores_only or reads_scores(key):
                    for b in [b for b in kept if b >= first]:
                        del kept[b]


def reads_scores(key: Key) -> bool:
    """Whether a comparison reads the built-in scores (``evals.store.builtin_score``)."""
    return any(READS_SCORES in part for part in key)
