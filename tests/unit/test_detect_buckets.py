"""The detector runner's kept buckets (issue 9: the detectors' window scans were a third
of the daemon's busy time under load): every round's comparisons equal a whole read of
both windows, over a real store, while rounds slide, late spans arrive, scores land and
retention drops spans; a median past the sample size stays within a fraction of a
percent."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.demo.names import ScenarioName
from appliance.demo.replay import Replay, replay
from appliance.detect import runner as detect_runner
from appliance.detect import windows
from appliance.detect.buckets import (
    BUCKET_S,
    SAMPLE,
    BucketCache,
    Partial,
    bucket_of,
    merge,
    reads_scores,
    sampled,
)
from appliance.detect.runner import DetectorRunner
from appliance.detect.windows import Comparison, Windows
from appliance.evals.store import EvalStore, Evaluation, builtin_score
from appliance.ingest.conventions import FIELDS
from appliance.ingest.rows import SpanRow
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

CFG = DetectConfig()
Key = tuple[str, str, str, str]


def _keys(store: SpanStore, now: datetime, monkeypatch: pytest.MonkeyPatch) -> list[Key]:
    """Every comparison the detectors make in a round (value, where, agg, group)."""
    seen: list[Key] = []
    real = windows.compare

    def spy(store: SpanStore, w: Windows, value: str, where: str = "TRUE", agg: str = "avg",
            group: str = "service_name") -> dict[str, Comparison]:
        if (value, where, agg, group) not in seen:
            seen.append((value, where, agg, group))
        return real(store, w, value, where, agg, group)

    for module in ("appliance.detect.operational", "appliance.detect.quality"):
        monkeypatch.setattr(f"{module}.compare", spy)
    detect_runner.detect(store, CFG, now)
    monkeypatch.undo()
    return seen


def _same(a: dict[str, Comparison], b: dict[str, Comparison]) -> None:
    assert a.keys() == b.keys()
    for g in a:
        x, y = a[g], b[g]
        assert (x.n_recent, x.n_baseline) == (y.n_recent, y.n_baseline), g
        for u, v in ((x.recent, y.recent), (x.baseline, y.baseline)):
            assert (u is None) == (v is None), g
            if u is not None and v is not None:
                assert math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12), (g, u, v)


def _round(store: SpanStore, cache: BucketCache, now: datetime, keys: list[Key]) -> int:
    """Every key cached and whole at ``now``; how many groups were compared."""
    groups = 0
    for value, where, agg, group in keys:
        whole = windows.compare(store, Windows.at(now, CFG), value, where, agg, group)
        kept = windows.compare(store, Windows.at(now, CFG, cache), value, where, agg, group)
        _same(kept, whole)
        groups += len(whole)
    return groups


@pytest.fixture
def replayed(store: SpanStore, tmp_path: Path) -> Iterator[Replay]:
    yield replay(store, tmp_path, 900, 3.0, seed=5, scenario=ScenarioName.latency_cost_regression,
                 at=600)


def _row(n: int, end: datetime, received: datetime, service: str = "late",
         duration: float = 1.0) -> SpanRow:
    genai: dict[str, Any] = {f.column: None for f in FIELDS}
    genai["operation"] = "chat"
    return SpanRow(
        trace_id=f"{n + 1:032x}", span_id=f"{n + 1:016x}", parent_span_id=None, name="chat m",
        kind="client", service_name=service, scope_name="t", start_time=end,
        end_time=end, duration_ms=duration, status_code="ok", status_message="",
        genai=genai, eval_scores={}, attributes={}, resource_attributes={}, events=[],
        links=[], dropped_attributes_count=0, dropped_events_count=0, received_at=received)


def test_sliding_rounds_equal_a_whole_read(store: SpanStore, replayed: Replay,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounds every 10 s and at odd offsets (windows that start inside buckets): each
    comparison equals the uncached one, and after the first round most buckets are
    reused rather than read."""
    end = replayed.start + timedelta(seconds=900)
    keys = _keys(store, end, monkeypatch)
    assert len(keys) >= 10
    cache = BucketCache()
    t, groups = replayed.start + timedelta(seconds=300), 0
    while t <= end:
        groups += _round(store, cache, t, keys)
        t += timedelta(seconds=10 if t.second % 2 else 7.3)
    assert groups > 100
    assert cache.reused > 5 * cache.filled > 0


