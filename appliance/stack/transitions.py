"""The statuses a supervised component reports, and which may follow which.

The set is the OTel Collector's componentstatus one; the table is ours, because
our supervisor restarts a crashed process where the Collector never restarts a
component. Every change goes through ``check`` (Supervisor._set_status):

    stopped            -> starting (spawned), permanent_error (cannot be run)
    starting           -> ok (healthy), recoverable_error (exited; restarted after
                          a backoff), permanent_error (start() gave up)
    ok                 -> recoverable_error (exited, or health check failing)
    recoverable_error  -> starting (backoff over), ok (health back),
                          recoverable_error (exited while failing), permanent_error
    permanent_error    -> final: not watched, not restarted
    any                -> stopping -> stopped (stop()); straight to stopped when no
                          process is left to stop
"""

from __future__ import annotations

from enum import StrEnum

from appliance.errors import StackError


class Status(StrEnum):
    starting = "starting"
    ok = "ok"
    recoverable_error = "recoverable_error"
    permanent_error = "permanent_error"
    stopping = "stopping"
    stopped = "stopped"


S = Status
# from -> the statuses that may follow it
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.stopped: frozenset({S.starting, S.permanent_error, S.stopped}),
    S.starting: frozenset({S.ok, S.recoverable_error, S.permanent_error, S.stopping,
                           S.stopped}),
    S.ok: frozenset({S.recoverable_error, S.stopping, S.stopped}),
    S.recoverable_error: frozenset({S.starting, S.ok, S.recoverable_error,
                                    S.permanent_error, S.stopping, S.stopped}),
    S.permanent_error: frozenset({S.stopping, S.stopped}),
    S.stopping: frozenset({S.stopped}),
}


def pairs() -> set[tuple[Status, Status]]:
    """Every allowed (from, to)."""
    return {(f, t) for f, tos in TRANSITIONS.items() for t in tos}


def check(current: Status, target: Status) -> None:
    """Raise StackError unless a component that is ``current`` may become ``target``."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise StackError(f"a component that is {current} cannot become {target}; "
                         f"it can become: {allowed}")
