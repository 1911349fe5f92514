"""The detector runner skips a round whose recent window can hold no span (issue 9, the
cost at rest), and never a round that could find something."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.demo.names import ScenarioName
from appliance.demo.replay import replay
from appliance.detect.runner import DetectorRunner
from appliance.detect.windows import SEEN
from appliance.ingest.conventions import FIELDS
from appliance.ingest.rows import SpanRow
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

CFG = DetectConfig()


def _counting(store: SpanStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    queries: list[str] = []
    read = store.read

    def counted(sql: str, params: Any = ()) -> list[dict[str, Any]]:
        queries.append(sql)
        return read(sql, params)

    monkeypatch.setattr(store, "read", counted)
    return queries


def _row(end: datetime, received: datetime, n: int = 0) -> SpanRow:
    return SpanRow(
        trace_id=f"{n + 1:032x}", span_id=f"{n + 1:016x}", parent_span_id=None, name="chat m",
        kind="client", service_name="skewed", scope_name="t", start_time=end,
        end_time=end, duration_ms=1.0, status_code="ok", status_message="",
        genai={f.column: None for f in FIELDS}, eval_scores={}, attributes={},
        resource_attributes={}, events=[], links=[], dropped_attributes_count=0,
        dropped_events_count=0, received_at=received)


def test_an_empty_store_costs_no_query(store: SpanStore,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runner = DetectorRunner(store, CFG, lambda f: None)
    queries = _counting(store, monkeypatch)
    assert runner.run_once() == []
    assert queries == [] and runner.skipped == 1


@pytest.mark.parametrize("built", ["before", "after"])
def test_spans_in_the_recent_window_are_judged_then_quiet_is_skipped(
        store: SpanStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        built: str) -> None:
    """Learnt from inserts (runner built first) or from the store (built after)."""
    runner = DetectorRunner(store, CFG, lambda f: None) if built == "before" else None
    r = replay(store, tmp_path, 300, 1.5, seed=3, scenario=ScenarioName.provider_error, at=200)
    runner = runner or DetectorRunner(store, CFG, lambda f: None)
    at = r.start + timedelta(seconds=300)
    assert [f.failure_type for f in runner.run_once(at)] == ["provider_error"]
    assert runner.skipped == 0
    last = store.read(f"SELECT max({SEEN}) AS t FROM spans")[0]["t"]
    queries = _counting(store, monkeypatch)
    # the window ending just before the last span leaves it is judged; just after, not
    runner.run_once(last + timedelta(seconds=CFG.recent_window_s - 1))
    assert queries and runner.skipped == 0
    queries.clear()
    assert runner.run_once(last + timedelta(seconds=CFG.recent_window_s + 1)) == []
    assert queries == [] and runner.skipped == 1


def test_a_span_that_ends_in_the_future_is_judged_when_its_time_comes(
        store: SpanStore) -> None:
    """A sender's clock ahead of ours: the span enters the recent window only once its end
    time has passed, with no insert then; the runner must not sleep through it."""
    runner = DetectorRunner(store, CFG, lambda f: None)
    now = datetime.now(UTC)
    end = now + timedelta(hours=1)
    store.insert([_row(end, now)])
    assert not runner.quiet(now)
    assert not runner.quiet(end + timedelta(seconds=CFG.recent_window_s - 1))
    assert runner.quiet(end + timedelta(seconds=CFG.recent_window_s + 1))
