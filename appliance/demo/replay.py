"""Replay demo traffic into a span store in simulated time, then run the detectors.

Minutes of traffic take seconds: the demo's own generator runs with a clock
that jumps instead of sleeping, and its spans go through the same OTLP
encoding, decoding and row building as the daemon's ingest before DuckDB.
Used by the detector tests and the detection benchmark.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from appliance.demo.names import ScenarioName
from appliance.demo.runner import Options, run
from appliance.demo.sink import Sink
from appliance.detect.buckets import BucketCache
from appliance.detect.model import Finding
from appliance.detect.runner import detect
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import body_rows
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore


class StoreExporter(SpanExporter):
    """OTLP-encode, decode and store: the daemon's ingest path minus the network.

    Called for each span as it ends (simulated time), it notes the arrival time
    and stores in bulk, so replays stay fast.
    """

    def __init__(self, store: SpanStore, clock: Callable[[], float], bulk: int = 5000) -> None:
        self.store, self.clock, self.bulk = store, clock, bulk
        self.limits = IngestLimits()
        self._pending: list[tuple[ReadableSpan, datetime]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        arrived = datetime.fromtimestamp(self.clock(), UTC)
        self._pending.extend((span, arrived) for span in spans)
        if len(self._pending) >= self.bulk:
            self.flush()
        return SpanExportResult.SUCCESS

    def flush(self) -> None:
        if not self._pending:
            return
        arrived = {format(s.context.span_id, "016x"): t for s, t in self._pending}
        body = encode_spans([s for s, _ in self._pending]).SerializeToString()
        self._pending.clear()
        rows = body_rows(body, "application/x-protobuf", None, self.limits,
                         datetime.now(UTC)).rows
        for row in rows:
            row.received_at = arrived[row.span_id]
        self.store.insert(rows)

    def shutdown(self) -> None:
        self.flush()


@dataclass
class Replay:
    start: datetime
    onset: datetime | None
    summary: dict[str, Any]


def replay(store: SpanStore, run_dir: Path, seconds: float, rate: float, seed: int,
           scenario: ScenarioName | None = None, at: float = 0.0,
           start: datetime | None = None, app_scores: bool = True) -> Replay:
    """`seconds` of demo traffic at `rate` traces/s, starting at `start` (simulated)."""
    t0 = (start or datetime.now(UTC) - timedelta(seconds=seconds)).timestamp()
    now = [t0]

    def wait(delay: float) -> bool:
        now[0] += delay
        return False

    opts = Options(rate=rate, duration=seconds, seed=seed, scenario=scenario, at=at,
                   progress_every=1e9, app_scores=app_scores)
    summary = run(opts, Sink(lambda: StoreExporter(store, lambda: now[0]), batch=False), run_dir,
                  lambda _: None, threading.Event(), clock=lambda: now[0], wait=wait)
    onset = datetime.fromtimestamp(t0 + at, UTC) if scenario else None
    return Replay(datetime.fromtimestamp(t0, UTC), onset, summary)


def first_detection(store: SpanStore, cfg: DetectConfig, since: datetime, until: datetime,
                    step_s: float | None = None, cache: BucketCache | None = None
                    ) -> list[tuple[datetime, Finding]]:
    """Run the detectors as the daemon would, every interval from `since` to `until`;
    the first finding of each (type, service), with the time it first fired. With a
    ``cache``, rounds reuse each other's buckets as the daemon's runner does."""
    seen: dict[tuple[str, str], tuple[datetime, Finding]] = {}
    t = since
    while t <= until:
        for f in detect(store, cfg, now=t, cache=cache):
            seen.setdefault((f.failure_type, f.service), (t, f))
        t += timedelta(seconds=step_s or cfg.interval_s)
    return sorted(seen.values(), key=lambda x: x[0])
