"""Quotes, PromQL and SQL fragments go through every filter as plain values.

SQL: every filter of every read route against a real DuckDB file (the evil
values match nothing, the table survives, and a value that is really stored
is still found). PromQL: the escaped label values are parsed back by the real
Prometheus (promtool) to exactly the input.
"""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.console.overview_queries import Filters, overview
from appliance.errors import InvalidRequest
from appliance.filters import label_matchers, like_contains, promql_string
from appliance.settings import Settings
from appliance.store.spans import SpanStore
from tests.casework import app_for
from tests.genai_traces import AgentTrace, export

EVIL = [
    "x' OR '1'='1",
    "'; DROP TABLE spans; --",
    '" or 1=1 --',
    "%",
    "_",
    "\\",
    "a%b_c\\d",
    'x"} or vector(1) or {__name__=~".+',
    "x\"}[5m])) or up{job=~\".*",
    "line\nbreak\ttab\x01ctl",
    "ünïcødé ✓",
    ") UNION SELECT * FROM information_schema.tables --",
]
PROTO = {"Content-Type": "application/x-protobuf"}
BIN = Settings().bin_dir


def call(store: SpanStore, url: str, **params: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_for(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            if url == "POST":
                return await c.post("/v1/traces", content=params["body"], headers=PROTO)
            return await c.get(url, params=params)
    return asyncio.run(go())


def _messages(trace: AgentTrace) -> str:
    """The prompt and output text as stored (the JSON message attributes)."""
    return " ".join(kv.value.string_value for span in trace.spans() for kv in span.attributes
                    if kv.key in ("gen_ai.input.messages", "gen_ai.output.messages"))


def test_like_pattern_takes_wildcards_literally() -> None:
    assert like_contains("100%") == "%100\\%%"
    assert like_contains("a_b") == "%a\\_b%"
    assert like_contains("c:\\x") == "%c:\\\\x%"


@pytest.mark.parametrize("value", EVIL)
def test_every_sql_filter_takes_evil_values_as_values(store: SpanStore, value: str) -> None:
    normal = AgentTrace(prompt="ordinary question")
    stored = AgentTrace(service=value, model=value, prompt=f"before {value} after")
    assert call(store, "POST", body=export([normal, stored]).SerializeToString()).status_code \
        == 200
    n = store.count()
    for params in ({"service": value}, {"model": value}):
        found = call(store, "/api/v1/traces", **params).json()["traces"]
        # exactly the trace that really has that value; the rest do not match
        assert [t["trace_id"] for t in found] == [stored.trace_hex], params
    found = call(store, "/api/v1/traces", text=value).json()["traces"]
    assert sorted(t["trace_id"] for t in found) == sorted(
        t.trace_hex for t in (normal, stored) if value.lower() in _messages(t).lower())
    wrong = value + "-not-stored"
    for params in ({"service": wrong}, {"model": wrong}, {"text": wrong}):
        assert call(store, "/api/v1/traces", **params).json()["traces"] == [], params
    assert call(store, "/api/v1/cost", service=wrong).json()["totals"]["calls"] == 0
    assert call(store, "/api/v1/cost", model=wrong).json()["totals"]["calls"] == 0
    cost = call(store, "/api/v1/cost", service=value).json()
    assert cost["totals"]["calls"] == 1 and cost["unpriced_models"] == [value]
    assert value in call(store, "/api/v1/facets").json()["services"]
    assert call(store, "/api/v1/graph").status_code == 200
    assert store.count() == n  # nothing dropped or changed


def test_text_search_is_case_insensitive_and_literal(store: SpanStore) -> None:
    hit = AgentTrace(prompt="What is 100% of_the Budget?")
    miss = AgentTrace(prompt="What is 1000 of the budget?")  # would match if % or _ were wild
    call(store, "POST", body=export([hit, miss]).SerializeToString())
    for text in ("100%", "OF_THE", "budget?"):
        found = [t["trace_id"] for t in call(store, "/api/v1/traces", text=text).json()["traces"]]
        expected = [hit.trace_hex] if text != "budget?" else sorted(
            [hit.trace_hex, miss.trace_hex])
        assert sorted(found) == sorted(expected), text
    # the output is searched too
    out = [t["trace_id"] for t in call(store, "/api/v1/traces", text="EXPIRE ON 31").json()
           ["traces"]]
    assert sorted(out) == sorted([hit.trace_hex, miss.trace_hex])


@pytest.mark.parametrize("value", EVIL)
@pytest.mark.binaries  # promtool (.stack/bin)
def test_promql_filters_match_exactly_the_value_in_prometheus(tmp_path: Path,
                                                              value: str) -> None:
    """The Overview's request-rate query with service, model and agent all set to the
    value, evaluated by the real Prometheus engine (promtool test rules): it returns the
    one series that carries the value, not the decoy, and nothing injected."""
    assert ast.literal_eval(promql_string(value)) == value  # Go and Python escapes agree
    chart = overview(Filters(service=value, model=value, agent=value), "60s")[0]
    labels = {"gen_ai_operation_name": "chat"}
    series = [
        {"series": "llm_calls_total" + label_matchers(
            {**labels, "service_name": v, "gen_ai_request_model": v, "gen_ai_agent_name": v}),
         "values": f"0+{per_min}x10"}
        for v, per_min in ((value, 60), ("decoy", 600))
    ]
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": chart.series[0].promql, "eval_time": "5m",
                              "exp_samples": [{"labels": label_matchers(
                                  {"service_name": value}), "value": 1}]}]}]}
    path = tmp_path / "test.yml"
    path.write_text(json.dumps(test))
    out = subprocess.run([str(BIN / "promtool"), "test", "rules", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promql_string_escapes() -> None:
    assert promql_string('a"b') == '"a\\"b"'
    assert promql_string("a\\b") == '"a\\\\b"'
    assert promql_string("a\nb\x01") == '"a\\nb\\x01"'
    assert label_matchers({"service_name": None, "m": ""}, 'x="1"') == '{x="1"}'
    with pytest.raises(InvalidRequest):
        label_matchers({'service_name="x"} or up{a': "v"})
