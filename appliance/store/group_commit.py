"""Group commit: batches that writers hand in at the same time, committed as one transaction.

Why: ingest requests arrive concurrently (the collector's sender has several consumers,
the API runs each request on a worker thread), and every commit writes and syncs the WAL
while the others wait on the write lock anyway. The first waiting writer (the leader)
commits every batch queued by then in one transaction; each writer returns only after the
commit that holds its batch, so an acknowledged batch is a committed one, and gets that
commit's error if it failed (nothing of a failed group is kept: one transaction).

A group that fails for a reason ``alone`` accepts (a batch that can never be stored, not
a full disk) is committed again one batch at a time, so one bad batch cannot fail the
others with it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("item", "done", "error", "group")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None
        self.group = 0


class GroupCommit(Generic[T]):
    """``commit(items)`` must commit all of ``items`` in one transaction or none."""

    def __init__(self, commit: Callable[[list[T]], object],
                 alone: Callable[[BaseException], bool]) -> None:
        self._commit = commit
        self._alone = alone
        self._queue: list[_Entry[T]] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()  # one commit at a time; the waiters queue up

    def submit(self, item: T) -> int:
        """Commit ``item`` (with whatever else is waiting); returns how many items its
        transaction held. Raises the commit's error."""
        entry = _Entry(item)
        with self._queue_lock:
            self._queue.append(entry)
        with self._leader:
            if not entry.done:  # else a leader before us committed it
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._run(group, entry)
        if entry.error is not None:
            raise entry.error
        return entry.group

    def _run(self, group: list[_Entry[T]], caller: _Entry[T]) -> None:
        try:
            self._commit([e.item for e in group])
        except BaseException as exc:
            if len(group) > 1 and self._alone(exc):
                for e in group:
                    self._run([e], caller)
                return
            for e in group:  # each waiter raises its own copy (tracebacks are per raise)
                e.error = exc if e is caller else _copy(exc)
        for e in group:
            e.group = len(group)
            e.done = True


def _copy(exc: BaseException) -> BaseException:
    try:
        twin = copy.copy(exc)
    except Exception:  # an exception that cannot be copied: raise the same one
        return exc
    twin.__cause__ = exc
    return twin
