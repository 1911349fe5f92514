"""The Tracehold daemon process and the composition root: it owns DuckDB, builds every
store once and hands them to the API app and the background work.

Started by the stack manager as ``python -m appliance.daemon --data-dir DIR``; it
resolves the settings the manager wrote for that folder, so its port and limits are
the stack's. Background work: the detector runner (findings become cases), the audit
head signer, retention, the span seal timer and the text indexer, each stopped with the
process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import uvicorn

from appliance.api.app import create_app
from appliance.cases.detected import case_opener
from appliance.detect.runner import DetectorRunner
from appliance.errors import TraceholdError
from appliance.evals.worker import EvalWorker
from appliance.ingest.limits import IngestLimits
from appliance.notify.service import Notifications
from appliance.rca.embed import Embedder
from appliance.records import Records, sign_heads_loop
from appliance.settings import Settings, resolve
from appliance.store.spans import SpanStore
from appliance.store.textindex import Indexer
from appliance.times import parse_time

log = logging.getLogger("tracehold.daemon")
RETENTION_EVERY_S = 3600
# The span store seals its hot table when it reaches SEAL_ROWS rows (on an insert); this
# timer seals what a quiet store holds, so no row stays hot (read-time dedup) for long.
SEAL_EVERY_S = 300
# The text indexer looks for newly sealed blocks this often once it has caught up.
TEXT_INDEX_EVERY_S = 30


def _retention_loop(store: SpanStore, days: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            removed = store.apply_retention(days)
            if removed:
                log.warning("retention: removed %d spans older than %d days", removed, days)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("retention pass failed")
        stop.wait(RETENTION_EVERY_S)


def _when_stopped(stop: threading.Event, then: Callable[[], object]) -> None:
    stop.wait()
    then()


def _seal_loop(store: SpanStore, stop: threading.Event) -> None:
    while not stop.wait(SEAL_EVERY_S / 5):
        try:
            store.seal_if_idle(SEAL_EVERY_S)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("span store seal failed")


def _text_index_loop(store: SpanStore, cpu_share: float, stop: threading.Event) -> None:
    """Block filters for what the seals added, within ``cpu_share`` of a core and only
    while ingest leaves the store mostly idle; looks again every TEXT_INDEX_EVERY_S when
    caught up or yielding."""
    indexer = Indexer(store.db, cpu_share, busy=lambda: store.busy_seconds)
    rest = 0.0
    while not stop.wait(rest):
        try:
            indexed, rest = indexer.step()
            if not indexed:
                rest = TEXT_INDEX_EVERY_S
        except Exception:  # keep the loop alive; the next round retries
            log.exception("text index build failed")
            rest = TEXT_INDEX_EVERY_S


def _open_case_windows(records: Records) -> list[tuple[str, datetime, datetime]]:
    """Each open case's service from its recent window before the onset until now: the
    built-in evaluators score every call there, not a sample."""
    lead = timedelta(seconds=records.settings.detect.recent_window_s)
    now = datetime.now(UTC)
    return [(c.service, parse_time(c.onset_at, "onset_at") - lead, now)
            for c in records.cases.list(status="open", limit=20)]


def _evals_loop(records: Records, stop: threading.Event) -> None:
    """The built-in evaluators until ``stop``; the embedder loads here (~0.6 s), not on
    the way to serving. It runs on the worker's own thread (threads=1), so the worker's
    CPU budget measures what it costs."""
    try:
        worker = EvalWorker(records.store, Embedder(threads=1), records.settings,
                            lambda: _open_case_windows(records))
    except TraceholdError as exc:  # e.g. the embedder's wheel is missing: scores stay off
        log.warning("built-in evaluators are off: %s", exc.message)
        return
    worker.start()
    stop.wait()
    worker.stop()


def _thread(name: str, target: Callable[..., object], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True, name=name).start()


def start_background(records: Records, stop: threading.Event) -> DetectorRunner | None:
    """The daemon's work beside the API; everything ends when ``stop`` is set."""
    s = records.settings
    _thread("audit-head-signer", sign_heads_loop, records, stop)
    _thread("retention", _retention_loop, records.store, s.span_retention_days, stop)
    _thread("span-seal", _seal_loop, records.store, stop)
    if s.text_index_cpu > 0:
        _thread("text-index", _text_index_loop, records.store, s.text_index_cpu, stop)
    if s.rca_enabled:  # RCA runs on its own thread, never on the API's or ingest's time
        records.rca.start()
        _thread("rca-stop", _when_stopped, stop, records.rca.stop)
    if s.evals_enabled:
        _thread("evaluators", _evals_loop, records, stop)
    if not s.detect.enabled:
        return None
    runner = DetectorRunner(records.store, s.detect,
                            case_opener(records.store, records.cases, s.detect))
    runner.start()

    def stop_runner() -> None:
        stop.wait()
        runner.stop()

    _thread("detector-stop", stop_runner)
    return runner


class Server(uvicorn.Server):
    """uvicorn's server, with its main loop ticking once a second instead of ten times.

    The tick refreshes the Date header (once a second either way) and looks for an exit;
    ten wake-ups a second were 0.2% of a core at rest (bench/idle_bench.py). A signal
    still stops it at once: ``handle_exit`` wakes the loop."""

    TICK_S = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def main_loop(self) -> None:
        woken = asyncio.Event()
        self._wake = (asyncio.get_running_loop(), woken)
        counter = 0  # on_tick refreshes the headers when counter % 10 == 0, as uvicorn's
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), self.TICK_S)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._wake is not None:
            loop, woken = self._wake
            loop.call_soon_threadsafe(woken.set)


def limits(s: Settings) -> IngestLimits:
    return IngestLimits(max_body_bytes=s.ingest_max_body_mib * 1024 * 1024,
                        max_attributes_per_span=s.ingest_max_attributes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tracehold-daemon")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    s = resolve(args.data_dir, running=True)
    store = SpanStore(s.span_db, memory_limit=s.span_store_memory_limit)
    records = Records.open(store, s)
    stop = threading.Event()
    start_background(records, stop)
    app = create_app(records, limits(s), s.ingest_native_walker)
    app.state.notify = Notifications.open(records)  # the outbox worker and tickets
    app.state.notify.start(stop)
    try:
        Server(uvicorn.Config(app, host="127.0.0.1",
                              port=s.ports.daemon, log_level="warning",
                              access_log=False)).run()
    finally:
        stop.set()
        store.close()


if __name__ == "__main__":
    main()
