"""The console in headless Chromium, through Envoy with basic auth, on the real stack.

Chromium is Debian's package (installed by `make test-setup`), driven by the
playwright wheel (which brings its driver, never a browser). GenAI traces go
in through Envoy's OTLP listener like any SDK's; every page must load without
a Streamlit exception or a failed panel, the Overview charts must hold data,
and a trace search must find the sent trace and show its prompt, retrieved
chunks and output. Screenshots: test-output/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright

from appliance.settings import PROJECT_ROOT
from appliance.stack import console
from tests.conftest import Stack, tracehold
from tests.genai_traces import AgentTrace, export

pytestmark = [pytest.mark.stack, pytest.mark.binaries, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SHOTS = Path(os.environ.get("TRACEHOLD_TEST_OUTPUT", "test-output")) / "screenshots"
OVERVIEW_CHARTS = 8  # 7 PromQL charts + evaluation scores (app/overview_queries.py)
FAILURE_MARKS = ('[data-testid="stException"]',)
# Under load Streamlit draws seconds after the data arrives: wait for what a test reads,
# never for a fixed time, and give it long (also to playwright's expect, default 5 s).
WAIT_MS = 60_000
# Streamlit has finished the run and drawn it: the app root says the script is not running
# (its status widget shows only after 500 ms of running, so its absence proves nothing),
# no element is still a lazy-loading skeleton or left stale by the previous run, and
# every plotly chart has computed its points.
DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]') === null
    && Array.from(document.querySelectorAll('.js-plotly-plot')).every(el => el.calcdata);
}"""


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> dict[str, Any]:
    """GenAI traces through Envoy, one batch per Prometheus scrape so rates have several."""
    marker = uuid.uuid4().hex[:10]
    service = f"console-e2e-{marker}"
    key_trace = AgentTrace(service=service, model="gpt-4o",
                           prompt=f"What is the leave policy, ticket {marker}?",
                           chunks=[(f"Chunk one of {marker}: five days carry over.", 0.93),
                                   (f"Chunk two of {marker}: expiry on 31 March.", 0.71)],
                           output=f"Five days carry over ({marker}); they expire 31 March.")
    others = [AgentTrace(service=service, model=m, chat_error=(i % 5 == 4))
              for i, m in enumerate(["gpt-4o-mini", "claude-3-haiku", "unpriced-e2e-model"] * 5)]
    url = stack.endpoints["otlp_http"] + "/v1/traces"
    batches = [[key_trace], *[others[i:i + 3] for i in range(0, len(others), 3)]]
    svc = f'service_name="{service}"'
    calls = 0.0
    for batch in batches:
        r = httpx.post(url, content=export(batch).SerializeToString(), trust_env=False,
                       headers={"Content-Type": "application/x-protobuf",
                                "X-API-Key": stack.key}, timeout=10)
        assert r.status_code == 200, r.text
        # the next batch only once Prometheus has scraped this one
        calls = stack.wait_above("prometheus", f"sum(llm_calls_total{{{svc}}})", calls,
                                 timeout=90)
    spans = 6 * (1 + len(others))
    assert stack.wait_stored(service, spans) == spans
    for promql in (f"rate(llm_calls_total{{{svc}}}[1m]) > 0",
                   f"rate(llm_usage_output_tokens_total{{{svc}}}[1m]) > 0",
                   f"rate(llm_evaluation_groundedness_count{{{svc}}}[1m]) > 0"):
        stack.wait_series("prometheus", promql, timeout=90)
    password = json.loads(tracehold("users", "create", f"e2e-{marker}", "--json",
                                    data_dir=stack.data_dir).stdout)["password"]
    return {"marker": marker, "service": service, "trace": key_trace,
            "user": f"e2e-{marker}", "password": password}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium; each context gets a fresh profile (user data dir)."""
    with playwright.sync_playwright() as p:

        def launch(**kw: Any) -> Any:
            ctx = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 2200}, **kw)
            ctx.set_default_timeout(60_000)
            return ctx

        yield launch


@pytest.fixture(scope="module")
def browser(traffic: dict[str, Any], chromium: Any) -> Iterator[Any]:
    ctx = chromium(http_credentials={"username": traffic["user"],
                                     "password": traffic["password"]})
    ctx.requested = []  # every URL the pages ask for: nothing may come from elsewhere
    ctx.on("request", lambda request: ctx.requested.append(request.url))
    try:
        yield ctx
    finally:
        ctx.close()


def _open(browser: Any, url: str, ready: str) -> Any:
    """Open a page and wait for its content (Streamlit draws after the WebSocket opens)."""
    page = browser.new_page()
    deadline = time.monotonic() + 30
    while True:  # Envoy applies a new user within a second or two
        response = page.goto(url)
        if response is not None and response.status != 401:
            break
        assert time.monotonic() < deadline, "the console kept refusing the new user"
        time.sleep(0.5)
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_selector(ready)
    return page


def _shows(page: Any, *texts: str) -> None:
    """Wait until the page shows each text (rendered, as _check reads the page)."""
    body = page.locator("body")
    for text in texts:
        playwright.expect(body).to_contain_text(text, use_inner_text=True, timeout=WAIT_MS)


def _check(page: Any, name: str, *shows: str) -> str:
    """Once the page shows `shows` and Streamlit has drawn the run: a screenshot, no
    exception, no failed panel, no request off the console's origin. The page's text."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    _shows(page, *shows)
    page.wait_for_function(DRAWN, timeout=WAIT_MS)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    for mark in FAILURE_MARKS:
        assert page.locator(mark).count() == 0, f"{name}: Streamlit exception"
    origin = page.url.split("/", 3)[:3]
    requested = getattr(page.context, "requested", [])
    assert requested and all(u.split("/", 3)[:3] == origin or u.startswith(("data:", "blob:"))
                             for u in requested), [u for u in requested if origin[2] not in u]
    text: str = page.locator("body").inner_text()
    assert "this panel failed" not in text, name
    assert "down or unreachable" not in text, name
    return text


