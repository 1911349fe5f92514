"""`tracehold send-test-trace`: the 'send a test trace' step of a zero-to-dashboard set-up.

A real OTLP trace (a RAG request: retrieval, then a chat completion with
tokens, time to first token and an evaluation event) goes through Envoy with
an API key; then it waits until the span is in the store and the derived
series are queryable in Prometheus, and reports how long each took.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from appliance.errors import ConfigError, StackError
from appliance.secrets import SecretsFile
from appliance.settings import Settings
from appliance.stack import state

SERVICE = "tracehold-test-trace"


def _key(s: Settings) -> str:
    keys = SecretsFile(s.secrets_file).load().active_keys()
    if not keys:
        raise ConfigError("no active API key; create one with `tracehold keys create --name N`")
    return keys[0].key


def send(s: Settings, key: str, run_id: str) -> tuple[str, int]:
    """Send one GenAI trace; returns (trace id, spans acknowledged)."""
    from appliance import sdk

    endpoint = state.endpoints(s)["otlp_grpc"]
    provider, counting = sdk.tracer_provider(SERVICE, endpoint, key, batch=False)
    tracer = provider.get_tracer("tracehold.testtrace")
    with tracer.start_as_current_span("rag.request") as root:
        root.set_attribute("tracehold.test_run", run_id)
        with tracer.start_as_current_span("retrieve docs") as r:
            r.set_attribute("gen_ai.operation.name", "retrieval")
            r.set_attribute("gen_ai.data_source.id", "handbook")
            r.set_attribute("tracehold.index.version", "idx-1")
            r.set_attribute("tracehold.retrieval.scores", [0.91, 0.84, 0.77])
        with tracer.start_as_current_span("chat test-model") as c:
            c.set_attribute("gen_ai.operation.name", "chat")
            c.set_attribute("gen_ai.provider.name", "tracehold")
            c.set_attribute("gen_ai.request.model", "test-model")
            c.set_attribute("gen_ai.response.model", "test-model")
            c.set_attribute("gen_ai.usage.input_tokens", 120)
            c.set_attribute("gen_ai.usage.output_tokens", 30)
            c.set_attribute("gen_ai.response.time_to_first_chunk", 0.21)
            c.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            c.add_event("gen_ai.evaluation.result", {
                "gen_ai.evaluation.name": "groundedness", "gen_ai.evaluation.score.value": 0.93,
            })
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id, counting.acknowledged


def run(s: Settings, timeout: float = 60,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    if state.read(s.state_file) is None:
        raise StackError("the stack is not running; start it with `tracehold up`")
    key, run_id = _key(s), uuid.uuid4().hex[:12]
    t0 = time.monotonic()
    trace_id, acked = send(s, key, run_id)
    if acked != 3:
        raise StackError(f"the appliance acknowledged {acked} of 3 spans")
    progress(f"sent trace {trace_id} (3 spans acknowledged)")
    client = httpx.Client(timeout=5, trust_env=False)
    prom = state.endpoints(s).get("prometheus")
    store_s = series_s = None
    series: list[str] = []
    query = f'llm_calls_total{{service_name="{SERVICE}"}}'
    while time.monotonic() - t0 < timeout and (store_s is None or (prom and series_s is None)):
        if store_s is None:
            r = client.get(f"http://127.0.0.1:{s.ports.daemon}/api/v1/traces/{trace_id}")
            if r.status_code == 200 and len(r.json().get("spans", [])) == 3:
                store_s = time.monotonic() - t0
                progress(f"spans stored after {store_s:.1f}s")
        if prom and series_s is None:
            r = client.get(f"{prom}/api/v1/query", params={"query": query},
                           headers={"X-API-Key": key})
            result = r.json().get("data", {}).get("result", []) if r.status_code == 200 else []
            if result:
                series_s = time.monotonic() - t0
                series = [_fmt(x["metric"], x["value"][1]) for x in result]
                progress(f"series queryable in Prometheus after {series_s:.1f}s")
        time.sleep(0.25)
    if store_s is None or (prom and series_s is None):
        raise StackError(f"the test trace did not show up within {timeout:.0f}s "
                         f"(stored: {store_s is not None}, series: {series_s is not None})")
    return {"trace_id": trace_id, "spans_acknowledged": acked,
            "seconds_to_span_store": round(store_s, 2),
            "seconds_to_prometheus": round(series_s, 2) if series_s else None,
            "query": query, "series": series}


def _fmt(labels: dict[str, str], value: str) -> str:
    name = labels.pop("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {value}"
