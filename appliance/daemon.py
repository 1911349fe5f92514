"""The Tracehold daemon process and the composition root: it owns DuckDB, builds every
store once and hands them to the API app and the background work.

Started by the stack manager as ``python -m appliance.daemon --data-dir DIR``; it
resolves the settings the manager wrote for that folder, so its port and limits are
the stack's. Background work: the detector runner (findings become cases), the audit
head signer and retention, each stopped with the process.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn

from appliance.api.app import create_app
from appliance.cases.detected import case_opener
from appliance.detect.runner import DetectorRunner
from appliance.ingest.limits import IngestLimits
from appliance.records import Records, sign_heads_loop
from appliance.settings import Settings, resolve
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.daemon")
RETENTION_EVERY_S = 3600


def _retention_loop(store: SpanStore, days: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            removed = store.apply_retention(days)
            if removed:
                log.warning("retention: removed %d spans older than %d days", removed, days)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("retention pass failed")
        stop.wait(RETENTION_EVERY_S)


def _thread(name: str, target: Callable[..., object], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True, name=name).start()


def start_background(records: Records, stop: threading.Event) -> DetectorRunner | None:
    """The daemon's work beside the API; everything ends when ``stop`` is set."""
    s = records.settings
    _thread("audit-head-signer", sign_heads_loop, records, stop)
    _thread("retention", _retention_loop, records.store, s.span_retention_days, stop)
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


def limits(s: Settings) -> IngestLimits:
    return IngestLimits(max_body_bytes=s.ingest_max_body_mib * 1024 * 1024,
                        max_attributes_per_span=s.ingest_max_attributes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tracehold-daemon")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    s = resolve(args.data_dir, running=True)
    store = SpanStore(s.span_db)
    records = Records.open(store, s)
    stop = threading.Event()
    start_background(records, stop)
    try:
        uvicorn.run(create_app(records, limits(s)), host="127.0.0.1", port=s.ports.daemon,
                    log_level="warning", access_log=False)
    finally:
        stop.set()
        store.close()


if __name__ == "__main__":
    main()
