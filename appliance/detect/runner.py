"""Run every detector on an interval inside the daemon and hand findings to the cases.

One detector per failure type (taxonomy: docs/architecture.md). A finding for a signature
that is still firing is handed on again at most once a minute, with its fresh
evidence, so an open case collects evidence without flooding the audit log.

A round whose recent window can hold no span is skipped without a query: every detector
judges only groups with spans in the recent window (at least ``min_recent`` of them), so
such a round finds nothing. The runner keeps the newest "seen" time (``store.spans.SEEN``:
end or arrival, whichever is later) of every stored span, from the store once and then
from each insert, and skips while that lies before the recent window. A quiet appliance
then costs one comparison per interval instead of a score of DuckDB queries
(bench/idle_bench.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from appliance.detect import operational, quality
from appliance.detect.buckets import BucketCache
from appliance.detect.model import Finding
from appliance.detect.windows import SEEN, Windows
from appliance.domain.taxonomy import FailureType
from appliance.evals.store import on_scored
from appliance.ingest.rows import SpanRow
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.detect")

Detector = Callable[[SpanStore, DetectConfig, Windows], list[Finding]]

DETECTORS: dict[FailureType, Detector] = {
    FailureType.hallucination: quality.hallucination,
    FailureType.retrieval_drift: quality.retrieval_drift,
    FailureType.coherence_degradation: quality.coherence_degradation,
    FailureType.agent_loop: operational.agent_loop,
    FailureType.prompt_regression: operational.prompt_regression,
    FailureType.context_overflow: operational.context_overflow,
    FailureType.provider_error: operational.provider_error,
    FailureType.latency_cost_regression: operational.latency_cost_regression,
}

REEMIT_S = 60.0


def detect(store: SpanStore, cfg: DetectConfig, now: datetime | None = None,
           only: str | None = None, cache: BucketCache | None = None) -> list[Finding]:
    """Every detector once (or just `only`), over the windows ending `now`; with a
    ``cache``, the windows' comparisons reuse the buckets kept by earlier rounds."""
    w = Windows.at(now or datetime.now(UTC), cfg, cache)
    findings: list[Finding] = []
    for name, run in DETECTORS.items():
        if only is None or only == name:
            findings.extend(run(store, cfg, w))
    return findings


def still_firing(store: SpanStore, cfg: DetectConfig, failure_type: str, service: str,
                 now: datetime | None = None) -> tuple[bool, list[Finding]]:
    """Verification after a fix: does this detector still fire for this service?"""
    found = [f for f in detect(store, cfg, now, only=failure_type) if f.service == service]
    return bool(found), found


class DetectorRunner:
    def __init__(self, store: SpanStore, cfg: DetectConfig,
                 sink: Callable[[Finding], None]) -> None:
        self.store, self.cfg, self.sink = store, cfg, sink
        self._last: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._newest_lock = threading.Lock()
        self._newest: datetime | None = None
        self.rounds = self.skipped = 0
        self.cache = BucketCache()
        store.on_insert(self._arrived)  # first, so no insert falls between the two
        store.on_retention(self.cache.clear)
        on_scored(store.db, self._scored)
        known = store.read(f"SELECT max({SEEN}) AS t, max(epoch_us(end_time) "
                           "- epoch_us(received_at)) AS lead FROM spans")[0]
        self._note(known["t"])
        self.cache.note_lead(timedelta(microseconds=max(int(known["lead"] or 0), 0)))

    def _note(self, seen: datetime | None) -> None:
        with self._newest_lock:
            if seen is not None and (self._newest is None or seen > self._newest):
                self._newest = seen

    def _arrived(self, rows: Sequence[SpanRow]) -> None:
        if rows:
            seen = [max(r.end_time, r.received_at) for r in rows]
            self.cache.note_lead(max(s - r.received_at for s, r in zip(seen, rows, strict=True)))
            self.cache.invalidate_from(min(seen))
            self._note(max(seen))

    def _scored(self, seen: datetime | None) -> None:
        """Built-in scores were written for spans seen from ``seen`` (None: unknown)."""
        if seen is None:
            self.cache.clear(scores_only=True)
        else:
            self.cache.invalidate_from(seen, scores_only=True)

    def quiet(self, now: datetime) -> bool:
        """No stored span is seen in the recent window ending ``now``: nothing to judge."""
        newest = self._newest
        return newest is None or newest < now - timedelta(seconds=self.cfg.recent_window_s)

    def run_once(self, now: datetime | None = None) -> list[Finding]:
        now = now or datetime.now(UTC)
        self.rounds += 1
        if self.quiet(now):
            self.skipped += 1
            return []
        handed: list[Finding] = []
        for finding in detect(self.store, self.cfg, now, cache=self.cache):
            key = (finding.signature, finding.service)
            if time.monotonic() - self._last.get(key, -REEMIT_S) < REEMIT_S:
                continue
            self._last[key] = time.monotonic()
            self.sink(finding)
            handed.append(finding)
        return handed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="detectors", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.interval_s):
            try:
                self.run_once()
            except Exception:  # a failed round must not stop detection; the next one retries
                log.exception("detector round failed")
