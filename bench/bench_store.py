"""Benchmark SpanStore.insert throughput (batches of 2,000 rows of ~3 KB spans).

Rows come from the real decode path (``bench_decode.build_request`` -> ``to_rows``), given
fresh ids per batch, then are inserted into a new database in a temporary directory; only
``insert`` is timed (Arrow conversion, JSON encoding, the append to the hot table and the
seals it triggers; before issue 9's store: the insert with its primary key check). Also
times re-inserting one batch (all duplicates, the at-least-once retry case). Prints
rows/s and writes ``bench/results/store.json``.

``--profile`` instead splits the time of every batch into its phases as the store grows
(JSON encoding of the four JSON columns, the rest of the row -> Arrow build, the
append to the hot table (``INSERT OR IGNORE`` with its primary-key check before issue 9's
store), the commit; seals are not run), with random trace
and span ids as real traffic has, and reports them per ``--every`` rows stored; it also
runs cProfile over one batch at the start and at the end. Writes
``bench/results/store-profile.json`` (``store.json`` is left alone).

    PYTHONPATH=. python bench/bench_store.py [--batches 25] [--batch-size 2000]
    PYTHONPATH=. python bench/bench_store.py --profile --batches 1000 [--every 250000]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import duckdb  # noqa: E402
from bench_decode import build_request  # noqa: E402

from appliance.ingest.limits import IngestLimits  # noqa: E402
from appliance.ingest.rows import SpanRow, to_rows  # noqa: E402
from appliance.store import spans as spans_module  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def batches(count: int, size: int) -> list[list[SpanRow]]:
    limits = IngestLimits()
    template = to_rows(build_request(size), limits, datetime.now(UTC)).rows
    return [[dataclasses.replace(row, trace_id=f"{b:08x}{row.trace_id[8:]}",
                                 span_id=f"{b:08x}{row.span_id[8:]}") for row in template]
            for b in range(count)]


def random_batches(count: int, size: int, seconds_per_batch: float = 0.0, seed: int = 1
                   ) -> Iterator[list[SpanRow]]:
    """``count`` batches made lazily from one decoded template: random trace ids (the
    template's spans stay grouped 5 to a trace) and random span ids, as real ids are, and,
    with ``seconds_per_batch``, start/end/received times moved on by that much per batch
    (so the rows cover ``count * seconds_per_batch`` seconds of traffic)."""
    limits = IngestLimits()
    received = datetime.now(UTC)
    template = to_rows(build_request(size), limits, received).rows
    rng = random.Random(seed)
    for b in range(count):
        traces: dict[str, str] = {}
        shift = timedelta(seconds=b * seconds_per_batch)
        out = []
        for row in template:
            trace_id = traces.get(row.trace_id)
            if trace_id is None:
                trace_id = traces[row.trace_id] = f"{rng.getrandbits(128):032x}"
            out.append(dataclasses.replace(
                row, trace_id=trace_id, span_id=f"{rng.getrandbits(64):016x}",
                start_time=row.start_time + shift, end_time=row.end_time + shift,
                received_at=row.received_at + shift))
        yield out


def _json_seconds(rows: list[SpanRow]) -> float:
    """Time of the JSON encoding ``spans._table`` does for these rows (one pass, same
    encoder: attributes, events, links, and resource attributes once per resource)."""
    dumps = spans_module._dumps
    t0 = time.perf_counter()
    seen: set[int] = set()
    for r in rows:
        dumps(r.attributes)
        if r.events:
            dumps(r.events)
        if r.links:
            dumps(r.links)
        if id(r.resource_attributes) not in seen:
            seen.add(id(r.resource_attributes))
            dumps(r.resource_attributes)
    return time.perf_counter() - t0


def profiled_insert(store: SpanStore, rows: list[SpanRow]) -> dict[str, float]:
    """``SpanStore.insert``'s work split into timed phases (seconds). Same statements,
    same transaction; ``json_s`` is timed on a separate encoding pass (not counted in
    ``total_s``) and subtracted from the Arrow build, which includes it."""
    json_s = _json_seconds(rows)
    t0 = time.perf_counter()
    table = spans_module._table(rows)
    t1 = time.perf_counter()
    with store.db.transaction() as con:
        t2 = time.perf_counter()
        con.register("_batch", table)
        n = con.execute(f"INSERT INTO spans_hot ({spans_module._NAMES}) "
                        f"SELECT {spans_module._NAMES} FROM _batch").fetchone()
        con.unregister("_batch")
        t3 = time.perf_counter()
    t4 = time.perf_counter()  # the commit happens on leaving the block
    assert n is not None and n[0] == len(rows), n
    return {"json_s": json_s, "arrow_s": max(0.0, (t1 - t0) - json_s),
            "begin_s": t2 - t1, "insert_s": t3 - t2, "commit_s": t4 - t3,
            "total_s": t4 - t0}


def _cprofile(store: SpanStore, rows: list[SpanRow], top: int = 14) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    store.insert(rows)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return [line.rstrip() for line in out.getvalue().splitlines()
            if line.strip() and not line.startswith(("   Ordered", "         "))][:top + 3]


def profile(args: argparse.Namespace) -> None:
    every = args.every
    buckets: list[dict[str, object]] = []
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SpanStore(Path(tmp) / "spans.duckdb")
        gen = random_batches(args.batches + 2, args.batch_size, seed=3)
        first_profile = _cprofile(store, next(gen))
        stored = args.batch_size
        t_run = time.perf_counter()
        for i, batch in enumerate(gen):
            if i == args.batches:
                last_profile = _cprofile(store, batch)
                break
            for k, v in profiled_insert(store, batch).items():
                phases.setdefault(k, []).append(v)
            stored += len(batch)
            if stored % every < args.batch_size or i == args.batches - 1:
                n = len(phases["total_s"])
                med = {k: round(statistics.median(v) * 1000, 1) for k, v in phases.items()}
                buckets.append({
                    "stored_rows": stored, "batches": n,
                    "rows_per_s": round(n * args.batch_size / sum(phases["total_s"])),
                    "median_ms": med,
                    "mean_ms": {k: round(statistics.fmean(v) * 1000, 1)
                                for k, v in phases.items()},
                    "batches_over_1s": sum(t > 1 for t in phases["total_s"]),
                    "share_of_time": {k: round(sum(v) / sum(phases["total_s"]), 3)
                                      for k, v in phases.items() if k != "total_s"},
                    "slowest_batch_ms": round(max(phases["total_s"]) * 1000, 1),
                    "db_bytes": store.db.file_bytes()})
                print(json.dumps(buckets[-1]), flush=True)
                phases = {}
            if time.perf_counter() - t_run > args.budget_s:
                print(f"time budget of {args.budget_s} s reached", flush=True)
                last_profile = _cprofile(store, next(gen))
                break
        store.close()
    result = {"benchmark": "SpanStore.insert phases as the store grows",
              "batch_size": args.batch_size, "ids": "random", "buckets": buckets,
              "cprofile_first_batch": first_profile, "cprofile_last_batch": last_profile,
              "python": platform.python_version(), "duckdb": duckdb.__version__,
              "measured_at": datetime.now(UTC).isoformat()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "store-profile.json").write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--profile", action="store_true",
                        help="time each phase of an insert as the store grows")
    parser.add_argument("--every", type=int, default=250_000,
                        help="with --profile: report the phases per this many rows stored")
    parser.add_argument("--budget-s", type=float, default=900,
                        help="with --profile: stop after this many seconds")
    args = parser.parse_args()
    if args.profile:
        profile(args)
        return

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
        assert store.insert(work[0]) == len(work[0])  # a retry: written, shown once
        duplicate_s = time.perf_counter() - t0
        stats = store.stats()
        assert stats["span_count"] == args.batches * args.batch_size
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
