"""What the appliance stores and where: span counts, ingest rate, disk per store,
retention settings. The folders are the ones the components are started with
(appliance/stack/components.py, render.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.settings import Settings
from appliance.store.spans import SpanStore


def folder_bytes(path: Path) -> int | None:
    """Bytes used by the files under a folder (None when it does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # a file removed while we walk (compaction, queue)
                continue
    return total


def disk_usage(s: Settings) -> dict[str, int | None]:
    wal = s.span_db.with_name(s.span_db.name + ".wal")
    db = [folder_bytes(p) for p in (s.span_db, wal)]
    return {
        "span_store": sum(b for b in db if b) if any(b is not None for b in db) else None,
        "prometheus": folder_bytes(s.data_dir / "prometheus"),
        "victoriametrics": folder_bytes(s.data_dir / "victoriametrics"),
        "collector_queue": folder_bytes(s.data_dir / "collector-queue"),
        "logs": folder_bytes(s.log_dir),
    }


def ingest_rates(store: SpanStore, now: datetime | None = None) -> dict[str, float]:
    """Spans stored per second over the last minute and the last five minutes."""
    now = now or datetime.now(UTC)
    row = store.read(
        "SELECT count(*) FILTER (WHERE received_at >= ?) AS m1, count(*) AS m5 "
        "FROM spans WHERE received_at >= ?",
        [now - timedelta(minutes=1), now - timedelta(minutes=5)])[0]
    return {"spans_per_s_1m": row["m1"] / 60, "spans_per_s_5m": row["m5"] / 300}


def storage_report(store: SpanStore, s: Settings) -> dict[str, Any]:
    stats = store.stats()
    return {
        "spans": stats["span_count"], "traces": stats["trace_count"],
        "bytes_per_span": stats["bytes_per_span"], "partitions": stats["partitions"],
        # sealed spans the text index does not cover yet (a text search scans them)
        "text_index_behind": stats["text_index_behind"],
        "oldest_start": stats["oldest_start"], "newest_start": stats["newest_start"],
        "last_ingest": store.last_ingest(),
        "ingest": ingest_rates(store),
        "disk_bytes": disk_usage(s),
        "retention": {
            "span_retention_days": s.span_retention_days,
            "prometheus_retention": s.prometheus_retention,
            "victoriametrics_retention_months": s.victoriametrics_retention_months,
            "queue_max_spans": s.queue_max_spans,
        },
    }
