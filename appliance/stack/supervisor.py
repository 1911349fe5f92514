"""The stack manager: start components in order, watch them, restart crashes, stop cleanly.

Each component reports one of a fixed set of statuses (as the OTel
Collector's componentstatus does), changed only through ``_set_status``, which
allows the moves of the table in transitions.py. ``start``/``stop`` are safe to
call twice. A crashed component is restarted after a backoff that doubles from
0.5 s up to ``backoff_max`` and resets once it has been healthy for a minute.
Time comes from the injected ``clock`` and ``sleep``, so tests can drive it.

A tick looks for exited processes every time (a cheap ``poll``), but asks a healthy
component's health endpoint only every ``health_interval`` seconds; one that is starting
or failing is asked on every tick. Between changes the state file is rewritten once per
``health_interval`` too (for the uptimes), not on every tick: at rest the supervisor's own
loop and the health requests it sends were a large share of the stack's idle CPU
(bench/idle_bench.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

import httpx

from appliance.errors import StackError
from appliance.stack import transitions
from appliance.stack.spec import ComponentSpec
from appliance.stack.transitions import Status

__all__ = ["Launcher", "Process", "Status", "Supervised", "Supervisor", "popen"]

LOG_ROTATE_BYTES = 50 * 1024 * 1024
# A component without a health URL counts as healthy once it has stayed up this long,
# so one that dies on start-up (bad config) fails the start instead of looking healthy.
NO_HEALTH_URL_GRACE_S = 1.0
_PR_SET_PDEATHSIG = 1
_WATCHED = (Status.starting, Status.ok, Status.recoverable_error)


def _die_with_parent() -> None:
    """Children get SIGTERM if the supervisor dies, so nothing is orphaned."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Process(Protocol):
    """What the supervisor needs of a running component: a ``subprocess.Popen``, or a
    container (stack/docker_runtime.py). ``wait`` raises ``subprocess.TimeoutExpired``."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class Launcher(Protocol):
    """Starts one component, its output appended to ``log``; OSError when it cannot."""

    def __call__(self, spec: ComponentSpec, log: Path) -> Process: ...


def popen(spec: ComponentSpec, log: Path) -> Process:
    """The native launcher: the component as a child process of the supervisor."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            preexec_fn=_die_with_parent,
        )


@dataclass
class Supervised:
    spec: ComponentSpec
    proc: Process | None = None
    status: Status = Status.stopped
    restarts: int = 0
    started_at: float | None = None
    healthy_since: float | None = None
    last_exit: int | None = None
    next_start: float | None = None
    backoff: float = 0.5
    detail: str = ""
    unhealthy_since: float | None = None
    next_health: float = 0.0  # when a healthy component's health is asked again

    def snapshot(self, now: float) -> dict[str, object]:
        alive = self.proc is not None and self.proc.poll() is None
        return {
            "name": self.spec.name,
            "pid": self.proc.pid if alive and self.proc else None,
            "port": self.spec.port,
            "status": str(self.status),
            "health": "healthy" if self.status is Status.ok else "unhealthy",
            "uptime_s": round(now - self.started_at, 1) if alive and self.started_at else 0.0,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "detail": self.detail,
            # a container's id under the docker runtime; None for a native process
            "container_id": getattr(self.proc, "container_id", None) if alive else None,
        }


