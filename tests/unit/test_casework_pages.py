"""The Cases, Audit log and Reports pages run by Streamlit's AppTest: with the daemon down
each says so (no exception); against the real daemon app (a thread on a real port, a real
DuckDB file) the case actions go through the API as the signed-in user, a refused
transition shows the daemon's reason, and the audit chain checks out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from appliance.cases.model import Case, CaseOpen
from appliance.changes.store import ChangeIn
from appliance.console import shared
from appliance.settings import PROJECT_ROOT, Settings
from appliance.stack import console
from appliance.store.spans import SpanStore
from tests.casework import records_of
from tests.unit.test_console_pages import Daemon, free_port, texts

USER = "ana.unit"


def page(name: str) -> AppTest:
    script = (f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
              f"from appliance.console.views import {name}\n{name}.render()\n")
    return AppTest.from_string(script, default_timeout=60)


@pytest.fixture
def daemon_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # the signed-in user comes from Envoy's header, which AppTest cannot send; AppTest runs
    # the script in this process, so the patched function is the one the pages call
    monkeypatch.setattr(shared, "user", lambda: USER)
    url = f"http://127.0.0.1:{free_port()}"
    for k, v in {console.ENV_DAEMON: url, console.ENV_PROMETHEUS: url,
                 console.ENV_VICTORIAMETRICS: url, "TRACEHOLD_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    shared.config.clear()
    yield url
    shared.config.clear()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    s = SpanStore(tmp_path / "spans.duckdb")
    records_of(s, Settings(data_dir=tmp_path))
    yield s
    s.close()


def _open_case(store: SpanStore) -> Case:
    now = datetime.now(UTC)
    onset = now - timedelta(minutes=5)
    records = records_of(store)
    records.changes.record(ChangeIn.model_validate(
        {"kind": "deploy", "service": "svc-unit", "to": "build-7",
         "at": (onset - timedelta(minutes=1)).isoformat()}), "cli:test")
    body = CaseOpen.model_validate({
        "service": "svc-unit", "failure_type": "latency_cost_regression",
        "signals": [{"name": "ttft_s_median", "value": 0.9, "baseline": 0.3}],
        "trace_ids": ["ab" * 16], "onset_at": onset.isoformat(),
        "detected_by": "latency_cost_regression",
        "metric_windows": [{"name": "ttft_s", "query": "avg(ttft_s)",
                            "start": (now - timedelta(minutes=30)).isoformat(),
                            "end": now.isoformat(),
                            "points": [[(now - timedelta(minutes=m)).timestamp(),
                                        0.3 if m > 5 else 0.9] for m in range(30, 0, -1)]}]})
    return records.cases.open(body, "detector:latency_cost_regression")


@pytest.mark.parametrize("name", ["cases", "case_detail", "audit", "reports"])
def test_page_with_the_daemon_down_says_so(daemon_url: str, name: str) -> None:
    at = page("cases" if name == "case_detail" else name)
    if name == "case_detail":
        at.query_params["case"] = "case_0123abcd"
    at.run()
    if name == "audit":
        at.button[0].click().run()  # Verify chain
    if name == "reports":
        at.button[0].click().run()  # Show report
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(texts(at, "warning"))
    assert "the Tracehold daemon is down or unreachable" in warnings or (
        "Tracehold daemon is unavailable" in warnings), warnings
    assert "Traceback" not in warnings and not texts(at, "error")


def _button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def test_case_actions_go_through_the_api_as_the_user(daemon_url: str, store: SpanStore) -> None:
    case = _open_case(store)
    cid = case.id
    with Daemon(store, int(daemon_url.rsplit(":", 1)[1])):
        at = page("cases")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert [m.value for m in at.metric][:2] == ["1", "1"]  # cases, active
        at.query_params["case"] = cid
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("1 change events" in m.value for m in at.markdown)
        # assign (defaults to the signed-in user)
        _button(at, "Assign").click().run()
        assert any(f"Assigned to {USER.replace('.', chr(92) + '.')}" in s
                   for s in texts(at, "success")), texts(at, "success")
        # a transition the daemon refuses: its reason is shown
        # widgets in a form: set them, then submit (one run)
        at.selectbox(key=f"ca_status_{cid}").select("verified")
        _button(at, "Change status").click().run()
        assert any("cannot become verified" in e for e in texts(at, "error")), texts(at, "error")
        at.selectbox(key=f"ca_status_{cid}").select("investigating")
        _button(at, "Change status").click().run()
        at.text_area(key=f"ca_note_{cid}").input("checked the deploy")
        _button(at, "Add note").click().run()
        at.text_area(key=f"ca_root_cause_{cid}").input("build-7 halved the cache")
        at.text_area(key=f"ca_fix_{cid}").input("rolled back to build-6")
        _button(at, "Resolve").click().run()
        assert not at.exception, [e.value for e in at.exception]
        # no spans in the window: the check cannot pass, the case goes back
        _button(at, "Verify now").click().run()
        assert not at.exception, [e.value for e in at.exception]
        _button(at, "← All cases").click().run()  # back to the list
        assert "case" not in at.query_params and at.title[0].value == "Cases"
    after = records_of(store).cases.get(cid)
    assert after.assignee == USER and after.status == "investigating"
    assert [n.text for n in after.notes or []] == ["checked the deploy"]
    assert after.resolution.root_cause == "build-7 halved the cache"
    actions = [(e.actor, e.action) for e in after.timeline or []]
    assert actions == [("detector:latency_cost_regression", "case.open"), (USER, "case.assign"),
                       (USER, "case.status"), (USER, "case.note"), (USER, "case.resolve"),
                       (USER, "case.verify")]


def test_audit_page_verifies_the_chain_and_pages(daemon_url: str, store: SpanStore) -> None:
    audit = records_of(store).audit
    for i in range(60):
        audit.append("cli:test", "key.create", f"key:{i}")
    with Daemon(store, int(daemon_url.rsplit(":", 1)[1])):
        at = page("audit")
        at.run()
        _button(at, "Verify chain").click().run()
        assert any("Chain ok" in s and "61 entries" in s for s in texts(at, "success"))
        assert len(at.dataframe[0].value) == 50
        _button(at, "Next").click().run()
        assert list(at.dataframe[0].value["#"]) == list(range(51, 62))
        at.text_input(key="au_subject").input("key:7").run()
        assert list(at.dataframe[0].value["subject"]) == ["key:7"]
        # the chain is altered behind the daemon's back: the page names the entry
        _tamper(store)
        _button(at, "Verify chain").click().run()
        assert any("Chain broken" in e and "#30" in e for e in texts(at, "error")), \
            texts(at, "error")
        assert not at.exception


def _tamper(store: SpanStore) -> None:
    with store.db.transaction() as con:
        con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 30")


def test_reports_page_shows_the_summary(daemon_url: str, store: SpanStore) -> None:
    case = _open_case(store)
    with Daemon(store, int(daemon_url.rsplit(":", 1)[1])):
        at = page("reports")
        at.run()
        assert not records_of(store).audit.entries(action="report.generate")  # not yet
        _button(at, "Show report").click().run()
        assert not at.exception, [e.value for e in at.exception]
        frames = [d.value for d in at.dataframe]
        assert any("id" in f and case.id in list(f["id"]) for f in frames)
        assert any("Chain ok" in s for s in texts(at, "success"))
    entries = records_of(store).audit.entries(action="report.generate")
    assert [e["actor"] for e in entries] == [USER]
