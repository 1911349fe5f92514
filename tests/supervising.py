"""Helpers for tests that drive the supervisor directly."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from appliance.stack.supervisor import Status, Supervised, Supervisor


class FakeClock:
    """A monotonic clock a test moves by hand (Supervisor(clock=...)); as the supervisor's
    ``sleep`` it moves time on instead of waiting."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait_for(cond: Callable[[], bool], timeout: float = 15) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def kill_and_await_restart(sup: Supervisor, item: Supervised) -> int:
    """kill -9 a supervised child and tick until a new one is healthy; the old pid."""
    assert item.proc is not None
    old = item.proc.pid
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        sup.tick()
        return item.status is Status.ok and item.proc is not None and item.proc.pid != old

    wait_for(restarted)
    return old
