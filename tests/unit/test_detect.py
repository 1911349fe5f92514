"""Detectors over the real demo generator and a real DuckDB span store, in simulated time:
each failure scenario is found as its own type on its own service soon after onset, and
nothing is found before onset or in the harmless `normal` scenario."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from appliance.demo.names import ScenarioName
from appliance.demo.replay import Replay, first_detection, replay
from appliance.demo.scenarios import ALL, SCENARIOS
from appliance.detect.buckets import BucketCache
from appliance.detect.model import Finding
from appliance.detect.runner import DetectorRunner, still_firing
from appliance.detect.series import window_for
from appliance.domain.taxonomy import FAILURE_TYPES
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

SECONDS, RATE, ONSET, FROM = 600, 1.5, 420, 300
CFG = DetectConfig()


def _run(store: SpanStore, tmp_path: Path, name: ScenarioName) -> Replay:
    return replay(store, tmp_path, SECONDS, RATE, seed=11, scenario=name, at=ONSET)


def _detected(store: SpanStore, r: Replay) -> list[tuple[datetime, Finding]]:
    """Rounds every interval from FROM to SECONDS, reusing each other's buckets as the
    daemon's runner does; checked against rounds that read every window whole: the same
    failures at the same times with the same signals and evidence."""
    since, until = r.start + timedelta(seconds=FROM), r.start + timedelta(seconds=SECONDS)
    cache = BucketCache()
    kept = first_detection(store, CFG, since, until, cache=cache)
    whole = first_detection(store, CFG, since, until)
    assert [(t, f.failure_type, f.service, f.signals, f.trace_ids) for t, f in kept] == \
        [(t, f.failure_type, f.service, f.signals, f.trace_ids) for t, f in whole]
    assert cache.reused > cache.filled > 0
    # Once buckets are kept, a round's comparisons are read in one query (the first round
    # reads each alone, so it holds at most one read per comparison).
    rounds = (until - since) // timedelta(seconds=CFG.interval_s) + 1
    assert len(cache.comparisons()) > 5
    assert cache.reads <= len(cache.comparisons()) + 2 * rounds
    return kept


@pytest.mark.parametrize("name", [n for n in ScenarioName if n != ScenarioName.normal])
def test_each_failure_is_found_as_its_type_within_two_minutes(
        store: SpanStore, tmp_path: Path, name: ScenarioName) -> None:
    assert str(name) in FAILURE_TYPES
    r = _run(store, tmp_path, name)
    assert r.onset is not None
    found = _detected(store, r)
    assert found, "nothing detected"
    assert all(t >= r.onset for t, _ in found), [(t - r.onset, f.failure_type)
                                                 for t, f in found]
    types = {f.failure_type for _, f in found}
    assert types == {str(name)}, types  # no other type fires alongside
    t, finding = found[0]
    assert t - r.onset <= timedelta(minutes=2)
    target = SCENARIOS[name].target(None)
    if target != ALL:
        assert finding.service == target
    assert finding.trace_ids and finding.signals
    assert finding.onset_at is not None
    # the case's metric window shows the signal around the onset
    window = window_for(store, finding, timedelta(seconds=CFG.baseline_window_s), now=t)
    assert window is not None and len(window["points"]) >= 5


def test_normal_change_opens_nothing(store: SpanStore, tmp_path: Path) -> None:
    r = _run(store, tmp_path, ScenarioName.normal)
    found = _detected(store, r)
    assert found == []


def test_runner_hands_on_once_a_minute_and_verification_sees_recovery(
        store: SpanStore, tmp_path: Path) -> None:
    """A still-firing signature is handed on again only after a minute; once the cause
    is gone and the window has moved on, verification says the signal is back."""
    r = replay(store, tmp_path, 300, RATE, seed=3, scenario=ScenarioName.provider_error, at=200)
    handed = []
    runner = DetectorRunner(store, CFG, handed.append)
    at = r.start + timedelta(seconds=300)
    assert [f.failure_type for f in runner.run_once(at)] == ["provider_error"]
    assert runner.run_once(at) == []  # same signature within the minute: not again
    firing, _ = still_firing(store, CFG, "provider_error", handed[0].service, now=at)
    assert firing
    # Traffic after the incident, in a fresh store: healthy again.
    later = SpanStore(tmp_path / "after.duckdb")
    try:
        replay(later, tmp_path, 300, RATE, seed=3)
        firing, _ = still_firing(later, CFG, "provider_error", handed[0].service)
        assert not firing
    finally:
        later.close()


def test_check_verifies_a_case_by_its_detector(store: SpanStore, tmp_path: Path) -> None:
    """The case's own detector judges the current window: still firing -> back to
    investigating with the current value; quiet -> verified."""
    from appliance.cases.check import check_case
    from appliance.cases.model import CaseOpen, Resolve
    from appliance.settings import Settings
    from tests.casework import records_of

    r = replay(store, tmp_path, 300, RATE, seed=3, scenario=ScenarioName.provider_error, at=200)
    at = r.start + timedelta(seconds=300)
    records = records_of(store, Settings(data_dir=tmp_path))
    finding = DetectorRunner(store, CFG, lambda f: None).run_once(at)[0]
    case = records.cases.open(CaseOpen.model_validate(finding.as_case_request()), "detector:t")
    records.cases.resolve(case.id, Resolve.model_validate(
        {"root_cause": "provider outage", "fix_applied": "failover"}), "tester")
    still = check_case(store, CFG, records.cases.get(case.id), now=at)
    assert not still.back_to_baseline
    assert still.checks[0].signal == "provider_error_share" and still.checks[0].value > 0.15
    after = records.cases.verify(case.id, still, "tester")
    assert after.status == "investigating"
    quiet = check_case(store, CFG, after, now=at + timedelta(hours=2))
    assert quiet.back_to_baseline is False  # no traffic at all is not "back to baseline"
    # The fix: healthy traffic after the incident. Now the check passes.
    replay(store, tmp_path, 240, RATE, seed=4, start=at)
    records.cases.resolve(case.id, Resolve.model_validate(
        {"root_cause": "provider outage", "fix_applied": "failover"}), "tester")
    fixed = check_case(store, CFG, records.cases.get(case.id), now=at + timedelta(seconds=240))
    assert fixed.back_to_baseline, fixed.detail
    assert fixed.checks[0].value < 0.1
    assert records.cases.verify(case.id, fixed, "tester").status == "verified"
