"""OTLP export requests built with the official opentelemetry-proto classes."""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PROMPT = ("You are a helpful assistant for the staff handbook. Answer only from the context. "
          * 10)
CHUNK = "Section 4.2: employees may carry over up to five days of annual leave. " * 8


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def genai_span(name: str = "chat m1", big: bool = False, **extra: Any) -> Span:
    """A chat span; with big=True about 3 KB (a prompt, retrieved chunks, an output)."""
    now = time.time_ns()
    attrs = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m1", "gen_ai.usage.input_tokens": 800,
        "gen_ai.usage.output_tokens": 120, "gen_ai.response.time_to_first_chunk": 0.3,
        **extra,
    }
    if big:
        attrs["gen_ai.input.messages"] = PROMPT + CHUNK + CHUNK
        attrs["gen_ai.output.messages"] = "Employees may carry over five days. " * 20
    return Span(
        trace_id=os.urandom(16), span_id=os.urandom(8), name=name, kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now - 400_000_000, end_time_unix_nano=now,
        attributes=[kv(k, v) for k, v in attrs.items()],
    )


def export_request(service: str, n: int, big: bool = False,
                   spans: list[Span] | None = None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", service))
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    ss.spans.extend(spans if spans is not None else [genai_span(big=big) for _ in range(n)])
    return req
