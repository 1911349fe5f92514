"""Where one ingest batch's time goes, on a store already holding millions of spans
(issue 9), and old/new store settings compared on the same traffic.

Every batch is an OTLP/protobuf body of ``--batch-size`` spans of ~3 KB
(``store_fill.Bodies``: random ids, start times now, a different message per span), taken
through the daemon's steps one by one, each timed: ``decode_body`` (protobuf), ``to_rows``
(row building), the JSON encoding of the four JSON columns (timed on a separate pass and
subtracted from the Arrow build, which includes it), the rest of the Arrow build, the
INSERT into the hot table, the commit (whose WAL shrinking tells that DuckDB checkpointed
inside it), and the seals the inserts trigger (amortised: their time counts in the
variant's spans/s). Same statements and transaction as ``SpanStore.insert``.

Each ``--variants`` entry opens its own copy of ``--db`` (so every variant starts at the
same size) with its own ``SpanStore`` settings; batches go to the variants in turn, the
order alternating, so the load from the machine's other work falls on all alike.

    PYTHONPATH=. nice -n 5 .venv/bin/python bench/ingest_profile.py \\
        --db /tmp/store-fill/spans.duckdb --work /tmp/ingest-prof --batches 150 \\
        --variants base,late-checkpoint

Writes bench/results/ingest-profile.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
from store_fill import PROTO, Bodies, rss_mib  # noqa: E402

from appliance.ingest.decode import decode_body  # noqa: E402
from appliance.ingest.limits import IngestLimits  # noqa: E402
from appliance.ingest.rows import SpanRow, body_rows, to_rows  # noqa: E402
from appliance.store import spans as spans_module  # noqa: E402
from appliance.store.partitions import HOT  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"
# Store settings per variant name (SpanStore keyword arguments).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"checkpoint_threshold": None},  # DuckDB's 16 MB: before issue 9's tuning
    "checkpoint-256MiB": {},  # today's default (spans.CHECKPOINT_THRESHOLD)
    "late-checkpoint": {"checkpoint_threshold": "1GiB"},  # none before the seal's
    # the code before issue 9's tuning as a whole: also the standard library's encoder
    "before": {"checkpoint_threshold": None, "json": "stdlib"},
    # today's settings, rows built by the Python walker (before the native one)
    "python-walker": {"walker": "python"},
}
_NOT_STORE_SETTINGS = ("json", "walker")
_ORJSON = spans_module._dumps
_STDLIB = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_seconds(rows: list[SpanRow]) -> float:
    """The JSON encoding ``spans._table`` does, timed alone (same encoder, same values)."""
    dumps = spans_module._dumps
    t0 = time.perf_counter()
    seen: set[int] = set()
    for r in rows:
        attrs, _ = spans_module._slim(r)
        dumps(attrs)
        if r.events:
            dumps(r.events)
        if r.links:
            dumps(r.links)
        if id(r.resource_attributes) not in seen:
            seen.add(id(r.resource_attributes))
            dumps(r.resource_attributes)
    return time.perf_counter() - t0


def one_batch(store: SpanStore, body: bytes, limits: IngestLimits, walker: str = "native"
              ) -> dict[str, float]:
    """The batch's phases in seconds; ``seal_s`` when this batch filled the hot table.
    The native walker (``rows.body_rows``, what the daemon runs) decodes as it builds the
    rows: its ``decode_s`` is 0 and ``rows_s`` holds both."""
    wal = store.path.with_name(store.path.name + ".wal")
    t0 = time.perf_counter()
    if walker == "python":
        request = decode_body(body, PROTO, None, limits)
        t1 = time.perf_counter()
        rows = to_rows(request, limits, datetime.now(UTC)).rows
    else:
        t1 = t0
        rows = body_rows(body, PROTO, None, limits, datetime.now(UTC)).rows
    t2 = time.perf_counter()
    json_s = _json_seconds(rows)
    t3 = time.perf_counter()
    table = spans_module._table(rows)
    t4 = time.perf_counter()
    with store.db.transaction() as con:
        con.register("_batch", table)
        con.execute(f"INSERT INTO {HOT} ({spans_module._NAMES}) "
                    f"SELECT {spans_module._NAMES} FROM _batch")
        con.unregister("_batch")
        wal_before = wal.stat().st_size if wal.exists() else 0
        t5 = time.perf_counter()
    t6 = time.perf_counter()  # the commit happens on leaving the block
    wal_after = wal.stat().st_size if wal.exists() else 0
    store._hot += len(rows)
    out = {"decode_s": t1 - t0, "rows_s": t2 - t1, "json_s": json_s,
           "arrow_s": max(0.0, (t4 - t3) - json_s), "insert_s": t5 - t4,
           "commit_s": t6 - t5, "checkpointed": float(wal_after < wal_before),
           "seal_s": 0.0}
    if store._hot >= store.seal_rows:
        t7 = time.perf_counter()
        store.seal()
        out["seal_s"] = time.perf_counter() - t7
    out["total_s"] = (t6 - t0) - json_s + out["seal_s"]
    return out


def json_encoders(body: bytes, limits: IngestLimits, reps: int = 15) -> dict[str, float]:
    """The JSON columns of one batch encoded by the standard library's encoder (before
    issue 9's tuning) and by ``spans._dumps`` (orjson), in turn; median ms each."""
    rows = to_rows(decode_body(body, PROTO, None, limits), limits, datetime.now(UTC)).rows
    values = [v for r in rows for v in (spans_module._slim(r)[0], r.events, r.links)]
    std = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    times: dict[str, list[float]] = {"stdlib": [], "orjson": []}
    for _ in range(reps):
        for name, encode in (("stdlib", std), ("orjson", spans_module._dumps)):
            t0 = time.perf_counter()
            for v in values:
                encode(v)
            times[name].append(time.perf_counter() - t0)
    return {f"{k}_ms": round(statistics.median(v) * 1000, 1) for k, v in times.items()}


