"""`tracehold demo` against the real stack: every acknowledged span is stored, with its
GenAI columns filled, and the derived series of every demo model reach Prometheus."""

from __future__ import annotations

import json
import time

import pytest

from appliance.demo.scenarios import SERVICES
from tests.conftest import Stack, tracehold

pytestmark = [pytest.mark.stack, pytest.mark.binaries]

MODELS = {"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "text-embedding-3-small"}
DEMO = 'service_name=~"rag-api|agents-svc|chat-svc"'


def _labels(stack: Stack, promql: str, label: str, want: set[str],
            timeout: float = 60) -> set[str]:
    deadline, seen = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        seen = {r["metric"].get(label, "") for r in stack.query("prometheus", promql)}
        if want <= seen:
            break
        time.sleep(0.5)
    return seen


def test_demo_traffic_is_stored_and_derived(stack: Stack) -> None:
    before = {svc: stack.stored(svc) for svc in SERVICES}
    out = tracehold("demo", "--duration", "10", "--rate", "5", "--seed", "1", "--json",
                    data_dir=stack.data_dir, timeout=120)
    summary = json.loads(out.stdout)
    assert summary["traces"] > 0 and summary["seed"] == 1
    assert summary["failed"] == summary["dropped"] == 0
    assert summary["acknowledged"] == summary["spans_sent"] > summary["traces"]
    assert set(summary["services"]) == set(SERVICES)
    assert summary["ground_truth"] is None  # no scenario, no onset

    for svc, numbers in summary["services"].items():
        expected = before[svc] + numbers["acknowledged"]
        assert stack.wait_stored(svc, expected) == expected, svc

    with stack.daemon() as c:
        rows = c.get("/api/v1/spans", params={"service": "rag-api", "limit": 500}).json()["spans"]
    chat = [r for r in rows if r["operation"] == "chat" and r["status_code"] != "STATUS_CODE_ERROR"
            and r["response_model"]]
    assert chat and all(r["input_tokens"] > 0 and r["ttft_s"] > 0 for r in chat)
    assert any(r["eval_scores"].get("groundedness") for r in chat)
    retrieval = [r for r in rows if r["operation"] == "retrieval"]
    assert retrieval and all(r["retrieval_scores"] and r["index_version"] for r in retrieval)

    calls = _labels(stack, f"sum by (gen_ai_request_model) (llm_calls_total{{{DEMO}}})",
                    "gen_ai_request_model", MODELS)
    assert calls >= MODELS
    chat_models = MODELS - {"text-embedding-3-small"}
    for metric in ("llm_usage_output_tokens_total", "llm_time_to_first_token_seconds_count"):
        seen = _labels(stack, f"sum by (gen_ai_request_model) ({metric}{{{DEMO}}})",
                       "gen_ai_request_model", chat_models)
        assert chat_models <= seen, metric
    assert stack.wait_series(
        "prometheus", 'llm_evaluation_groundedness_count{service_name="rag-api"}')
