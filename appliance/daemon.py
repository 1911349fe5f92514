"""The Tracehold daemon process: owns DuckDB, serves the API on loopback.

Started by the stack manager as ``python -m appliance.daemon --data-dir DIR``;
it reads the resolved settings the manager wrote, so its port and limits are
the stack's.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

import uvicorn

from appliance.api.app import create_app
from appliance.casework import services as casework
from appliance.detect import service as detect_service
from appliance.ingest.limits import IngestLimits
from appliance.settings import Settings, load
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.daemon")
RETENTION_EVERY_S = 3600


def settings_for(data_dir: Path) -> Settings:
    if (data_dir / "run" / "effective-settings.json").exists():
        return Settings.load_effective(data_dir)
    return load(data_dir=data_dir)


def _retention_loop(store: SpanStore, days: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            removed = store.apply_retention(days)
            if removed:
                log.warning("retention: removed %d spans older than %d days", removed, days)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("retention pass failed")
        stop.wait(RETENTION_EVERY_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tracehold-daemon")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    s = settings_for(args.data_dir)
    store = SpanStore(s.span_db)
    limits = IngestLimits(max_body_bytes=s.ingest_max_body_mib * 1024 * 1024,
                          max_attributes_per_span=s.ingest_max_attributes)
    stop = threading.Event()
    casework.start(store, s, stop)  # record stores, change inference, audit head signer
    detect_service.start(store, s, stop)  # detectors -> cases
    threading.Thread(target=_retention_loop, args=(store, s.span_retention_days, stop),
                     daemon=True, name="retention").start()
    try:
        uvicorn.run(create_app(store, limits), host="127.0.0.1", port=s.ports.daemon,
                    log_level="warning", access_log=False)
    finally:
        stop.set()
        store.close()


if __name__ == "__main__":
    main()