def test_overview_charts_hold_data(stack: Stack, traffic: dict[str, Any],
                                   browser: Any) -> None:
    page = _open(browser, stack.endpoints["console"] + "/", ".js-plotly-plot")
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= "
                           f"{OVERVIEW_CHARTS}")
    text = _check(page, "overview", f"Signed in as {traffic['user']}", "Source: Prometheus")
    assert f"Signed in as {traffic['user']}" in text
    assert "Source: Prometheus" in text
    # calcdata: the points plotly.js computed for each trace (data arrays may be binary)
    points = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".map(el => (el.calcdata || []).reduce((n, t) => n + t.length, 0))")
    assert len(points) == OVERVIEW_CHARTS and all(n > 0 for n in points), points
    assert "No data in this range" not in text and "No evaluation scores" not in text
    page.close()


def test_trace_search_finds_the_trace_and_shows_its_genai_content(
        stack: Stack, traffic: dict[str, Any], browser: Any) -> None:
    trace: AgentTrace = traffic["trace"]
    page = _open(browser, stack.endpoints["console"] + "/traces",
                 '[data-testid="stBaseButton-primaryFormSubmit"]')
    page.get_by_label("Text in prompt or output (any case)").fill(
        f"TICKET {traffic['marker'].upper()}")  # any case
    page.get_by_test_id("stBaseButton-primaryFormSubmit").click()
    page.get_by_text(re.compile(r"^1 traces, newest first")).wait_for()
    grid = page.get_by_test_id("stDataFrame")
    # the grid draws on a canvas; its accessible rows follow a moment after the caption
    playwright.expect(grid.locator('[role="row"]').nth(1)).to_contain_text(trace.trace_hex,
                                                                           timeout=WAIT_MS)
    assert grid.locator('[role="row"]').count() == 2  # the header and our one trace
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 17, box["y"] + 35 + 17)  # the first row's selection box
    page.get_by_text(f"Trace {trace.trace_hex}").wait_for()
    page.get_by_text("Retrieved chunks").wait_for()
    # the prompt, chunk and output blocks and the waterfall draw after the panel's heading
    page.locator(".js-plotly-plot").first.wait_for()
    text = _check(page, "trace-view", trace.prompt, trace.output,
                  *(chunk for chunk, _ in trace.chunks),
                  *(f"score {score:.3f}" for _, score in trace.chunks), "groundedness")
    assert trace.prompt in text and trace.output in text
    for chunk, score in trace.chunks:
        assert chunk in text and f"score {score:.3f}" in text
    assert "groundedness" in text
    assert page.locator(".js-plotly-plot").count() == 1  # the waterfall
    bars = page.evaluate("document.querySelector('.js-plotly-plot').calcdata[0].length")
    assert bars == 6
    page.close()


@pytest.mark.parametrize(("path", "ready", "expect"), [
    ("agents", ".js-plotly-plot", ["agent: researcher", "tool: search_docs"]),
    ("cost", '[data-testid="stMetric"]', ["Total cost", "unpriced-e2e-model"]),
    ("stack", '[data-testid="stMetric"]', ["components healthy", "Spans stored",
                                           "OTEL_EXPORTER_OTLP_HEADERS"]),
])
def test_other_pages_load(stack: Stack, traffic: dict[str, Any], browser: Any, path: str,
                          ready: str, expect: list[str]) -> None:
    page = _open(browser, f"{stack.endpoints['console']}/{path}", ready)
    text = _check(page, path, *expect)
    for snippet in expect:
        assert snippet in text, (path, snippet)
    assert stack.key not in text  # keys are shown masked only
    page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_prometheus_is_a_message_per_panel(stack: Stack, traffic: dict[str, Any],
                                                chromium: Any) -> None:
    """A second console whose Prometheus and VictoriaMetrics are a closed port (the
    supervisor would restart a killed Prometheus): every chart says so, nothing breaks,
    and the daemon-backed pages still work."""
    port, dead = _free_port(), f"http://127.0.0.1:{_free_port()}"
    spec = console.console_spec(stack.settings)
    argv = [a if not a.startswith("--server.port=") else f"--server.port={port}"
            for a in spec.argv]
    env = {**os.environ, **spec.env, console.ENV_PROMETHEUS: dead,
           console.ENV_VICTORIAMETRICS: dead}
    proc = subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", trust_env=False).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "console did not start"
            time.sleep(0.3)
        ctx = chromium()
        try:
            page = ctx.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector('[data-testid="stAlertContentWarning"]', timeout=WAIT_MS)
            page.wait_for_function(DRAWN, timeout=WAIT_MS)  # every panel has had its say
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "overview-prometheus-down.png"))
            assert page.locator('[data-testid="stException"]').count() == 0
            warnings = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
            down = [w for w in warnings if "Prometheus is down or unreachable" in w]
            assert len(down) == OVERVIEW_CHARTS, warnings
            assert "Not signed in" in page.locator("body").inner_text()  # no Envoy here
            page.goto(f"http://127.0.0.1:{port}/traces")
            page.get_by_text("traces, newest first").wait_for(timeout=WAIT_MS)
            page.wait_for_function(DRAWN, timeout=WAIT_MS)
            assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0
        finally:
            ctx.close()
    finally:
        proc.terminate()
        proc.wait(15)
