"""`make up` tells the whole story, and a case is walked from open to its diagnosis and
resolved with a suggested fix, in headless Chromium through Envoy, on a real stack.

The stack runs with demo traffic (`demo`, as `make up` does) and the default failure
scenario injected after a short delay (`demo_scenario_after_s`; two minutes by
default). Nothing is done by hand until the diagnosis is on the page: the demo injects
retrieval drift, the detector opens a case, the daemon's RCA worker diagnoses it (the
local model, the knowledge base). Then the case page shows the diagnosis; "Run again"
queues a run the page waits for; "Resolve with this fix" resolves the case with that
fix and the diagnosis, through the API as the signed-in user.

Screenshots: test-output/screenshots/diagnosis-*.png. The timings are printed (run with
-s to see them).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright import sync_api as playwright

from appliance.demo import groundtruth
from tests.conftest import Stack, running_stack, tracehold
from tests.integration.test_console_browser import (  # noqa: F401 (chromium is a fixture)
    DRAWN,
    WAIT_MS,
    _check,
    _open,
    chromium,
)

pytestmark = [pytest.mark.stack, pytest.mark.binaries, pytest.mark.browser]

AFTER_S = 45  # the scenario's delay here (the detectors need a baseline of ~40 s first)
SERVICE, TYPE = "rag-api", "retrieval_drift"


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRACEHOLD_DEMO": "true", "TRACEHOLD_DEMO_SCENARIO_AFTER_S": str(AFTER_S)}
    with running_stack(tmp_path_factory.mktemp("demo-story"), env=env) as st:
        st.up_at = time.time()  # type: ignore[attr-defined]
        yield st


def _wait(what: str, timeout: float, probe: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def _case(stack: Stack) -> dict[str, Any] | None:
    with stack.daemon() as daemon:
        cases = daemon.get("/api/v1/cases", params={"service": SERVICE,
                                                     "failure_type": TYPE}).json()["cases"]
    return cases[0] if cases else None


def _get(stack: Stack, cid: str) -> dict[str, Any]:
    with stack.daemon() as daemon:
        case: dict[str, Any] = daemon.get(f"/api/v1/cases/{cid}").json()
    return case


@pytest.fixture(scope="module")
def story(demo_stack: Stack) -> dict[str, Any]:
    """From `up` to a diagnosed case with no step by hand; the times it took."""
    run_dir = demo_stack.settings.run_dir
    truth = _wait("the scenario's onset", AFTER_S + 90, lambda: groundtruth.read(run_dir))
    assert [t["scenario"] for t in truth] == [TYPE] and truth[0]["service"] == SERVICE
    onset = datetime.fromisoformat(truth[0]["onset"]).timestamp()
    case = _wait("a case opened by the detector", 300, lambda: _case(demo_stack))
    opened = time.time()
    diagnosed = _wait("the RCA worker's diagnosis", 300,
                      lambda: (c := _get(demo_stack, case["id"]))["rca"] and c)
    done = time.time()
    times = {"onset_after_up_s": round(onset - demo_stack.up_at, 1),  # type: ignore[attr-defined]
             "case_after_onset_s": round(opened - onset, 1),
             "diagnosis_after_case_s": round(done - opened, 1),
             "diagnosis_after_up_s": round(done - demo_stack.up_at, 1)}  # type: ignore[attr-defined]
    print("demo story:", json.dumps(times))
    marker = uuid.uuid4().hex[:8]
    user = f"dx-{marker}"
    password = json.loads(tracehold("users", "create", user, "--json",
                                    data_dir=demo_stack.data_dir).stdout)["password"]
    return {"case": diagnosed, "times": times, "user": user, "password": password}


def test_the_scenario_starts_after_the_configured_delay(story: dict[str, Any]) -> None:
    # the demo component starts last, a few seconds after `up` began waiting for health
    # (up_at is when `up --detach` returned: every component healthy, the demo running)
    assert -5 <= story["times"]["onset_after_up_s"] - AFTER_S <= 30, story["times"]


@pytest.fixture(scope="module")
def browser(story: dict[str, Any], chromium: Any) -> Iterator[Any]:  # noqa: F811
    ctx = chromium(http_credentials={"username": story["user"], "password": story["password"]})
    ctx.requested = []
    ctx.on("request", lambda request: ctx.requested.append(request.url))
    try:
        yield ctx
    finally:
        ctx.close()


def test_a_case_is_walked_from_open_to_its_diagnosis_and_resolved_with_a_fix(
        demo_stack: Stack, story: dict[str, Any], browser: Any) -> None:
    case = story["case"]
    cid, details = case["id"], case["rca"]["details"]
    assert case["suggested_fixes"], details.get("status")
    url = f"{demo_stack.endpoints['console']}/cases?case={cid}"
    page = _open(browser, url, '[data-testid="stMetric"]')
    degraded = details.get("status", "ok") != "ok"
    by_model = (details.get("explanation") or {}).get("by") == "model"
    expected = ["Diagnosis (root-cause analysis)", "Failure type", "retrieval drift",
                "Ranked hypotheses", "Similar cases in the knowledge base", "Suggested fixes",
                "How to verify", "Resolve with this fix", "Run again"]
    expected.append("Written by the local model" if by_model
                    else "Explanation templated by the rules")
    if degraded:
        expected.append("Degraded")
    text = _check(page, "diagnosis-01-page", *expected)
    if case["confidence"] >= 0.5:
        assert "Root cause" in text and "unable to determine" not in text.split("Ranked")[0]
    # the evidence grid holds the run's facts, and a trace behind them opens in Traces
    facts = page.get_by_test_id("stDataFrame").filter(has_text="cited")
    playwright.expect(facts).to_have_count(1, timeout=WAIT_MS)  # its rows draw late
    trace = page.get_by_role("link", name=" (f").first  # "Trace <id> (f3)"
    if trace.count():
        label = trace.inner_text()
        assert label.startswith("Trace ") and len(label.split()[1]) == 32, label
    page.get_by_text("Similar cases in the knowledge base").scroll_into_view_if_needed()
    _check(page, "diagnosis-02-evidence-and-similar")
    page.get_by_text("Suggested fixes", exact=True).scroll_into_view_if_needed()
    _check(page, "diagnosis-03-fixes")

    # Run again: queued, and the panel waits for the run to land (run 2)
    runs = case["rca"]["runs"]
    page.get_by_role("button", name="Run again", exact=True).click()
    page.get_by_text("Queued: the RCA worker runs it next").wait_for()
    # (the worker may also have run by itself meanwhile: any later run will do)
    _wait("the requested run on the page", 180, lambda: any(
        int(n) > runs for n in re.findall(r"\brun (\d+) ·", page.locator("body").inner_text())))
    page.wait_for_function(DRAWN, timeout=WAIT_MS)  # the page redrawn with it, once
    page.get_by_role("button", name="Run again", exact=True).scroll_into_view_if_needed()
    text = _check(page, "diagnosis-04-run-again", "has finished: the diagnosis above")
    assert "Queued" not in text

    # Resolve with the first suggested fix
    now = _get(demo_stack, cid)
    fix = now["suggested_fixes"][0]
    page.get_by_role("button", name="Resolve with this fix", exact=True).first.click()
    page.get_by_text("Resolved with this fix").wait_for()
    page.get_by_text("Resolved with this fix").scroll_into_view_if_needed()
    text = _check(page, "diagnosis-05-resolved", "Resolved with this fix", "Fix applied")
    assert "Resolved by " + story["user"] in text
    page.close()

    final = _get(demo_stack, cid)
    assert final["status"] == "resolved"
    res = final["resolution"]
    assert res["resolved_by"] == story["user"]
    assert res["fix_applied"].startswith(fix["title"].rstrip("…").rstrip(".")[:40])
    assert "How to verify" not in res["fix_applied"]
    if now["confidence"] >= 0.5:
        assert res["root_cause"] == now["root_cause"]
    # the knowledge base learned the resolved case (the next similar one retrieves it)
    _wait("the resolved case in the knowledge base", 60, lambda: json.loads(tracehold(
        "kb", "status", "--json", data_dir=demo_stack.data_dir).stdout)["cases"] >= 1)
    acted = [(e["actor"], e["action"]) for e in final["timeline"]]
    assert (story["user"], "case.resolve") in acted
    assert acted[0][1] == "case.open" and acted[0][0].startswith("detector:"), acted
