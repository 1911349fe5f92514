"""Investigating the past: the detectors and the RCA over a stored window six hours ago.

A context-overflow incident is replayed into a real DuckDB store at its own (past)
times; the retrieval change that caused it, which no span shows, is recorded after the
fact with ``tracehold change record --at ISO --json``; ``tracehold investigate --json``
then finds the case and names that change event as the root cause, through the daemon
(its RCA worker, with the real knowledge base and local model) and offline with the
daemon stopped. A window of normal traffic answers no case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from appliance.cli.main import build
from appliance.demo.names import ScenarioName
from appliance.demo.replay import Replay, replay
from appliance.demo.scenarios import BASELINE, SCENARIOS
from appliance.rca.investigate import investigate
from appliance.records import Records
from appliance.store.spans import SpanStore
from tests.casework import records_of
from tests.unit.test_console_pages import Daemon, free_port

SECONDS, RATE, ONSET, SEED = 600, 1.5, 420, 11
N = ScenarioName
TOP_K = (f"top_k={BASELINE.top_k}",
         f"top_k={SCENARIOS[N.context_overflow].change(BASELINE).top_k}")


@dataclass
class Stored:
    root: Path
    run: Replay

    @property
    def window(self) -> tuple[str, str]:
        end = self.run.start + timedelta(seconds=SECONDS)
        return self.run.start.isoformat(), end.isoformat()


def _replay(root: Path, scenario: ScenarioName | None) -> Stored:
    """Ten minutes of demo traffic that ended six hours ago, then the store closed."""
    store = SpanStore(root / "spans.duckdb")
    try:
        records_of(store)  # change inference watches the inserts, as in the daemon
        start = datetime.now(UTC) - timedelta(hours=6, seconds=SECONDS)
        run = replay(store, root, SECONDS, RATE, seed=SEED, scenario=scenario, at=ONSET,
                     start=start)
    finally:
        store.close()
    return Stored(root, run)


@pytest.fixture(scope="module")
def overflow(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    return _replay(tmp_path_factory.mktemp("investigate-overflow"), N.context_overflow)


def _cli(root: Path, port: int, *argv: str) -> Any:
    result = CliRunner().invoke(build(), list(argv) + ["--json"], env={
        "TRACEHOLD_DATA_DIR": str(root), "TRACEHOLD_PORTS__DAEMON": str(port)},
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def daemon(overflow: Stored) -> Iterator[tuple[Records, int]]:
    """The daemon's app over the stored file, its RCA worker running."""
    store = SpanStore(overflow.root / "spans.duckdb")
    records = records_of(store)
    records.rca.start()
    port = free_port()
    try:
        with Daemon(store, port):
            yield records, port
    finally:
        records.rca.stop()
        store.close()


def _only_case(result: dict[str, Any]) -> dict[str, Any]:
    (case,) = [c for c in result["cases"] if c["failure_type"] == "context_overflow"]
    assert set(case) >= {"failure_type", "service", "onset", "determined", "confidence",
                         "root_cause", "hypotheses"}
    return case


def test_a_past_incident_is_found_and_its_recorded_change_blamed(
        overflow: Stored, daemon: tuple[Records, int]) -> None:
    records, port = daemon
    target = SCENARIOS[N.context_overflow].target(None)
    onset = overflow.run.onset
    assert onset is not None
    recorded = _cli(overflow.root, port, "change", "record", "--kind", "config",
                    "--service", target, "--from", TOP_K[0], "--to", TOP_K[1],
                    "--at", onset.isoformat())
    assert recorded["id"].startswith("chg_")
    (stored,) = [c for c in records.changes.list(service=target) if c["id"] == recorded["id"]]
    assert datetime.fromisoformat(stored["at"].replace("Z", "+00:00")) == onset  # its own time
    start, end = overflow.window
    result = _cli(overflow.root, port, "investigate", "--from", start, "--to", end,
                  "--service", target)
    case = _only_case(result)
    assert case["service"] == target and case["determined"] is True
    assert case["confidence"] >= 0.5
    assert case["root_cause"] == {"kind": "change", "ref": recorded["id"]}
    assert case["hypotheses"][0] == {**case["hypotheses"][0], "kind": "change",
                                     "ref": recorded["id"]}
    assert 1 <= len(case["hypotheses"]) <= 4
    assert all(h["evidence_ids"] and 0 <= h["score"] <= 1 for h in case["hypotheses"])
    assert abs(datetime.fromisoformat(case["onset"]) - onset) <= timedelta(seconds=60)
    assert records.cases.list() == []  # investigating opens no case
    # the daemon's worker ran it, with the real knowledge base (the model: whatever its
    # status on this machine, the rules' evidence decides)
    assert case["engine"].startswith("rules+kb"), case["status"]


def test_offline_with_the_daemon_stopped(overflow: Stored) -> None:
    """No daemon answers: the command opens the store itself (rules and knowledge base
    as the daemon would; the model too)."""
    start, end = overflow.window
    result = _cli(overflow.root, free_port(), "investigate", "--from", start, "--to", end)
    case = _only_case(result)
    assert case["hypotheses"] and case["determined"] == (case["confidence"] >= 0.5)
    before = datetime.fromisoformat(start) - timedelta(hours=1)
    empty = _cli(overflow.root, free_port(), "investigate", "--from", before.isoformat(),
                 "--to", start)
    assert empty["cases"] == []  # nothing stored then


def test_a_window_of_normal_traffic_has_no_case(tmp_path: Path) -> None:
    stored = _replay(tmp_path, None)
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        records = records_of(store)
        start, end = (datetime.fromisoformat(t) for t in stored.window)
        assert store.count() > 500
        assert investigate(records, start, end, None, None, None)["cases"] == []
    finally:
        store.close()


def test_a_bad_window_is_a_clear_error(overflow: Stored) -> None:
    start, end = overflow.window
    result = CliRunner().invoke(build(), ["investigate", "--from", end, "--to", start],
                                env={"TRACEHOLD_DATA_DIR": str(overflow.root),
                                     "TRACEHOLD_PORTS__DAEMON": str(free_port())})
    assert result.exit_code != 0
    assert "--to must be after --from" in str(result.exception or result.output)
