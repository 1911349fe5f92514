"""With the demo's own scores off (`--no-app-scores`), the built-in evaluators carry
detection alone: the hallucination, retrieval-drift and coherence scenarios still open
findings of their own type on their own service soon after onset, and the harmless
`normal` scenario opens none. Real demo generator, real DuckDB, the real embedder, in
simulated time (appliance/demo/replay.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from appliance.demo.names import ScenarioName
from appliance.demo.replay import first_detection, replay
from appliance.demo.scenarios import SCENARIOS
from appliance.evals.evaluators import CachedEncoder
from appliance.evals.runner import score_window
from appliance.rca.embed import Embedder
from appliance.settings import EVALUATORS, DetectConfig
from appliance.store.spans import SpanStore

SECONDS, RATE, ONSET, FROM, SEED = 600, 1.5, 420, 300, 11
CFG = DetectConfig()
N = ScenarioName


@pytest.fixture(scope="module")
def encoder() -> CachedEncoder:
    return CachedEncoder(Embedder())


@pytest.mark.parametrize("name", [N.hallucination, N.retrieval_drift,
                                  N.coherence_degradation, N.normal])
def test_built_in_scores_alone_find_the_quality_failures(
        store: SpanStore, tmp_path: Path, encoder: CachedEncoder, name: ScenarioName) -> None:
    r = replay(store, tmp_path, SECONDS, RATE, seed=SEED, scenario=name, at=ONSET,
               app_scores=False)
    assert r.onset is not None
    # no score of the apps' own reached the store
    assert store.read("SELECT count(*) AS n FROM spans WHERE cardinality(eval_scores) > 0 "
                      "OR retrieval_scores IS NOT NULL")[0]["n"] == 0
    stats = score_window(store, encoder, EVALUATORS, r.start,
                         r.start + timedelta(seconds=SECONDS + 60))
    assert stats.evaluated == stats.calls > 0
    found = first_detection(store, CFG, r.start + timedelta(seconds=FROM),
                            r.start + timedelta(seconds=SECONDS))
    if name == N.normal:
        assert found == []
        return
    assert found, "nothing detected"
    assert {f.failure_type for _, f in found} == {str(name)}
    t, finding = found[0]
    assert r.onset <= t <= r.onset + timedelta(minutes=2)
    assert finding.service == SCENARIOS[name].target(None)


def test_normal_stays_quiet_for_fifteen_minutes(store: SpanStore, tmp_path: Path,
                                                encoder: CachedEncoder) -> None:
    r = replay(store, tmp_path, 1200, RATE, seed=SEED + 1, scenario=N.normal, at=300,
               app_scores=False)
    score_window(store, encoder, EVALUATORS, r.start, r.start + timedelta(seconds=1300))
    assert first_detection(store, CFG, r.start + timedelta(seconds=300),
                           r.start + timedelta(seconds=1200), step_s=30) == []
