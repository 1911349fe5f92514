"""Optional pipeline features and the full-queue rule, each on a stack of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import Status, StatusCode

from appliance import sdk
from tests.conftest import Stack, running_stack
from tests.otlp_payloads import export_request

pytestmark = [pytest.mark.stack, pytest.mark.binaries]

# Counters in the collector's own telemetry (tail sampling decisions; spans the store's
# exporter delivered).
DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled"
SENT = "otelcol_exporter_sent_spans"


def _until_sampling_settled(stack: Stack, traces: int, timeout: float = 60) -> None:
    """Until the tail sampler has decided every trace (decision_wait after its first span)
    and the store's exporter has delivered every span of the traces it kept: from then
    on nothing more can reach the store. (Every trace in these tests is one span.)"""
    deadline = time.monotonic() + timeout
    while True:
        decided = stack.collector_counter(DECIDED)
        kept = stack.collector_counter(DECIDED, sampled="true")
        sent = stack.collector_counter(SENT, exporter="otlp_http/store")
        if decided >= traces and sent >= kept:
            return
        assert time.monotonic() < deadline, (f"sampler decided {decided} of {traces} "
                                             f"traces, kept {kept}; store exporter sent {sent}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def redacting_sampling_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRACEHOLD_REDACTION": "drop", "TRACEHOLD_TAIL_SAMPLING": "true",
           "TRACEHOLD_TAIL_SAMPLING_PERCENT": "0"}
    with running_stack(tmp_path_factory.mktemp("options"), env=env) as st:
        yield st


def test_redaction_and_tail_sampling_touch_the_store_not_the_metrics(
        redacting_sampling_stack: Stack) -> None:
    stack = redacting_sampling_stack
    service = f"opt-{uuid.uuid4().hex[:8]}"
    provider, counting = sdk.tracer_provider(service, stack.endpoints["otlp_grpc"], stack.key)
    tracer = provider.get_tracer("options")
    for i in range(12):
        with tracer.start_as_current_span("chat m-opt") as s:
            s.set_attribute("gen_ai.request.model", "m-opt")
            s.set_attribute("gen_ai.input.messages", '[{"role":"user","content":"secret"}]')
            s.set_attribute("gen_ai.output.messages", '[{"role":"assistant","content":"x"}]')
            if i % 4 == 0:
                s.set_status(Status(StatusCode.ERROR, "provider 503"))
    provider.shutdown()
    assert counting.acknowledged == 12
    # Metrics see every span, before sampling.
    stack.wait_value("prometheus", f'sum(llm_calls_total{{service_name="{service}"}})', 12)
    # The store keeps only the error traces (0% of the rest), after the decision wait.
    assert stack.wait_stored(service, 3, timeout=60) == 3
    _until_sampling_settled(stack, 12)  # past decision_wait: nothing more arrives
    assert stack.stored(service) == 3
    with stack.daemon() as c:
        spans = c.get("/api/v1/spans", params={"service": service}).json()["spans"]
    assert all(s["status_code"] == "error" for s in spans)
    for s in spans:
        assert "gen_ai.input.messages" not in s["attributes"]
        assert "gen_ai.output.messages" not in s["attributes"]
        assert s["input_messages"] is None and s["request_model"] == "m-opt"


def test_full_queue_refuses_new_data_and_loses_none_it_accepted(
        tmp_path: Path) -> None:
    """block_on_overflow is off: with the store paused and the queue full, new exports
    get a retryable refusal, and everything acknowledged is stored once the store is back."""
    with running_stack(tmp_path / "queue", env={"TRACEHOLD_QUEUE_MAX_SPANS": "1000"}) as stack:
        service = f"queue-{uuid.uuid4().hex[:8]}"
        url = stack.endpoints["otlp_http"] + "/v1/traces"
        headers = {"X-API-Key": stack.key, "Content-Type": "application/x-protobuf"}
        daemon_pid = stack.component("daemon")["pid"]
        os.kill(daemon_pid, signal.SIGSTOP)
        acked, refused = 0, []
        try:
            with httpx.Client(timeout=30, trust_env=False) as c:
                for _ in range(20):
                    r = c.post(url, headers=headers,
                               content=export_request(service, 200).SerializeToString())
                    if r.status_code == 200:
                        acked += 200
                    else:
                        refused.append(r.status_code)
        finally:
            # (The supervisor kills a daemon unhealthy for restart_unhealthy_after_s; a
            # restarted one needs no SIGCONT, and nothing acknowledged is lost either way.)
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon_pid, signal.SIGCONT)
        assert refused, "a 1,000-span queue took 4,000 spans while the store was paused"
        assert set(refused) <= {429, 503}, refused  # retryable, so SDKs try again
        assert 0 < acked <= 1400
        assert stack.wait_stored(service, acked, timeout=120) == acked