def test_a_late_span_a_late_score_and_retention_are_not_hidden_by_kept_buckets(
        store: SpanStore, replayed: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the runner's own listeners: each change reaches the next round."""
    runner = DetectorRunner(store, CFG, lambda f: None)
    now = replayed.start + timedelta(seconds=880)
    keys = _keys(store, now, monkeypatch)
    _round(store, runner.cache, now, keys)
    kept = runner.cache.filled
    assert kept > 0
    duration = ("duration_ms", f"{windows.MODEL_CALL} AND duration_ms IS NOT NULL", "median",
                "service_name")
    middle = now - timedelta(seconds=900)  # in the baseline, in a kept bucket
    before = windows.compare(store, Windows.at(now, CFG), *duration)
    # A span that arrives now but was seen back then (a replay; a sender's clock ahead).
    store.insert([_row(10 ** 6 + i, middle, middle, duration=5000.0 + i) for i in range(40)])
    after = windows.compare(store, Windows.at(now, CFG), *duration)
    assert after["late"].n_baseline == 40 and "late" not in before  # a stale cache would differ
    _same(windows.compare(store, Windows.at(now, CFG, runner.cache), *duration), after)
    # Spans from a sender whose clock is an hour ahead: they arrived before the baseline
    # began but were seen inside it. Reads that skip what arrived before the baseline must
    # reach back for them: the runner learns how far, from inserts and from the store.
    store.insert([_row(3 * 10 ** 6 + i, middle, middle - timedelta(hours=1), service="ahead",
                       duration=7.0) for i in range(25)])
    ahead = windows.compare(store, Windows.at(now, CFG), *duration)
    assert ahead["ahead"].n_baseline == 25
    _same(windows.compare(store, Windows.at(now, CFG, runner.cache), *duration), ahead)
    fresh = DetectorRunner(store, CFG, lambda f: None)
    _same(windows.compare(store, Windows.at(now, CFG, fresh.cache), *duration), ahead)
    # A built-in score for an old span changes the quality comparisons' buckets.
    grounded = next(k for k in keys if "groundedness" in k[0])
    _same(windows.compare(store, Windows.at(now, CFG, runner.cache), *grounded),
          windows.compare(store, Windows.at(now, CFG), *grounded))
    _round(store, runner.cache, now, keys)  # every comparison's buckets kept again
    after_middle = range(bucket_of(middle) + 1, bucket_of(now) - 10)
    kept_before = {k: len(runner.cache.get(k, after_middle)) for k in keys}
    EvalStore(store.db).put([Evaluation(f"{10 ** 6 + i + 1:032x}", f"{10 ** 6 + i + 1:016x}",
                                        "groundedness", 0.01, "t", seen=middle)
                             for i in range(40)])
    # Only the comparisons that read built-in scores lose their buckets from there on.
    for k in keys:
        left = len(runner.cache.get(k, after_middle))
        assert left == (0 if reads_scores(k) else kept_before[k]) and kept_before[k], k
    assert 0 < sum(map(reads_scores, keys)) < len(keys)
    scored = windows.compare(store, Windows.at(now, CFG), *grounded)
    assert scored["late"].n_baseline == 40
    _same(windows.compare(store, Windows.at(now, CFG, runner.cache), *grounded), scored)
    # Scores past their retention are deleted: the buckets they fed are forgotten too.
    assert EvalStore(store.db).apply_retention(1, now=now + timedelta(days=2)) >= 40
    _same(windows.compare(store, Windows.at(now, CFG, runner.cache), *grounded),
          windows.compare(store, Windows.at(now, CFG), *grounded))
    # Retention: every span goes (days=0 drops the days before today; these are older).
    store.insert([_row(2 * 10 ** 6, now - timedelta(days=3), now - timedelta(days=3))])
    runner.cache.put(duration, runner.cache.generation,
                     {bucket_of(now - timedelta(days=3)): {"x": Partial(1, 1.0)}}, 0)
    assert store.apply_retention(1) == 1
    assert runner.cache.get(duration, range(0, bucket_of(now))) == {}


def test_a_round_reads_once_and_a_span_stored_after_that_read_still_counts(
        store: SpanStore, replayed: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once buckets are kept, a round's first comparison reads every comparison's rows
    in one query and the others take theirs from it; a late span stored between that
    read and a comparison that was read along changes the buckets it needs, so that one
    reads again and sees the span."""
    runner = DetectorRunner(store, CFG, lambda f: None)
    cache = runner.cache
    now = replayed.start + timedelta(seconds=850)
    keys = _keys(store, now, monkeypatch)
    for i in range(3):  # the first round reads each comparison alone, then one read
        _round(store, cache, now + timedelta(seconds=10 * i), keys)
    reads = cache.reads
    _round(store, cache, now + timedelta(seconds=30), keys)
    assert cache.reads == reads + 1
    # The next round: the first comparison reads for all of them...
    now += timedelta(seconds=40)
    windows.compare(store, Windows.at(now, CFG, cache), *keys[0])
    assert set(cache.stash) == set(keys[1:])
    # ...then spans seen back in the baseline are stored (a replay).
    middle = now - timedelta(seconds=900)
    store.insert([_row(5 * 10 ** 6 + i, middle, middle, duration=9.0) for i in range(30)])
    late = 0
    for key in keys[1:]:
        whole = windows.compare(store, Windows.at(now, CFG), *key)
        _same(windows.compare(store, Windows.at(now, CFG, cache), *key), whole)
        late += "late" in whole
    assert late >= 3  # the model-call comparisons see the new service
    assert cache.reads > reads + 2  # they read again instead of taking the stale rows


def test_a_read_that_overlaps_an_invalidation_keeps_only_the_buckets_before_it() -> None:
    cache = BucketCache()
    key = ("v", "TRUE", "avg", "service_name")
    t = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    b = bucket_of(t)
    generation = cache.generation  # the read begins
    cache.invalidate_from(t + timedelta(seconds=3 * BUCKET_S))  # an insert commits meanwhile
    cache.put(key, generation, {b + i: {"s": Partial(1, float(i))} for i in range(6)}, 0)
    assert sorted(cache.get(key, range(b, b + 6))) == [b, b + 1, b + 2]
    # Scores written meanwhile reach only the comparisons that read them.
    scored = (f"coalesce(eval_scores['x'], {builtin_score('x')})", "TRUE", "avg",
              "service_name")
    assert reads_scores(scored) and not reads_scores(key)
    generation = cache.generation
    cache.invalidate_from(t, scores_only=True)
    found = {b + i: {"s": Partial(1, float(i))} for i in range(6)}
    cache.put(key, generation, found, 0)
    cache.put(scored, generation, found, 0)
    assert len(cache.get(key, range(b, b + 6))) == 6
    assert cache.get(scored, range(b, b + 6)) == {}
    # A read that overlapped more invalidations than are remembered keeps nothing.
    generation = cache.generation
    for _ in range(5000):
        cache.invalidate_from(t + timedelta(days=1))
    cache.put(key, generation, {b + 9: {"s": Partial(1, 1.0)}}, 0)
    assert cache.get(key, range(b + 9, b + 10)) == {}


def test_a_median_past_the_sample_size_stays_within_half_a_percent() -> None:
    """A 30-minute baseline of 180 buckets, most past the sample size, drifting upwards."""
    rng = np.random.default_rng(1)
    values = [rng.lognormal(i / 180, 1, SAMPLE * 5 // 2 if i % 3 else SAMPLE // 2)
              for i in range(180)]
    parts = [Partial(len(v), values=sampled(list(v), len(v), i)) for i, v in enumerate(values)]
    got, n = merge(parts, "median")
    everything = np.concatenate(values)
    assert n == len(everything) and got is not None
    rank = float(np.mean(everything <= got))
    assert abs(rank - 0.5) < 0.005, rank
    # Every value kept: the same median as over all of them.
    exact, _ = merge([Partial(len(v), values=v) for v in values], "median")
    assert exact == float(np.median(everything))
