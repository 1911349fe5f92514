"""The supervisor's status table (appliance/stack/transitions.py): every move the
supervisor makes is in it, it holds no move the supervisor never makes, and a move
outside it raises. Driven with stand-in processes and a hand-moved clock: no child
process, no sleeping."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import StackError
from appliance.stack import transitions
from appliance.stack.spec import ComponentSpec
from appliance.stack.supervisor import Supervised, Supervisor
from appliance.stack.transitions import Status
from tests.supervising import FakeClock

_pids = itertools.count(1000)


class FakeProc:
    """What the supervisor uses of a Popen; ``die`` stands for the process exiting."""

    def __init__(self) -> None:
        self.pid = next(_pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def die(self, code: int = 1) -> None:
        self.returncode = code

    def terminate(self) -> None:
        self.die(-15)

    def kill(self) -> None:
        self.die(-9)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


class World:
    """Stand-in processes and health answers for one supervisor."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp: Path, names: str = "a",
                 **kw: Any) -> None:
        self.healthy: dict[str, bool] = dict.fromkeys(names, True)
        self.cannot_exec: set[str] = set()
        self.dies_at_once: set[str] = set()
        self.clock = FakeClock()

        def popen(argv: list[str], **_: Any) -> FakeProc:
            if argv[0] in self.cannot_exec:
                raise FileNotFoundError(argv[0])
            proc = FakeProc()
            if argv[0] in self.dies_at_once:
                proc.die()
            return proc

        monkeypatch.setattr(subprocess, "Popen", popen)
        specs = [ComponentSpec(n, [n], 1, f"http://127.0.0.1:1/{n}") for n in names]
        self.sup = Supervisor(specs, tmp, backoff_max=2, unhealthy_restart_s=10,
                              clock=self.clock, sleep=self.clock.sleep, **kw)
        monkeypatch.setattr(self.sup, "_healthy", self._healthy)

    def _healthy(self, item: Supervised) -> bool:
        alive = item.proc is not None and item.proc.poll() is None
        return alive and self.healthy[item.spec.name]

    def item(self, name: str = "a") -> Supervised:
        return next(i for i in self.sup.items if i.spec.name == name)

    def proc(self, name: str = "a") -> FakeProc:
        proc = self.item(name).proc
        assert isinstance(proc, FakeProc)
        return proc

    def start(self) -> None:
        self.sup.start(timeout_each=5, progress=lambda _: None)

    def tick_after(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        self.sup.tick()


def _restarts_and_health(w: World) -> None:
    w.start()                                          # stopped -> starting -> ok
    w.healthy["a"] = False
    w.sup.tick()                                       # ok -> recoverable_error
    w.healthy["a"] = True
    w.sup.tick()                                       # recoverable_error -> ok
    w.proc().die()
    w.sup.tick()                                       # ok -> recoverable_error
    w.tick_after(0.5)                                  # recoverable_error -> starting
    w.sup.tick()                                       # starting -> ok
    w.healthy["a"] = False
    w.sup.tick()
    w.tick_after(11)                                   # hung too long: killed
    w.sup.tick()                                       # recoverable_error -> itself
    assert w.item().last_exit == -9
    w.tick_after(1)                                    # -> starting
    w.proc().die()
    w.sup.tick()                                       # starting -> recoverable_error
    w.cannot_exec.add("a")
    with pytest.raises(StackError, match="cannot start a"):
        w.tick_after(2)                                # recoverable_error -> permanent_error
    w.sup.tick()                                       # permanent: left alone
    assert w.item().status is Status.permanent_error
    w.sup.stop()                                       # permanent_error -> stopped
    w.sup.stop()                                       # stopped -> stopped


def _start_gives_up(w: World) -> None:
    w.healthy["a"] = False
    with pytest.raises(StackError, match="a not healthy after 5s"):
        w.start()                                      # starting -> permanent_error
    w.sup.stop()                                       # permanent_error -> stopping -> stopped


def _start_sees_an_exit(w: World) -> None:
    w.dies_at_once.add("a")
    with pytest.raises(StackError, match="a exited with 1 while starting"):
        w.start()                                      # starting -> permanent_error
    assert w.item().last_exit == 1
    w.sup.stop()


def _start_again_after_an_unseen_exit(w: World) -> None:
    w.start()
    w.proc().die()
    w.start()                                          # ok -> recoverable_error -> starting
    assert w.item().status is Status.ok and w.item().last_exit == 1
    w.sup.stop()


def _start_cannot_exec(w: World) -> None:
    w.cannot_exec.add("a")
    with pytest.raises(StackError, match="cannot start a"):
        w.start()                                      # stopped -> permanent_error


def _stop_in_each_state(w: World) -> None:
    w.start()
    w.proc("a").die()
    w.healthy["c"] = False
    w.sup.tick()                                       # a: waiting for its restart,
                                                       # c: alive, health failing
    w.proc("b").die()                                  # b: exited, not yet seen: ok
    w.sup.stop()                                       # a: recoverable_error -> stopped,
                                                       # b: ok -> stopped,
                                                       # c: recoverable_error -> stopping


def _stop_while_restarting(w: World) -> None:
    w.start()
    for name in "ab":
        w.proc(name).die()
    w.sup.tick()
    w.healthy["a"] = w.healthy["b"] = False
    w.tick_after(0.5)                                  # both starting again
    w.proc("b").die()
    w.sup.stop()                                       # a: starting -> stopping,
                                                       # b: starting -> stopped


def _stop_when_ok(w: World) -> None:
    w.start()
    w.sup.stop()                                       # ok -> stopping -> stopped


SCENARIOS: list[tuple[Callable[[World], None], str]] = [
    (_restarts_and_health, "a"),
    (_start_gives_up, "a"),
    (_start_sees_an_exit, "a"),
    (_start_again_after_an_unseen_exit, "a"),
    (_start_cannot_exec, "a"),
    (_stop_in_each_state, "abc"),
    (_stop_while_restarting, "ab"),
    (_stop_when_ok, "a"),
]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[tuple[Status, Status]]]:
    seen: set[tuple[Status, Status]] = set()
    check = transitions.check

    def recording(current: Status, target: Status) -> None:
        check(current, target)  # raises for a move outside the table
        seen.add((current, target))

    monkeypatch.setattr(transitions, "check", recording)
    yield seen


def test_every_move_is_in_the_table_and_the_table_is_all_used(
        recorded: set[tuple[Status, Status]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for scenario, names in SCENARIOS:
        scenario(World(monkeypatch, tmp_path, names))
    assert recorded <= transitions.pairs()
    assert transitions.pairs() - recorded == set(), "table entries the supervisor never uses"


def test_a_move_outside_the_table_raises(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(monkeypatch, tmp_path)
    item = w.item()
    assert item.status is Status.stopped
    with pytest.raises(StackError, match="stopped cannot become ok; it can become: "
                                         "permanent_error, starting, stopped"):
        w.sup._set_status(item, Status.ok)
    assert item.status is Status.stopped  # unchanged
    w.start()
    with pytest.raises(StackError, match="ok cannot become starting"):
        w.sup._set_status(item, Status.starting)
    with pytest.raises(StackError, match="stopping cannot become ok"):
        transitions.check(Status.stopping, Status.ok)


def test_every_status_has_a_row() -> None:
    assert set(transitions.TRANSITIONS) == set(Status)
