"""Traces from OpenTelemetry's real openai-v2 instrumentation get built-in scores.

A RAG app on the real ``openai`` client (``tests/openai_rag_app.py``, its own process,
content capture on as its users set it) asks a loopback stand-in server two questions
with the passages in the system message; one answer is grounded, the other changes a
number. Its spans go through Envoy with the API key. Then, waiting for each thing: the
spans are stored with their content; the daemon's evaluator worker scored them
(groundedness high for one, low for the other, source ``tracehold``), read back through
the API; and the scores are in Prometheus and VictoriaMetrics as
``llm_evaluation_groundedness`` with ``source="tracehold/..."``.

The stack is this module's own, with ``evals_sample_rate`` 1: the default (0.5) picks
calls by a hash of their span id, and a test of two calls must not depend on which two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import openai_rag_app
from tests.conftest import Stack, running_stack

pytestmark = [pytest.mark.stack, pytest.mark.binaries]

ROOT = Path(__file__).resolve().parents[2]
# what an app's operator sets so openai-v2 puts prompts and answers on the spans
CAPTURE = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only"}


@pytest.fixture(scope="module")
def scoring_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("evals-openai"),
                       env={"TRACEHOLD_EVALS_SAMPLE_RATE": "1"}) as st:
        yield st


def _run_app(stack: Stack, base_url: str, service: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.openai_rag_app", "--base-url", base_url,
         "--endpoint", stack.endpoints["otlp_grpc"], "--key", stack.key, "--service", service],
        cwd=ROOT, env={**env, **CAPTURE}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _chat_span(stack: Stack, trace_id: str) -> dict[str, Any]:
    with stack.daemon() as c:
        r = c.get(f"/api/v1/traces/{trace_id}")
    r.raise_for_status()
    chats = [s for s in r.json()["spans"] if s["operation"] == "chat"]
    assert len(chats) == 1, r.json()["spans"]
    return chats[0]


def _wait_scores(stack: Stack, trace_id: str, timeout: float = 120) -> dict[str, Any]:
    """The trace's built-in scores by name, once groundedness is among them."""
    deadline = time.monotonic() + timeout
    with stack.daemon() as c:
        while True:
            r = c.get(f"/api/v1/traces/{trace_id}/evaluations")
            r.raise_for_status()
            got = {e["name"]: e for e in r.json()["evaluations"]}
            if "groundedness" in got:
                return got
            assert time.monotonic() < deadline, f"trace {trace_id} not scored: {got}"
            time.sleep(0.5)


def test_openai_v2_traces_are_scored_in_the_store_and_in_prometheus(
        scoring_stack: Stack) -> None:
    stack, service = scoring_stack, f"openai-rag-{uuid.uuid4().hex[:8]}"
    with openai_rag_app.stand_in_server() as base_url:
        sent = _run_app(stack, base_url, service)
    # per question: the app's root span and the instrumentation's chat span
    assert sent["failed"] == 0 and sent["acknowledged"] == 4
    assert stack.wait_stored(service, 4) == 4

    # stored with the content the instrumentation captured
    for kind, (question, answer) in (("grounded", openai_rag_app.GROUNDED),
                                     ("hallucinated", openai_rag_app.HALLUCINATED)):
        chat = _chat_span(stack, sent["traces"][kind])
        assert (chat["provider"], chat["request_model"]) == ("openai", openai_rag_app.MODEL)
        assert question in chat["input_messages"]
        assert all(p in chat["input_messages"] for p in openai_rag_app.PASSAGES)
        assert answer in chat["output_messages"]
        assert chat["eval_scores"] == {}  # the app sends no score of its own

    # scored by the daemon's worker, read back from the store
    scores = {kind: _wait_scores(stack, trace) for kind, trace in sent["traces"].items()}
    for got in scores.values():
        g = got["groundedness"]
        assert g["source"] == "tracehold"
        assert g["evaluator_version"].startswith("tracehold/groundedness-")
        assert g["score"] is not None, g["reason"]
        assert got["relevance"]["score"] > 0.5
    print({kind: got["groundedness"]["score"] for kind, got in scores.items()})  # the -s log
    assert scores["grounded"]["groundedness"]["score"] > 0.8
    assert scores["hallucinated"]["groundedness"]["score"] <= 0.3

    # exported as the collector's evaluation histogram, with the source, in both stores
    ours = f'service_name="{service}",source=~"tracehold.*"'
    for which in ("prometheus", "victoriametrics"):
        stack.wait_value(which, f"sum(llm_evaluation_groundedness_count{{{ours}}})", 2,
                         timeout=90)
        # one score at or below 0.3 (the changed number), one above 0.8 (the grounded)
        stack.wait_value(
            which, f'sum(llm_evaluation_groundedness_bucket{{{ours},le="0.3"}})', 1)
        stack.wait_value(
            which, f'sum(llm_evaluation_groundedness_bucket{{{ours},le="0.8"}})', 1)
    series = stack.query("prometheus", f"llm_evaluation_groundedness_count{{{ours}}}")
    assert {s["metric"]["source"] for s in series} == {
        scores["grounded"]["groundedness"]["evaluator_version"]}
    assert {s["metric"].get("gen_ai_request_model") for s in series} == {openai_rag_app.MODEL}
