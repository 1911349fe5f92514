"""A small RAG app on the real ``openai`` client, instrumented by OpenTelemetry's real
openai-v2 instrumentation, and a loopback stand-in for an OpenAI-compatible server.

The app is run as its own process (``python -m tests.openai_rag_app``) because the
instrumentation reads its environment once per process: the caller sets
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` and
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only`` (prompts and answers as
``gen_ai.input.messages`` / ``gen_ai.output.messages`` span attributes). Each question
is asked in its own trace with the passages in the system message, as a RAG app does;
its spans go through the OTel SDK's OTLP exporter with the API key. It prints one JSON
line: the trace id of each question and what the appliance acknowledged.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PASSAGES = (
    "Every full-time employee earns 28 days of paid annual leave per year.",
    "Up to five unused days may be carried over into the next year.",
    "Carried-over days expire on 31 March.",
)
SYSTEM = ("Answer the question only from the context below.\n\nContext:\n"
          + "\n".join(PASSAGES))
# question -> the stand-in model's answer: one grounded, one with a changed number
GROUNDED = ("How many days of annual leave does a full-time employee earn?",
            "A full-time employee earns 28 days of paid annual leave per year.")
HALLUCINATED = ("How many unused leave days can be carried over?",
                "Up to fifteen unused days may be carried over into the next year.")
ANSWERS = dict((GROUNDED, HALLUCINATED))
MODEL = "gpt-4o-mini"


class _StandIn(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: the canned answer to the last user message."""

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no {self.path} here"}})
        question = next(m["content"] for m in reversed(body["messages"])
                        if m["role"] == "user")
        answer = ANSWERS.get(question, "I do not know.")
        self._send(200, {
            "id": "chatcmpl-standin", "object": "chat.completion", "created": 1,
            "model": f"{body['model']}-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 60, "completion_tokens": len(answer.split()),
                      "total_tokens": 60 + len(answer.split())}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:  # quiet: the test's output is the evidence
        pass


@contextmanager
def stand_in_server() -> Iterator[str]:
    """The stand-in on a free loopback port; yields its base URL (``.../v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run(base_url: str, endpoint: str, key: str, service: str) -> dict[str, Any]:
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    from appliance import sdk

    provider, counting = sdk.tracer_provider(service, endpoint, key, "grpc")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=base_url, api_key="stand-in", max_retries=0)
    tracer = provider.get_tracer("openai-rag-app")
    traces: dict[str, str] = {}
    for kind, (question, _) in (("grounded", GROUNDED), ("hallucinated", HALLUCINATED)):
        with tracer.start_as_current_span("POST /ask") as root:
            client.chat.completions.create(model=MODEL, temperature=0, messages=[
                {"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])
            traces[kind] = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return {"traces": traces, "acknowledged": counting.acknowledged, "failed": counting.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="the OpenAI-compatible server")
    parser.add_argument("--endpoint", required=True, help="the appliance's OTLP gRPC endpoint")
    parser.add_argument("--key", required=True)
    parser.add_argument("--service", required=True)
    a = parser.parse_args()
    print(json.dumps(run(a.base_url, a.endpoint, a.key, a.service)))


if __name__ == "__main__":
    main()
