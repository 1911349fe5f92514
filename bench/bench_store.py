"""Benchmark SpanStore.insert throughput (batches of 2,000 rows of ~3 KB spans).

Rows come from the real decode path (``bench_decode.build_request`` -> ``to_rows``), given
fresh ids per batch, then are inserted into a new database in a temporary directory; only
``insert`` is timed (Arrow conversion, JSON encoding and the DuckDB insert with its primary
key check). Also times re-inserting one batch (all duplicates, the at-least-once retry
case). Prints rows/s and writes ``bench/results/store.json``.

    PYTHONPATH=. python bench/bench_store.py [--batches 25] [--batch-size 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_decode import build_request  # noqa: E402

from appliance.ingest.limits import IngestLimits  # noqa: E402
from appliance.ingest.rows import SpanRow, to_rows  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def batches(count: int, size: int) -> list[list[SpanRow]]:
    limits = IngestLimits()
    template = to_rows(build_request(size), limits, datetime.now(UTC)).rows
    return [[dataclasses.replace(row, trace_id=f"{b:08x}{row.trace_id[8:]}",
                                 span_id=f"{b:08x}{row.span_id[8:]}") for row in template]
            for b in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()

    work = batches(args.batches, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        store = SpanStore(Path(tmp) / "spans.duckdb")
        timings = []
        for batch in work:
            t0 = time.perf_counter()
            inserted = store.insert(batch)
            timings.append(time.perf_counter() - t0)
            assert inserted == len(batch), inserted
        t0 = time.perf_counter()
        assert store.insert(work[0]) == 0
        duplicate_s = time.perf_counter() - t0
        stats = store.stats()
        store.close()
    total = sum(timings)
    rows = args.batches * args.batch_size
    result = {
        "benchmark": "SpanStore.insert", "batches": args.batches,
        "batch_size": args.batch_size, "rows": rows,
        "rows_per_s": round(rows / total),
        "rows_per_s_first_half": round(rows / 2 / sum(timings[: len(timings) // 2])),
        "rows_per_s_second_half": round(rows / 2 / sum(timings[len(timings) // 2:])),
        "slowest_batch_ms": round(max(timings) * 1000, 1),
        "duplicate_batch_rows_per_s": round(args.batch_size / duplicate_s),
        "db_bytes": stats["db_bytes"], "db_bytes_per_row": round(stats["db_bytes"] / rows),
        "python": platform.python_version(), "machine": platform.machine(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['rows_per_s']:,} rows/s ({rows:,} rows in batches of {args.batch_size}); "
          f"duplicate batch {result['duplicate_batch_rows_per_s']:,} rows/s; "
          f"{result['db_bytes_per_row']} B/row on disk")


if __name__ == "__main__":
    main()