class Supervisor:
    def __init__(
        self,
        specs: list[ComponentSpec],
        log_dir: Path,
        backoff_max: float = 30.0,
        on_change: Callable[[list[dict[str, object]]], None] | None = None,
        unhealthy_restart_s: float = 60.0,
        health_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        launcher: Launcher = popen,
    ) -> None:
        self.items = [Supervised(sp) for sp in specs]
        self._launch = launcher
        self._clock = clock
        self._sleep = sleep
        self.log_dir = log_dir
        self.backoff_max = backoff_max
        # A hung process is as bad as a dead one: kill it (the exit path restarts it)
        # once its health check has failed this long. 0 turns this off.
        self.unhealthy_restart_s = unhealthy_restart_s
        # How often a healthy component's health is checked (0: on every tick).
        self.health_interval = health_interval
        self.on_change = on_change
        self._client = httpx.Client(timeout=1.0, trust_env=False)
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout_each: float = 60.0, progress: Callable[[str], None] = print) -> None:
        """Start every component in order, each healthy before the next starts."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for item in self.items:
            if item.proc is not None:
                if item.proc.poll() is None:
                    continue
                if item.status in _WATCHED:  # died before a tick noticed; start it now
                    self._exited(item)
            t0 = self._clock()
            progress(f"starting {item.spec.name} …")
            self._spawn(item)
            while not self._healthy(item):
                if item.proc is not None and item.proc.poll() is not None:
                    item.last_exit = item.proc.returncode
                    self._give_up(item, f"exited with {item.proc.returncode} while starting")
                if self._clock() - t0 > timeout_each:
                    self._give_up(item, f"not healthy after {timeout_each:.0f}s "
                                        f"({item.spec.health_url})")
                self._sleep(0.1)
            self._mark_ok(item)
            progress(f"{item.spec.name} healthy in {self._clock() - t0:.1f}s")
            self._changed()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop in reverse order: Envoy first, so nothing new arrives while stores close."""
        self._stopping = True
        for item in reversed(self.items):
            proc = item.proc
            if proc is None or proc.poll() is not None:
                self._set_status(item, Status.stopped)
                continue
            self._set_status(item, Status.stopping)
            self._changed()
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._set_status(item, Status.stopped)
            item.last_exit = proc.returncode
        self._changed()
        self._client.close()

    def run(self, should_stop: Callable[[], bool], interval: float = 0.5) -> None:
        written = self._clock()  # start() has just written the state
        while not should_stop():
            self.tick()  # writes the state itself when something changed
            if self._clock() - written >= self.health_interval:
                self._changed()  # keeps uptimes in the state file current
                written = self._clock()
            self._sleep(interval)

    # -- watching ----------------------------------------------------------
    def tick(self) -> None:
        if self._stopping:
            return
        now = self._clock()
        changed = False
        for item in self.items:
            if item.status is Status.permanent_error:  # final until stop()
                continue
            proc = item.proc
            if proc is not None and proc.poll() is not None:
                self._exited(item)
                changed = True
            elif proc is None and item.next_start is not None and now >= item.next_start:
                item.restarts += 1
                self._spawn(item)
                changed = True
            elif proc is not None:
                if item.status is Status.ok and now < item.next_health:
                    continue
                item.next_health = now + self.health_interval
                healthy = self._healthy(item)
                if healthy and item.status is not Status.ok:
                    self._mark_ok(item)
                    changed = True
                elif not healthy and item.status is Status.ok:
                    self._set_status(item, Status.recoverable_error, "health check failing")
                    item.healthy_since = None
                    item.unhealthy_since = now
                    changed = True
                elif (not healthy and item.unhealthy_since is not None
                      and self.unhealthy_restart_s
                      and now - item.unhealthy_since > self.unhealthy_restart_s):
                    item.detail = (f"unhealthy for {now - item.unhealthy_since:.0f}s; "
                                   "killed to restart")
                    item.unhealthy_since = None
                    proc.kill()
                    changed = True
                if healthy and item.healthy_since and now - item.healthy_since > 60:
                    item.backoff = 0.5
        if changed:
            self._changed()

    def snapshot(self) -> list[dict[str, object]]:
        now = self._clock()
        return [item.snapshot(now) for item in self.items]

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals ---------------------------------------------------------
    def _spawn(self, item: Supervised) -> None:
        log_path = self.log_dir / f"{item.spec.name}.log"
        if log_path.exists() and log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_suffix(".log.1"))
        try:
            item.proc = self._launch(item.spec, log_path)
        except OSError as exc:
            self._set_status(item, Status.permanent_error, f"cannot start: {exc}")
            raise StackError(f"cannot start {item.spec.name}: {exc}") from exc
        self._set_status(item, Status.starting, "")
        item.next_start = None
        item.started_at = self._clock()
        item.healthy_since = None

    def _healthy(self, item: Supervised) -> bool:
        if item.spec.health_url is None:  # no endpoint: alive (past a grace period) is healthy
            alive = item.proc is not None and item.proc.poll() is None
            return alive and self._clock() - (item.started_at or 0) >= NO_HEALTH_URL_GRACE_S
        try:
            return self._client.get(item.spec.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    def _mark_ok(self, item: Supervised) -> None:
        self._set_status(item, Status.ok, "")
        item.unhealthy_since = None
        item.healthy_since = self._clock()

    def _exited(self, item: Supervised) -> None:
        """Note a process's exit and schedule its restart after the backoff."""
        assert item.proc is not None
        code = item.proc.returncode
        item.last_exit = code
        item.proc = None
        item.next_start = self._clock() + item.backoff
        self._set_status(item, Status.recoverable_error,
                         f"exited with {code}; restart in {item.backoff:.1f}s")
        item.backoff = min(item.backoff * 2, self.backoff_max)

    def _give_up(self, item: Supervised, why: str) -> NoReturn:
        """start() cannot bring this one up: it is watched no more, and the start fails
        (the caller stops the stack, which ends a process still alive)."""
        self._set_status(item, Status.permanent_error, why)
        self._changed()
        raise StackError(f"{item.spec.name} {why}; last log lines:\n{self.tail(item.spec.name)}")

    def _set_status(self, item: Supervised, status: Status, detail: str | None = None) -> None:
        """The one place a status changes; StackError for a move the table does not allow.

        ``detail`` replaces the component's detail; None keeps it."""
        transitions.check(item.status, status)
        item.status = status
        if detail is not None:
            item.detail = detail

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.snapshot())
