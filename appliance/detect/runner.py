"""Run every detector on an interval inside the daemon and hand findings to the cases.

One detector per failure type (taxonomy: docs/architecture.md). A finding for a signature
that is still firing is handed on again at most once a minute, with its fresh
evidence, so an open case collects evidence without flooding the audit log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from appliance.detect import operational, quality
from appliance.detect.model import Finding
from appliance.detect.windows import Windows
from appliance.domain.taxonomy import FailureType
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
           only: str | None = None) -> list[Finding]:
    """Every detector once (or just `only`), over the windows ending `now`."""
    w = Windows.at(now or datetime.now(UTC), cfg)
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

    def run_once(self, now: datetime | None = None) -> list[Finding]:
        handed: list[Finding] = []
        for finding in detect(self.store, self.cfg, now):
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
