"""Bad input gets a clear 4xx (or a documented truncation); the daemon keeps running and
good traffic sent at the same time is all stored."""

from __future__ import annotations

import gzip
import threading
import uuid

import httpx
import pytest

from appliance import sdk
from tests.conftest import Stack
from tests.otlp_payloads import export_request, genai_span, kv

pytestmark = [pytest.mark.stack, pytest.mark.binaries]

PLACEHOLDER = "@@INVALID-UTF8@@"


def invalid_utf8_request(service: str) -> bytes:
    """A valid OTLP message whose attribute value and span name hold invalid UTF-8.
    Built by swapping equal-length bytes, since the protobuf library refuses to."""
    span = genai_span(name=PLACEHOLDER, **{"note": PLACEHOLDER})
    raw = export_request(service, 0, spans=[span]).SerializeToString()
    bad = b"\xff\xfe\xc3(" + b"x" * (len(PLACEHOLDER) - 4)
    assert raw.count(PLACEHOLDER.encode()) == 2
    return raw.replace(PLACEHOLDER.encode(), bad)


def many_attributes_request(service: str, n: int = 10_000) -> bytes:
    span = genai_span()
    span.attributes.extend(kv(f"custom.attr.{i}", i) for i in range(n))
    return export_request(service, 0, spans=[span]).SerializeToString()


def _post(url: str, key: str | None, body: bytes, content_type: str,
          encoding: str | None = None) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if key:
        headers["X-API-Key"] = key
    if encoding:
        headers["Content-Encoding"] = encoding
    return httpx.post(url, content=body, headers=headers, timeout=60, trust_env=False)


def test_bad_input_through_envoy_and_at_the_daemon(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    good_service = f"good-{run}"
    daemon_pid = stack.component("daemon")["pid"]

    # Good traffic flows the whole time, from another thread.
    acked: list[int] = []

    def good_traffic() -> None:
        provider, counting = sdk.tracer_provider(good_service, stack.endpoints["otlp_grpc"],
                                                 stack.key)
        tracer = provider.get_tracer("good")
        for i in range(400):
            with tracer.start_as_current_span(f"chat {i}") as s:
                s.set_attribute("gen_ai.request.model", "m-good")
        provider.shutdown()
        acked.append(counting.acknowledged)

    t = threading.Thread(target=good_traffic)
    t.start()

    envoy = stack.endpoints["otlp_http"] + "/v1/traces"
    daemon = f"http://127.0.0.1:{stack.settings.ports.daemon}/v1/traces"
    proto, js = "application/x-protobuf", "application/json"
    for url, key in ((envoy, stack.key), (daemon, None)):
        r = _post(url, key, b"\x0a\xff\xff\xff\xff\x0f garbage", proto)
        assert r.status_code == 400, (url, r.text)
        r = _post(url, key, b'{"resourceSpans": [', js)
        assert r.status_code == 400, (url, r.text)
        r = _post(url, key, b"not gzip at all", proto, encoding="gzip")
        assert r.status_code in (400, 415), (url, r.text)
    # 20 MB: over the collector's 16 MiB intake limit, refused by Envoy with 413.
    big = export_request(f"big-{run}", 7000, big=True).SerializeToString()
    assert len(big) > 20_000_000
    r = _post(envoy, stack.key, big, proto)
    assert r.status_code == 413, r.text[:200]
    # The daemon's own limit (128 MiB) is for collector batches; a gzip bomb past it is refused.
    bomb = gzip.compress(b"\0" * (stack.settings.ingest_max_body_mib * 1024 * 1024 + 1))
    r = _post(daemon, None, bomb, proto, encoding="gzip")
    assert r.status_code == 413, r.text[:200]
    assert r.json()["ok"] is False and r.json()["title"] == "Payload too large"

    # Invalid UTF-8 is accepted and stored with replacement characters (documented).
    utf8_service = f"utf8-{run}"
    r = _post(envoy, stack.key, invalid_utf8_request(utf8_service), proto)
    assert r.status_code == 200, r.text
    # 10,000 attributes: accepted, the first 1,024 kept, the rest counted as dropped.
    many_service = f"many-{run}"
    r = _post(envoy, stack.key, many_attributes_request(many_service), proto)
    assert r.status_code == 200, r.text

    t.join(timeout=120)
    assert acked == [400]
    assert stack.wait_stored(good_service, 400) == 400
    assert stack.wait_stored(utf8_service, 1) == 1
    assert stack.wait_stored(many_service, 1) == 1
    with stack.daemon() as c:
        utf8 = c.get("/api/v1/spans", params={"service": utf8_service}).json()["spans"][0]
        many = c.get("/api/v1/spans", params={"service": many_service}).json()["spans"][0]
    assert utf8["name"].startswith("\ufffd") and "\ufffd" in utf8["attributes"]["note"]
    limit = stack.settings.ingest_max_attributes
    assert len(many["attributes"]) == limit
    assert many["dropped_attributes_count"] == 10_000 + 6 - limit
    assert many["request_model"] == "m1"  # typed columns survive truncation
    assert stack.component("daemon")["pid"] == daemon_pid  # never crashed
