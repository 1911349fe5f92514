"""Multi-span GenAI traces (an agent doing RAG) as OTLP protobuf, for the console tests.

    POST /ask (server)                              service
      invoke_agent planner                          agent planner
        invoke_agent researcher                     agent researcher
          execute_tool search_docs                  tool search_docs (fails if tool_error)
          retrieve docs   gen_ai.retrieval.documents (content + score)
          chat MODEL      prompt, output, tokens, TTFT, evaluation events
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests import otlp_payloads

MS = 1_000_000


def kv(key: str, value: object) -> KeyValue:
    """otlp_payloads.kv, plus lists as OTLP arrays."""
    if isinstance(value, list):
        items = [otlp_payloads.kv("_", v).value for v in value]
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=items)))
    return otlp_payloads.kv(key, value)


@dataclass
class AgentTrace:
    service: str = "rag-api"
    model: str = "gpt-4o"
    prompt: str = "What is the leave carry-over policy?"
    chunks: list[tuple[str, float]] = field(default_factory=lambda: [
        ("Section 4.2: employees may carry over up to five days of annual leave.", 0.91),
        ("Section 4.3: carried-over days expire on 31 March.", 0.78),
    ])
    output: str = "You may carry over up to five days; they expire on 31 March."
    input_tokens: int = 812
    output_tokens: int = 64
    tool_error: bool = False
    chat_error: bool = False
    evaluations: dict[str, float] = field(default_factory=lambda: {"groundedness": 0.92,
                                                                    "relevance": 0.88})
    start_ns: int = 0
    trace_id: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def trace_hex(self) -> str:
        return self.trace_id.hex()

    def spans(self) -> list[Span]:
        t0 = self.start_ns or time.time_ns() - 2_000 * MS
        ids = [os.urandom(8) for _ in range(6)]
        root, planner, researcher, tool, retrieve, chat = ids

        def span(sid: bytes, parent: bytes | None, name: str, start_ms: int, end_ms: int,
                 attrs: dict[str, object], error: bool = False,
                 kind: int = Span.SPAN_KIND_INTERNAL) -> Span:
            sp = Span(trace_id=self.trace_id, span_id=sid, parent_span_id=parent or b"",
                      name=name, kind=kind, start_time_unix_nano=t0 + start_ms * MS,
                      end_time_unix_nano=t0 + end_ms * MS,
                      attributes=[kv(k, v) for k, v in attrs.items()])
            if error:
                sp.status.code = Status.STATUS_CODE_ERROR
                sp.status.message = "failed"
            return sp

        documents = [{"id": f"doc-{i}", "score": s, "content": c}
                     for i, (c, s) in enumerate(self.chunks)]
        chat_span = span(chat, researcher, f"chat {self.model}", 700, 1700, {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.agent.name": "researcher",
            "gen_ai.request.model": self.model, "gen_ai.response.model": self.model,
            "gen_ai.usage.input_tokens": self.input_tokens,
            "gen_ai.usage.output_tokens": self.output_tokens,
            "gen_ai.response.time_to_first_chunk": 0.25,
            "gen_ai.input.messages": json.dumps(ensure_ascii=False, obj=[
                {"role": "system", "parts": [{"type": "text", "content": "Answer from context."}]},
                {"role": "user", "parts": [{"type": "text", "content": self.prompt}]}]),
            "gen_ai.output.messages": json.dumps(ensure_ascii=False, obj=[
                {"role": "assistant", "parts": [{"type": "text", "content": self.output}],
                 "finish_reason": "stop"}]),
        }, error=self.chat_error, kind=Span.SPAN_KIND_CLIENT)
        for name, score in self.evaluations.items():
            chat_span.events.add(time_unix_nano=t0 + 1700 * MS, name="gen_ai.evaluation.result",
                                 attributes=[kv("gen_ai.evaluation.name", name),
                                             kv("gen_ai.evaluation.score.value", score)])
        return [
            span(root, None, "POST /ask", 0, 1800, {"http.route": "/ask"},
                 error=self.chat_error, kind=Span.SPAN_KIND_SERVER),
            span(planner, root, "invoke_agent planner", 10, 1790, {
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}),
            span(researcher, planner, "invoke_agent researcher", 20, 1780, {
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"}),
            span(tool, researcher, "execute_tool search_docs", 30, 300, {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_docs"},
                error=self.tool_error),
            span(retrieve, researcher, "retrieve docs", 300, 690, {
                "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "handbook",
                "tracehold.retrieval.scores": [s for _, s in self.chunks],
                "gen_ai.retrieval.documents": json.dumps(documents)}),
            chat_span,
        ]


def export(traces: list[AgentTrace]) -> ExportTraceServiceRequest:
    """One export request; one resource per service."""
    req = ExportTraceServiceRequest()
    for service in sorted({t.service for t in traces}):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", service))
        ss = rs.scope_spans.add()
        ss.scope.name = "tests.genai_traces"
        for t in traces:
            if t.service == service:
                ss.spans.extend(t.spans())
    return req
