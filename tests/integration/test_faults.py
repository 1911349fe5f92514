"""Crashes: the stack manager restarts what died, and no acknowledged span is lost.
Each test kills part of a stack, so each runs on a stack of its own (`own_stack`)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from appliance import sdk
from tests.conftest import Stack

pytestmark = [pytest.mark.stack, pytest.mark.binaries]


def _wait_restarted(stack: Stack, name: str, old_pid: int, restarts: int,
                    timeout: float = 30) -> tuple[dict[str, object], float]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        comp = stack.component(name)
        if comp["status"] == "ok" and comp["pid"] not in (None, old_pid):
            assert comp["restarts"] == restarts + 1
            return comp, time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"{name} not restarted within {timeout}s: {stack.component(name)}")


def _until_acknowledged(counting: sdk.CountingExporter, at_least: int, what: str,
                        timeout: float = 60) -> int:
    """Wait until the appliance has acknowledged at_least spans in all; how many it has."""
    deadline = time.monotonic() + timeout
    while (acked := counting.acknowledged) < at_least:
        assert time.monotonic() < deadline, f"{what}: {acked} of {at_least} acknowledged"
        time.sleep(0.05)
    return acked


def test_kill_daemon_while_traces_flow_loses_nothing(own_stack: Stack) -> None:
    stack = own_stack
    service = f"fault-{uuid.uuid4().hex[:8]}"
    provider, counting = sdk.tracer_provider(service, stack.endpoints["otlp_grpc"], stack.key)
    tracer = provider.get_tracer("faults")
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            with tracer.start_as_current_span(f"chat {i}") as s:
                s.set_attribute("gen_ai.request.model", "m-fault")
                s.set_attribute("gen_ai.usage.input_tokens", i)
            i += 1
            if i % 50 == 0:
                time.sleep(0.02)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        acked = _until_acknowledged(counting, 500, "before the kill")
        daemon = stack.component("daemon")
        os.kill(daemon["pid"], signal.SIGKILL)
        # traffic keeps flowing into the collector's on-disk queue
        _until_acknowledged(counting, acked + 500, "after the kill")
        _wait_restarted(stack, "daemon", daemon["pid"], daemon["restarts"])
        _until_acknowledged(counting, counting.acknowledged + 500, "after the restart")
    finally:
        stop.set()
        t.join()
        provider.shutdown()
    assert counting.failed == 0
    assert counting.acknowledged > 1000
    stored = stack.wait_stored(service, counting.acknowledged, timeout=90)
    assert stored == counting.acknowledged


@pytest.mark.parametrize("name", ["collector", "prometheus", "victoriametrics"])
def test_killed_component_is_restarted_and_status_shows_it(own_stack: Stack,
                                                           name: str) -> None:
    stack = own_stack
    before = stack.component(name)
    os.kill(before["pid"], signal.SIGKILL)
    after, took = _wait_restarted(stack, name, before["pid"], before["restarts"])
    assert took < 15
    assert after["last_exit"] == -signal.SIGKILL
    # The rest of the stack stayed up.
    assert all(c["status"] == "ok" for c in stack.status()["components"])
