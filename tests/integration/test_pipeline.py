"""GenAI spans sent with the official OpenTelemetry SDK through Envoy reach every store:
derived series in Prometheus and VictoriaMetrics, every span in DuckDB."""

from __future__ import annotations

import uuid

import pytest

from appliance import sdk
from tests.conftest import Stack

pytestmark = [pytest.mark.stack, pytest.mark.binaries]


def _send(stack: Stack, service: str, protocol: str, run: str) -> tuple[int, list[str]]:
    endpoint = stack.endpoints["otlp_grpc" if protocol == "grpc" else "otlp_http"]
    provider, counting = sdk.tracer_provider(service, endpoint, stack.key, protocol)
    tracer = provider.get_tracer("tests")
    trace_ids = []
    for i in range(5):
        with tracer.start_as_current_span("agent run") as root:
            root.set_attribute("gen_ai.operation.name", "invoke_agent")
            root.set_attribute("gen_ai.agent.name", "planner")
            # Current GenAI conventions.
            with tracer.start_as_current_span(f"chat m-current-{run}") as s:
                s.set_attribute("gen_ai.operation.name", "chat")
                s.set_attribute("gen_ai.provider.name", "openai")
                s.set_attribute("gen_ai.request.model", f"m-current-{run}")
                s.set_attribute("gen_ai.response.model", f"m-current-{run}-0613")
                s.set_attribute("gen_ai.agent.name", "planner")
                s.set_attribute("gen_ai.usage.input_tokens", 100 + i)
                s.set_attribute("gen_ai.usage.output_tokens", 20)
                s.set_attribute("gen_ai.response.time_to_first_chunk", 0.25)
                s.set_attribute("gen_ai.response.finish_reasons", ["stop"])
                s.set_attribute("tracehold.prompt.template.version", "v7")
                s.add_event("gen_ai.evaluation.result", {
                    "gen_ai.evaluation.name": "groundedness",
                    "gen_ai.evaluation.score.value": 0.9,
                })
            # Older GenAI names.
            with tracer.start_as_current_span("completion old") as s:
                s.set_attribute("gen_ai.system", "anthropic")
                s.set_attribute("gen_ai.operation.name", "chat")
                s.set_attribute("gen_ai.request.model", f"m-old-{run}")
                s.set_attribute("gen_ai.usage.prompt_tokens", 50)
                s.set_attribute("gen_ai.usage.completion_tokens", 5)
            # OpenInference names.
            with tracer.start_as_current_span("llm oi") as s:
                s.set_attribute("openinference.span.kind", "LLM")
                s.set_attribute("llm.model_name", f"m-oi-{run}")
                s.set_attribute("llm.provider", "mistral")
                s.set_attribute("llm.token_count.prompt", 30)
                s.set_attribute("llm.token_count.completion", 3)
                s.set_attribute("llm.prompt_template.version", "t2")
            trace_ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
    assert counting.failed == 0
    return counting.acknowledged, trace_ids


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_genai_spans_reach_every_store(stack: Stack, protocol: str) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"it-{protocol}-{run}"
    acked, trace_ids = _send(stack, service, protocol, run)
    assert acked == 20

    # DuckDB: every span, GenAI columns filled from all three vocabularies.
    assert stack.wait_stored(service, 20) == 20
    with stack.daemon() as c:
        spans = c.get(f"/api/v1/traces/{trace_ids[0]}").json()["spans"]
    by_name = {s["name"]: s for s in spans}
    cur = by_name[f"chat m-current-{run}"]
    assert cur["service_name"] == service
    assert (cur["operation"], cur["provider"], cur["request_model"], cur["agent_name"]) == (
        "chat", "openai", f"m-current-{run}", "planner")
    assert cur["response_model"] == f"m-current-{run}-0613"
    assert (cur["input_tokens"], cur["output_tokens"]) == (100, 20)
    assert cur["ttft_s"] == pytest.approx(0.25)
    assert cur["finish_reasons"] == ["stop"]
    assert cur["prompt_template_version"] == "v7"
    assert cur["eval_scores"]["groundedness"] == pytest.approx(0.9)
    old = by_name["completion old"]
    assert (old["provider"], old["input_tokens"], old["output_tokens"]) == ("anthropic", 50, 5)
    oi = by_name["llm oi"]
    assert (oi["operation"], oi["provider"], oi["request_model"]) == (
        "chat", "mistral", f"m-oi-{run}")
    assert (oi["input_tokens"], oi["prompt_template_version"]) == (30, "t2")
    assert by_name["agent run"]["parent_span_id"] is None
    assert cur["parent_span_id"] == by_name["agent run"]["span_id"]

    for which in ("prometheus", "victoriametrics"):
        # spanmetrics: calls and durations with the GenAI labels, all vocabularies unified
        stack.wait_value(
            which, f'sum(llm_calls_total{{service_name="{service}",gen_ai_request_model='
                   f'"m-current-{run}",gen_ai_provider_name="openai",'
                   f'gen_ai_operation_name="chat",gen_ai_agent_name="planner"}})', 5)
        stack.wait_series(which, f'llm_calls_total{{gen_ai_request_model="m-old-{run}",'
                                 f'gen_ai_provider_name="anthropic"}}')
        stack.wait_series(which, f'llm_calls_total{{gen_ai_request_model="m-oi-{run}",'
                                 f'gen_ai_provider_name="mistral",gen_ai_operation_name="chat"}}')
        stack.wait_series(which, f'llm_duration_seconds_bucket{{service_name="{service}",'
                                 f'gen_ai_request_model="m-current-{run}",le="0.5"}}')
        # tokens, TTFT and evaluation scores from signal_to_metrics
        stack.wait_value(
            which, f'sum(llm_usage_input_tokens_total{{service_name="{service}",'
                   f'gen_ai_request_model="m-current-{run}"}})', sum(100 + i for i in range(5)))
        stack.wait_value(
            which, f'sum(llm_usage_output_tokens_total{{gen_ai_request_model="m-old-{run}"}})', 25)
        stack.wait_value(
            which, f'sum(llm_time_to_first_token_seconds_count'
                   f'{{gen_ai_request_model="m-current-{run}"}})', 5)
        stack.wait_series(which, f'llm_evaluation_groundedness_bucket'
                                 f'{{gen_ai_request_model="m-current-{run}",le="0.9"}}')