def summary(phases: list[dict[str, float]], batch_size: int) -> dict[str, Any]:
    keys = [k for k in phases[0] if k != "checkpointed"]
    total = sum(p["total_s"] for p in phases)
    commits = [p["commit_s"] for p in phases]
    ck = [p["commit_s"] for p in phases if p["checkpointed"]]
    return {
        "batches": len(phases), "spans_per_s": round(len(phases) * batch_size / total),
        "median_ms": {k: round(statistics.median(p[k] for p in phases) * 1000, 1)
                      for k in keys},
        "mean_ms": {k: round(statistics.fmean(p[k] for p in phases) * 1000, 1) for k in keys},
        "share_of_time": {k: round(sum(p[k] for p in phases) / total, 3)
                          for k in keys if k != "total_s"},
        "commits_with_checkpoint": len(ck),
        "commit_ms_with_checkpoint_median": round(statistics.median(ck) * 1000, 1)
        if ck else None,
        "commit_ms_without_checkpoint_median": round(statistics.median(
            [c for c, p in zip(commits, phases, strict=True) if not p["checkpointed"]]
            or [0.0]) * 1000, 1),
        "seals": sum(p["seal_s"] > 0 for p in phases),
        "slowest_batch_ms": round(max(p["total_s"] for p in phases) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a filled store (copied)")
    parser.add_argument("--work", type=Path, required=True, help="where the copies go")
    parser.add_argument("--variants", default="base")
    parser.add_argument("--batches", type=int, default=150, help="per variant")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--seal-rows", type=int, default=250_000)
    parser.add_argument("--memory-limit", help="DuckDB memory_limit for every variant")
    parser.add_argument("--output", default="ingest-profile.json")
    args = parser.parse_args()
    names = args.variants.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    stores: dict[str, SpanStore] = {}
    for name in names:
        copy = args.work / f"{name}.duckdb"
        for f in (copy, copy.with_name(copy.name + ".wal")):
            f.unlink(missing_ok=True)
        shutil.copyfile(args.db, copy)
        settings = {k: v for k, v in VARIANTS[name].items() if k not in _NOT_STORE_SETTINGS}
        stores[name] = SpanStore(copy, seal_rows=args.seal_rows, **settings,
                                 memory_limit=args.memory_limit)
    start = {n: s.count() for n, s in stores.items()}
    print(f"stores hold {start}", flush=True)
    limits = IngestLimits(max_body_bytes=64 * 1024 * 1024)
    bodies = Bodies(args.batch_size, seed=11)
    phases: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    load: list[float] = []
    for i in range(args.batches):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            body, _ = bodies.next()
            # the JSON encoder is module-wide: set per batch (and for _json_seconds)
            spans_module._dumps = (_STDLIB if VARIANTS[name].get("json") == "stdlib"
                                   else _ORJSON)  # type: ignore[assignment]
            phases[name].append(one_batch(stores[name], body, limits,
                                          VARIANTS[name].get("walker", "native")))
        load.append(os.getloadavg()[0])
        if i % 25 == 24:
            print(i + 1, {n: summary(p, args.batch_size)["spans_per_s"]
                          for n, p in phases.items()}, flush=True)
    out: dict[str, Any] = {}
    for name, store in stores.items():
        assert store.count() == start[name] + args.batches * args.batch_size
        out[name] = {"settings": VARIANTS[name], "stored_spans_at_start": start[name],
                     **summary(phases[name], args.batch_size),
                     "db_bytes": store.db.file_bytes()}
        store.close()
    spans_module._dumps = _ORJSON  # type: ignore[assignment]
    base = out[names[0]]["spans_per_s"]
    encoders = json_encoders(bodies.next()[0], limits)
    result = {"benchmark": "one ingest batch's phases at millions of spans stored (issue 9)",
              "command": "PYTHONPATH=. nice -n 5 .venv/bin/python bench/ingest_profile.py "
                         + " ".join(sys.argv[1:]),
              "batch_size": args.batch_size, "seal_rows": args.seal_rows,
              "variants": out,
              "ratio_to_first": {n: round(v["spans_per_s"] / base, 2) for n, v in out.items()},
              "json_columns_of_one_batch": encoders,
              "load_avg_1m": {"median": round(statistics.median(load), 2),
                              "max": round(max(load), 2)},
              "memory_limit": args.memory_limit, "rss_mib_end": rss_mib(),
              "rss_mib_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "cpus": os.cpu_count(),
              "python": platform.python_version(), "duckdb": duckdb.__version__,
              "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratio_to_first"]), flush=True)


if __name__ == "__main__":
    main()
