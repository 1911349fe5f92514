"""Every Envoy listener authenticates; only Envoy listens beyond 127.0.0.1."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import httpx
import psutil
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.conftest import EXTERNAL_BIND, Stack, tracehold
from tests.otlp_payloads import export_request

pytestmark = [pytest.mark.stack, pytest.mark.binaries]

HTTP_LISTENERS = {
    "otlp_http": ("POST", "/v1/traces"),
    "prometheus": ("GET", "/api/v1/query?query=up"),
    "victoriametrics": ("GET", "/api/v1/query?query=up"),
}


def _http(stack: Stack, listener: str, headers: dict[str, str], service: str) -> int:
    method, path = HTTP_LISTENERS[listener]
    body = export_request(service, 3).SerializeToString() if method == "POST" else None
    r = httpx.request(method, stack.endpoints[listener] + path, content=body,
                      headers={"Content-Type": "application/x-protobuf", **headers},
                      timeout=10, trust_env=False)
    return r.status_code


def _grpc(stack: Stack, metadata: list[tuple[str, str]], service: str) -> grpc.StatusCode:
    target = stack.endpoints["otlp_grpc"].removeprefix("http://")
    with grpc.insecure_channel(target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(export_request(service, 3), metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


def _assert_refused(stack: Stack, headers: dict[str, str], service: str) -> None:
    for listener in HTTP_LISTENERS:
        assert _http(stack, listener, headers, service) in (401, 403), listener
    metadata = [(k.lower(), v) for k, v in headers.items()]
    assert _grpc(stack, metadata, service) in (
        grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def test_no_key_or_wrong_key_is_refused_and_nothing_stored(stack: Stack) -> None:
    service = f"auth-{uuid.uuid4().hex[:8]}"
    _assert_refused(stack, {}, service)
    _assert_refused(stack, {"X-API-Key": "thk_wrong"}, service)
    _assert_refused(stack, {"Authorization": "Bearer thk_wrong"}, service)
    # The same requests with the key go through, both header forms.
    assert _http(stack, "otlp_http", {"X-API-Key": stack.key}, service) == 200
    assert _grpc(stack, [("authorization", f"Bearer {stack.key}")], service) == \
        grpc.StatusCode.OK
    assert _http(stack, "prometheus", {"Authorization": f"Bearer {stack.key}"}, service) == 200
    assert stack.wait_stored(service, 6) == 6  # only the two authenticated exports


def test_revoked_key_is_refused(stack: Stack) -> None:
    created = json.loads(tracehold("keys", "create", "--name", "rotate-me", "--json",
                                   data_dir=stack.data_dir).stdout)
    assert set(created) == {"id", "key"}
    service = f"revoke-{uuid.uuid4().hex[:8]}"
    headers = {"X-API-Key": created["key"]}
    deadline = time.monotonic() + 15  # Envoy reloads its listener file within a second or so
    while _http(stack, "otlp_http", headers, service) != 200:
        assert time.monotonic() < deadline, "new key never accepted"
        time.sleep(0.2)
    listed = json.loads(tracehold("keys", "list", "--json", data_dir=stack.data_dir).stdout)
    assert created["key"] not in json.dumps(listed)  # never shown again
    tracehold("keys", "revoke", created["id"], data_dir=stack.data_dir)
    deadline = time.monotonic() + 15
    while _http(stack, "otlp_http", headers, f"{service}-after") not in (401, 403):
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.2)
    _assert_refused(stack, headers, f"{service}-after")
    assert stack.stored(f"{service}-after") == 0
    # The original key still works: rotation does not lock everyone out.
    assert _http(stack, "otlp_http", {"X-API-Key": stack.key}, service) == 200


def test_only_envoy_listens_beyond_127_0_0_1(stack: Stack) -> None:
    pids = {c["name"]: c["pid"] for c in stack.status()["components"]}
    assert all(pids.values()), pids
    by_pid = {pid: name for name, pid in pids.items()}
    listening = [
        (by_pid[c.pid], c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in by_pid
    ]
    assert listening
    ports = stack.settings.ports
    external = {ports.otlp_grpc, ports.otlp_http, ports.prometheus_api,
                ports.victoriametrics_api, ports.console}
    for name, ip, port in listening:
        if ip != "127.0.0.1":
            assert name == "envoy" and ip == EXTERNAL_BIND and port in external, (name, ip, port)
    envoy_external = {port for name, ip, port in listening if name == "envoy" and ip != "127.0.0.1"}
    assert envoy_external == external
