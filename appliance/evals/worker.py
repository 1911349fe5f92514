"""The daemon's evaluator worker: every ``evals_interval_s`` it scores the model calls that
arrived since its last round, on its own thread, so ingest never waits for it.

A round takes the calls received between its cursor and ``SETTLE_S`` ago (the other
spans of a trace, its retrieval among them, arrive in later batches), samples them
(``evals_sample_rate``) and scores at most what the CPU budget allows in one interval
(``evals_cpu_budget`` of one core at the measured cost per call); the rest of the round
is counted as over budget and not scored later, so the worker never falls behind.

Windows that matter more come first: every call of an open case's window (``focus``,
from the case store, which sits above this package and is handed in by the daemon) is
scored, not a sample, before the round's new calls, within the same budget; calls
already scored are not picked again, so a long window fills over a few rounds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from appliance.evals.evaluators import Encoder, Evaluators
from appliance.evals.runner import SEEN, EvalRunner, RunStats
from appliance.evals.store import EvalStore
from appliance.settings import Settings
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.evals")
SETTLE_S = 5.0
RETENTION_EVERY_S = 3600
# Above the process's nice value, like the RCA worker's: on Linux nice is per thread, so on
# a busy host the API and ingest get the CPU first and scores wait.
NICE = 10
# (service, start, end): a window whose every call is scored (an open case's)
Focus = Callable[[], Sequence[tuple[str, datetime, datetime]]]


class EvalWorker:
    def __init__(self, store: SpanStore, encoder: Encoder, s: Settings,
                 focus: Focus | None = None) -> None:
        self.interval_s, self.focus = s.evals_interval_s, focus
        self.retention_days = s.span_retention_days
        self.runner = EvalRunner(store, EvalStore(store.db),
                                 Evaluators(encoder, s.evals_evaluators),
                                 s.evals_sample_rate, s.evals_cpu_budget)
        self.cursor = datetime.now(UTC) - timedelta(seconds=SETTLE_S)
        self.totals = RunStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime | None = None) -> RunStats:
        until = (now or datetime.now(UTC)) - timedelta(seconds=SETTLE_S)
        if until <= self.cursor:
            return RunStats()
        budget_calls = max(1, int(self.interval_s * self.runner.cpu_budget
                                  / max(self.runner.cost_per_call, 1e-3)))
        for service, start, end in (self.focus() if self.focus is not None else ()):
            done = self.runner.run(f"service_name = ? AND {SEEN} >= ? AND {SEEN} < ?",
                                   [service, start, end], sample_rate=1.0, stop=self._stop,
                                   max_calls=budget_calls)
            done.over_budget = 0  # not lost: the next round picks the rest of the window
            self._add(done)
            budget_calls -= done.evaluated
        stats = self.runner.run("received_at > ? AND received_at <= ?", [self.cursor, until],
                                stop=self._stop, max_calls=max(budget_calls, 0))
        self.cursor = until
        self._add(stats)
        return stats

    def _add(self, stats: RunStats) -> None:
        for name in ("calls", "sampled", "evaluated", "scores", "not_scored", "over_budget"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        self.totals.cpu_s += stats.cpu_s

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="evaluators", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE)
        except (OSError, AttributeError):  # no per-thread priority here: run as we are
            log.info("the evaluator worker runs at the process's priority")
        kept_at = 0.0
        while not self._stop.wait(self.interval_s):
            try:
                if time.monotonic() - kept_at >= RETENTION_EVERY_S:  # scores go with spans
                    kept_at = time.monotonic()
                    self.runner.evals.apply_retention(self.retention_days)
                self.run_once()
            except Exception:  # a failed round must not stop scoring; the next one goes on
                log.exception("evaluator round failed")
