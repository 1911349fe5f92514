"""Benchmark OTLP decode + row building (target: >= 30,000 spans/s on one core).

Builds an ExportTraceServiceRequest with the official opentelemetry-proto classes:
spans of ~3 KB with ~20 attributes (GenAI fields, prompt/completion text), serialises
it once, then times what ingest runs, ``body_rows`` (the native walker), and the Python
path it stands in for, ``decode_body`` + ``to_rows``, run after run in turn. Prints
spans/s of both and writes ``bench/results/decode.json``.

    PYTHONPATH=. python bench/bench_decode.py [--spans 2000] [--runs 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from appliance.ingest.decode import decode_body
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import body_rows, to_rows

RESULTS = Path(__file__).parent / "results"
PROTO = "application/x-protobuf"


def build_request(n_spans: int, services: int = 4, unique: bool = False
                  ) -> ExportTraceServiceRequest:
    """A request of ``n_spans`` GenAI-looking spans of roughly 3 KB each.

    Like real GenAI traffic, most attributes (model, provider, operation...) repeat from span
    to span; token counts, ids and messages vary. ``unique=True`` makes every attribute
    value differ between spans: the worst case for the decoder's attribute cache.
    """
    request = ExportTraceServiceRequest()
    per_service = max(1, n_spans // services)
    made = 0
    for s in range(services):
        rs = request.resource_spans.add()
        for key, value in (("service.name", f"svc-{s}"), ("service.version", "1.2.3"),
                           ("deployment.environment", "prod"), ("host.name", "node-7")):
            rs.resource.attributes.add(key=key, value=AnyValue(string_value=value))
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.openai"
        count = per_service if s < services - 1 else n_spans - made
        for i in range(count):
            made += 1
            span = ss.spans.add()
            span.trace_id = (made // 5 + 1).to_bytes(16, "big")
            span.span_id = (made + 1).to_bytes(8, "big")
            span.parent_span_id = (made // 5 * 5 + 1).to_bytes(8, "big")
            span.name = "chat gpt-4o"
            span.kind = 3
            span.start_time_unix_nano = 1_700_000_000_000_000_000 + made * 1_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + 850_000_000
            span.attributes.extend(_attributes(made, unique))
            span.status.code = 1
            event = span.events.add(name="gen_ai.evaluation.result",
                                    time_unix_nano=span.end_time_unix_nano)
            event.attributes.add(key="gen_ai.evaluation.name",
                                 value=AnyValue(string_value=f"relevance{made * unique}"))
            event.attributes.add(key="gen_ai.evaluation.score.value",
                                 value=AnyValue(double_value=0.8))
            del i
    return request


def _attributes(n: int, unique: bool = False) -> list[KeyValue]:
    text = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.conversation.id": f"conv-{n // 10}", "server.address": "api.openai.com",
            "gen_ai.response.id": f"chatcmpl-{n:012d}", "http.route": "/v1/chat/completions",
            "tracehold.prompt.template.version": "v12", "gen_ai.agent.name": "support",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                {"type": "text", "content": "Summarise the incident report. " * 40}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                {"type": "text", "content": "The outage was caused by a bad deploy. " * 30}]}])}
    suffix, k = (f"-{n}", n) if unique else ("", 0)
    attrs = [KeyValue(key=key, value=AnyValue(string_value=v + suffix))
             for key, v in text.items()]
    for key, value in (("gen_ai.usage.input_tokens", 300 + n % 997),
                       ("gen_ai.usage.output_tokens", 40 + n % 211),
                       ("server.port", 443 + k), ("gen_ai.request.max_tokens", 1024 + k)):
        attrs.append(KeyValue(key=key, value=AnyValue(int_value=value)))
    for key, dvalue in (("gen_ai.request.temperature", 0.2 + k / 1e9),
                        ("gen_ai.response.time_to_first_chunk", 0.2 + n % 1000 / 997)):
        attrs.append(KeyValue(key=key, value=AnyValue(double_value=dvalue)))
    reasons = AnyValue()
    reasons.array_value.values.add(string_value="stop")
    attrs.append(KeyValue(key="gen_ai.response.finish_reasons", value=reasons))
    attrs.append(KeyValue(key="gen_ai.request.stream", value=AnyValue(bool_value=True)))
    return attrs


def calibration() -> float:
    """Seconds for a fixed pure-Python loop (5M additions), to compare machines' cores."""
    t0 = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return round(time.perf_counter() - t0, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=2000, help="spans per request")
    parser.add_argument("--runs", type=int, default=20, help="timed runs")
    parser.add_argument("--gzip", action="store_true", help="gzip the body (timed too)")
    parser.add_argument("--unique-values", action="store_true",
                        help="no attribute value repeats between spans (worst case)")
    parser.add_argument("--output", default="decode.json", help="file in bench/results/")
    args = parser.parse_args()

    body = raw = build_request(args.spans, unique=args.unique_values).SerializeToString()
    encoding = None
    if args.gzip:
        body, encoding = gzip.compress(body, 1), "gzip"
    limits = IngestLimits()
    received = datetime.now(UTC)
    paths = {
        "native": lambda: body_rows(body, PROTO, encoding, limits, received),
        "python": lambda: to_rows(decode_body(body, PROTO, encoding, limits), limits,
                                  received)}
    assert paths["native"]() == paths["python"]()  # warm-up, and the same rows
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.runs):
        for name, run in paths.items():
            t0 = time.process_time()
            run()
            timings[name].append(time.process_time() - t0)
    best, median = min(timings["native"]), statistics.median(timings["native"])
    python = statistics.median(timings["python"])
    result = {
        "benchmark": "body_rows (native walker) and decode_body+to_rows (Python), CPU time",
        "spans_per_request": args.spans,
        "runs": args.runs, "gzip": args.gzip, "unique_values": args.unique_values,
        "request_bytes": len(body), "bytes_per_span": round(len(raw) / args.spans),
        "attributes_per_span": len(_attributes(0)),
        "spans_per_s_median": round(args.spans / median),
        "spans_per_s_best": round(args.spans / best),
        "python_path_spans_per_s_median": round(args.spans / python),
        "us_per_span_median": {"native": round(median / args.spans * 1e6, 1),
                               "python": round(python / args.spans * 1e6, 1)},
        "target_spans_per_s": 30_000, "python": platform.python_version(),
        "calibration_loop_s": calibration(),
        "machine": platform.machine(), "measured_at": received.isoformat(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['spans_per_s_median']:,} spans/s median "
          f"({result['spans_per_s_best']:,} best; the Python path "
          f"{result['python_path_spans_per_s_median']:,}), {result['bytes_per_span']} B/span, "
          f"{result['attributes_per_span']} attributes/span")


if __name__ == "__main__":
    main()
