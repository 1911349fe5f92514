"""Fill a span store through the daemon's ingest path and write the curve (issue 9).

Every batch is an OTLP/protobuf request body of ``--batch-size`` spans of ~3 KB
(``bench_decode.build_request``, with random trace and span ids, start times at the
wall clock, and an input message that differs from span to span), handed to the
daemon's own ingest function (``appliance.api.ingest._ingest``: the real decoder, the
row builder and ``SpanStore.insert`` with its seals), one request after the other as
the daemon's threads would. Building the body is not timed; everything the daemon
does for it is. Every ``--dup-every`` batches one recent body is delivered again (the
collector's at-least-once retry); the final count must still be exact.

Per ``--every`` spans stored: stored spans/s over that stretch, the process RSS, bytes
per span on disk, seals and their durations. At the end (or with ``--queries-only``):
trace search p50/p95 over every filter kind on 1 h and 7 d ranges, and trace view p95.

Resumable: the store is the file ``--db`` (kept); a run continues from the spans it
holds and appends to the curve in the result file, so 10 million can be reached in
several runs::

    PYTHONPATH=. nice .venv/bin/python bench/store_fill.py --db /tmp/fill/spans.duckdb \\
        --rows 3000000 [--budget-s 3000]
    PYTHONPATH=. nice .venv/bin/python bench/store_fill.py --db /tmp/fill/spans.duckdb \\
        --rows 10000000        # later: continues to 10M

Writes bench/results/store-fill.json after every bucket.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
from bench_decode import build_request  # noqa: E402

from appliance.api.ingest import _ingest  # noqa: E402
from appliance.ingest.limits import IngestLimits  # noqa: E402
from appliance.store.queries import TimeRange, TraceFilter, search_traces  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PROTO = "application/x-protobuf"
WORDS = ["incident", "report", "deploy", "rollback", "latency", "cache", "region", "customer",
         "invoice", "refund", "ticket", "escalation", "outage", "database", "replica",
         "timeout", "retry", "quota", "token", "model", "prompt", "answer", "policy", "leave",
         "carry", "over", "expire", "march", "section", "employee", "manager", "approval",
         "budget", "vendor", "contract", "renewal", "shipment", "warehouse", "order"]


class Bodies:
    """OTLP request bodies from one template: fresh random ids, start times now, and a
    varied input message per span (so the text is not one repeated string)."""

    def __init__(self, size: int, seed: int) -> None:
        self.request = build_request(size)
        self.template = self.request.SerializeToString()
        self.rng = random.Random(seed)
        self.spans = [span for rs in self.request.resource_spans
                      for ss in rs.scope_spans for span in ss.spans]
        first = self.spans[0]
        self.message_at = next(i for i, kv in enumerate(first.attributes)
                               if kv.key == "gen_ai.input.messages")
        self.offsets = [s.start_time_unix_nano - first.start_time_unix_nano
                        for s in self.spans]
        self.durations = [s.end_time_unix_nano - s.start_time_unix_nano for s in self.spans]

    def next(self) -> tuple[bytes, list[str]]:
        """A body and its trace ids (each trace: five spans, parent first)."""
        rng = self.rng
        now = time.time_ns() - 2 * 10**9
        # A fresh message each time: protobuf (upb) keeps every value ever set on a message
        # until the message goes, so reusing one grew the process ~0.8 KB per span (the
        # RSS growth the fill curve showed until this was found).
        self.request = type(self.request).FromString(self.template)
        self.spans = [span for rs in self.request.resource_spans
                      for ss in rs.scope_spans for span in ss.spans]
        trace_ids: list[str] = []
        trace = parent = b""
        for i, span in enumerate(self.spans):
            if i % 5 == 0:
                trace = rng.getrandbits(128).to_bytes(16, "big")
                trace_ids.append(trace.hex())
            span_id = rng.getrandbits(64).to_bytes(8, "big")
            if i % 5 == 0:
                parent = span_id
            span.trace_id, span.span_id = trace, span_id
            span.parent_span_id = b"" if i % 5 == 0 else parent
            span.start_time_unix_nano = now + self.offsets[i]
            span.end_time_unix_nano = span.start_time_unix_nano + self.durations[i]
            text = (f"ticket {rng.randrange(10**8)}: "
                    + " ".join(rng.choices(WORDS, k=rng.randrange(60, 140))))
            span.attributes[self.message_at].value.string_value = json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": text}]}])
        return self.request.SerializeToString(), trace_ids


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def timed_ms(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def query_timings(store: SpanStore, trace_ids: list[str], reps: int) -> dict[str, Any]:
    """Trace search p50/p95 per filter kind on 1 h and 7 d ranges; trace view p50/p95."""
    end = datetime.now(UTC)
    rng = random.Random(7)
    kinds: dict[str, Any] = {
        "no filter": lambda r: TraceFilter(r),
        "service": lambda r: TraceFilter(r, service=f"svc-{rng.randrange(4)}"),
        "model": lambda r: TraceFilter(r, model="gpt-4o"),
        "status=error": lambda r: TraceFilter(r, status="error"),
        "text (rare)": lambda r: TraceFilter(r, text=f"ticket {rng.randrange(10**8)}:"),
        "min duration 800 ms": lambda r: TraceFilter(r, min_duration_ms=800),
    }
    out: dict[str, Any] = {"search": {}}
    every: list[float] = []
    for label, span in (("1h", timedelta(hours=1)), ("7d", timedelta(days=7))):
        rng_ = TimeRange(end - span, end)
        for kind, make in kinds.items():
            search_traces(store, make(rng_))  # warm
            ms = [timed_ms(lambda m=make, r=rng_: search_traces(store, m(r)))
                  for _ in range(reps)]
            out["search"][f"{label}, {kind}"] = {"p50_ms": round(statistics.median(ms), 1),
                                                 "p95_ms": pct(ms, 0.95)}
            every += ms
    out["search_all"] = {"n": len(every), "p50_ms": round(statistics.median(every), 1),
                         "p95_ms": pct(every, 0.95)}
    view: list[float] = []
    for tid in rng.sample(trace_ids, min(len(trace_ids), reps * 8)):
        t0 = time.perf_counter()
        spans = store.trace(tid)
        view.append((time.perf_counter() - t0) * 1000)
        assert len(spans) == 5, (tid, len(spans))  # each span once
    out["trace_view"] = {"n": len(view), "p50_ms": round(statistics.median(view), 1),
                         "p95_ms": pct(view, 0.95)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the store file (kept)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="fill up to this")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250_000)
    parser.add_argument("--budget-s", type=float, default=0, help="stop filling after")
    parser.add_argument("--dup-every", type=int, default=100)
    parser.add_argument("--seal-rows", type=int, default=250_000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--queries-only", action="store_true")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit (the daemon's setting)")
    parser.add_argument("--code", help="the code version to note in each point "
                                       "(default: this checkout's commit)")
    parser.add_argument("--output", default="store-fill.json", help="file in bench/results/")
    args = parser.parse_args()
    out_file = RESULTS / args.output
    result: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        result = json.loads(out_file.read_text())
    result.setdefault("curve", [])
    result.update({"benchmark": "span store fill through the daemon's ingest path (issue 9)",
                   "python": platform.python_version(), "duckdb": duckdb.__version__,
                   "cpus": os.cpu_count(), "batch_size": args.batch_size,
                   "seal_rows": args.seal_rows})

    def save() -> None:
        out_file.write_text(json.dumps(result, indent=2) + "\n")

    store = SpanStore(args.db, seal_rows=args.seal_rows, memory_limit=args.memory_limit)
    code = args.code or subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True,
                                       cwd=Path(__file__).parent).stdout.strip()
    stored = store.count()
    print(f"store holds {stored:,} spans", flush=True)
    limits = IngestLimits(max_body_bytes=64 * 1024 * 1024)
    bodies = Bodies(args.batch_size, seed=stored + 1)
    trace_ids: list[str] = [r["trace_id"] for r in store.read(
        "SELECT trace_id FROM (SELECT trace_id FROM spans) USING SAMPLE 200 ROWS")]
    recent: list[bytes] = []
    t_run = time.perf_counter()
    spent = dups = 0.0
    bucket_t, bucket_rows, seals_before = 0.0, 0, 0
    seal_log: list[float] = []
    real_seal = store.seal

    def seal_timed() -> Any:
        t0 = time.perf_counter()
        done = real_seal()
        seal_log.append(time.perf_counter() - t0)
        return done

    store.seal = seal_timed  # type: ignore[method-assign]
    i = 0
    while not args.queries_only and stored < args.rows:
        body, tids = bodies.next()
        if i % 50 == 0:
            trace_ids.append(tids[len(tids) // 2])
        t0 = time.perf_counter()
        received, written, _ = _ingest(store, body, PROTO, None, limits)
        if args.dup_every and i % args.dup_every == args.dup_every - 1 and recent:
            _ingest(store, recent[0], PROTO, None, limits)  # a retry: same spans again
            dups += args.batch_size
        took = time.perf_counter() - t0
        assert received == written == args.batch_size
        recent = [*recent[-2:], body]
        spent += took
        bucket_t += took
        bucket_rows += received
        stored += received
        i += 1
        if stored % args.every < args.batch_size:
            seals = seal_log[seals_before:]
            stats = store.stats()
            point = {"stored_spans": stored, "spans_per_s": round(bucket_rows / bucket_t),
                     "rss_mib": rss_mib(), "bytes_per_span": stats["bytes_per_span"],
                     "db_bytes": stats["db_bytes"], "partitions": stats["partitions"],
                     "seals": len(seals),
                     "seal_s_max": round(max(seals), 2) if seals else None,
                     # where a slowdown is: the seals (checkpoint included) or the rest
                     "seal_s_sum": round(sum(seals), 2),
                     "spans_per_s_without_seals": round(bucket_rows / (bucket_t - sum(seals))),
                     "load_avg_1m": round(os.getloadavg()[0], 2),
                     "at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "code": code, "memory_limit": args.memory_limit}
            assert stats["span_count"] == stored, (stats["span_count"], stored)
            result["curve"].append(point)
            print(json.dumps(point), flush=True)
            save()
            bucket_t, bucket_rows, seals_before = 0.0, 0, len(seal_log)
        if args.budget_s and time.perf_counter() - t_run > args.budget_s:
            print(f"time budget reached at {stored:,} spans", flush=True)
            break
    count = store.count()
    assert count == stored, (count, stored)  # every span once, retries included
    runs = result.setdefault("runs", [])
    if not args.queries_only:
        runs.append({"ended_at": datetime.now(UTC).isoformat(timespec="seconds"), "code": code,
                     "stored_spans": stored, "ingest_seconds": round(spent, 1),
                     "spans_per_s": round((stored - (runs[-1]["stored_spans"] if runs else 0))
                                          / spent) if spent else None,
                     "retried_spans_sent": int(dups), "count_exact": True,
                     "seals": len(seal_log),
                     "seal_s_median": round(statistics.median(seal_log), 2)
                     if seal_log else None})
    result["queries"] = {"stored_spans": stored, "hot_rows": store.stats()["hot_rows"],
                         **query_timings(store, trace_ids, args.reps)}
    print(json.dumps(result["queries"]["search_all"]), json.dumps(
        result["queries"]["trace_view"]), flush=True)
    save()
    store.close()


if __name__ == "__main__":
    main()
