"""The stack manager's supervisor, driven with small stand-in children (plain HTTP
servers): start order, health, restart with backoff after kill -9, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from appliance.errors import StackError
from appliance.stack.spec import ComponentSpec
from appliance.stack.supervisor import Status, Supervisor
from tests.supervising import FakeClock, kill_and_await_restart, wait_for


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(name: str, tmp: Path) -> ComponentSpec:
    port = _port()
    return ComponentSpec(name, [sys.executable, "-m", "http.server", str(port), "--bind",
                                "127.0.0.1", "--directory", str(tmp)],
                         port, f"http://127.0.0.1:{port}/")


def test_start_restart_stop(tmp_path: Path) -> None:
    specs = [_server("a", tmp_path), _server("b", tmp_path)]
    snapshots: list[list[dict[str, object]]] = []
    sup = Supervisor(specs, tmp_path / "logs", backoff_max=2, on_change=snapshots.append)
    order: list[str] = []
    sup.start(progress=order.append)
    try:
        assert [line for line in order if line.endswith("…")] == ["starting a …", "starting b …"]
        assert [i.status for i in sup.items] == [Status.ok, Status.ok]
        sup.start()  # repeating start is harmless
        kill_and_await_restart(sup, sup.items[0])
        snap = sup.snapshot()[0]
        assert snap["restarts"] == 1 and snap["last_exit"] == -signal.SIGKILL
        assert any(s[0]["status"] == "recoverable_error" for s in snapshots)
    finally:
        sup.stop()
    assert all(i.status is Status.stopped for i in sup.items)
    sup.stop()  # and so is repeating stop


def test_backoff_doubles_up_to_the_cap(tmp_path: Path) -> None:
    spec = ComponentSpec("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"], 1,
                         "http://127.0.0.1:1/")
    clock = FakeClock()
    sup = Supervisor([spec], tmp_path, backoff_max=1.0, clock=clock)
    item = sup.items[0]
    sup._spawn(item)
    waits = []
    for _ in range(3):
        wait_for(lambda: (sup.tick(), item.proc is None)[1])
        assert item.last_exit == 3 and item.status is Status.recoverable_error
        assert item.next_start is not None
        waits.append(item.next_start - clock())
        clock.now = item.next_start - 0.01
        sup.tick()
        assert item.proc is None  # not before the backoff is over
        clock.now = item.next_start
        sup.tick()
        assert item.proc is not None and item.status is Status.starting
    assert waits == [0.5, 1.0, 1.0]
    sup.stop()


def test_failed_start_is_a_clear_error(tmp_path: Path) -> None:
    spec = ComponentSpec("broken", [sys.executable, "-c", "print('boom'); raise SystemExit(2)"],
                         1, "http://127.0.0.1:1/")
    sup = Supervisor([spec], tmp_path)
    with pytest.raises(StackError, match=r"(?s)broken exited with 2.*boom"):
        sup.start(progress=lambda _: None)
    sup.stop()
    missing = ComponentSpec("missing", [str(tmp_path / "nope")], 1, "http://127.0.0.1:1/")
    with pytest.raises(StackError, match="cannot start missing"):
        Supervisor([missing], tmp_path).start(progress=lambda _: None)


def test_a_hung_component_is_killed_and_restarted(tmp_path: Path) -> None:
    """Alive but not answering (SIGSTOP) for longer than the limit: killed, restarted."""
    spec = _server("hangs", tmp_path)
    clock = FakeClock()
    sup = Supervisor([spec], tmp_path / "logs", backoff_max=1, unhealthy_restart_s=1.0,
                     clock=clock)
    sup.start(progress=lambda _: None)
    item = sup.items[0]
    try:
        assert item.proc is not None
        old = item.proc.pid
        os.kill(old, signal.SIGSTOP)
        wait_for(lambda: (sup.tick(), item.status is Status.recoverable_error)[1])
        clock.sleep(0.9)
        sup.tick()
        assert item.proc is not None and item.proc.pid == old  # not yet: within the limit
        clock.sleep(0.2)
        sup.tick()  # past the limit: killed
        wait_for(lambda: (sup.tick(), item.proc is None)[1])
        assert item.last_exit == -signal.SIGKILL and item.restarts == 0
        clock.sleep(0.5)  # the first backoff

        def restarted() -> bool:
            sup.tick()
            return item.status is Status.ok and item.proc is not None and item.proc.pid != old

        wait_for(restarted, timeout=30)
        assert item.restarts == 1 and item.last_exit == -signal.SIGKILL
    finally:
        sup.stop()


def test_a_healthy_component_is_asked_once_per_health_interval(tmp_path: Path) -> None:
    """At rest the supervisor asks a healthy component every `health_interval` seconds,
    while it notices a crash on the next tick and asks a restarted one until it is ok."""
    clock = FakeClock()
    sup = Supervisor([_server("calm", tmp_path)], tmp_path / "logs", backoff_max=1,
                     health_interval=5.0, clock=clock)
    sup.start(progress=lambda _: None)
    item = sup.items[0]
    asked: list[float] = []
    healthy = sup._healthy

    def counted(it: object) -> bool:
        asked.append(clock())
        return healthy(item)

    sup._healthy = counted  # type: ignore[method-assign]
    try:
        for _ in range(40):  # 20 s of ticks every half second
            sup.tick()
            clock.sleep(0.5)
        assert len(asked) == 4 and asked[1] - asked[0] == 5.0
        assert item.proc is not None
        os.kill(item.proc.pid, signal.SIGKILL)
        wait_for(lambda: (sup.tick(), item.proc is None)[1])  # noticed without a health ask
        clock.sleep(0.5)  # the first backoff
        asked.clear()
        wait_for(lambda: (sup.tick(), item.status is Status.ok)[1])
        assert asked  # a restarted component is asked on every tick until healthy
    finally:
        sup.stop()


def test_at_rest_the_state_is_written_once_per_health_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    writes: list[float] = []
    sup = Supervisor([_server("calm", tmp_path)], tmp_path / "logs", health_interval=5.0,
                     on_change=lambda _: writes.append(clock()), clock=clock,
                     sleep=clock.sleep)
    sup.start(progress=lambda _: None)
    try:
        writes.clear()
        end = clock() + 20
        sup.run(lambda: clock() >= end)  # ticks every 0.5 s of the fake clock
        assert 3 <= len(writes) <= 4, writes  # not 40: one per tick
    finally:
        sup.stop()
