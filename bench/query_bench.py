"""Trace search and trace view on a filled span store, before and after the trace
summaries (issue 9): the previous forms and today's, alternated query by query in one
run so the load from other work on the machine falls on both alike; every pair must
give the same answer.

"Before" is the SQL as it was: search = one GROUP BY over every span in the range
(ILIKE for text), then the page's details over ``spans`` by trace id; trace view =
``SELECT ... FROM spans WHERE trace_id = ?``. "After" is ``queries.search_traces`` and
``SpanStore.trace``. The ranges end at the newest stored span (+1 s), so "1 h" is the
last hour of the fill whenever the bench runs.

    PYTHONPATH=. nice .venv/bin/python bench/query_bench.py --db /tmp/qs-store/spans.duckdb

Opening a store written before ``span_traces`` migrates it (the summary is built once,
timed). ``--seal-ab`` also times a seal of the hot rows with and without writing the
summaries, each rolled back (the store is left as it was). Writes
bench/results/query-speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402

from appliance.store import partitions, textindex  # noqa: E402
from appliance.store import spans as spans_module  # noqa: E402
from appliance.store.queries import (  # noqa: E402
    _STATUS_SQL,
    TimeRange,
    TraceFilter,
    search_traces,
)
from appliance.store.spans import SpanStore, _span  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def search_before(store: SpanStore, f: TraceFilter) -> list[dict[str, Any]]:
    """search_traces as it was (one GROUP BY over the range's spans, ILIKE), with the
    page's details as they were (every span of ``spans`` probed by trace id)."""
    having: list[str] = []
    params: list[Any] = [*f.range.params]
    if f.service:
        having.append("bool_or(service_name = ?)")
        params.append(f.service)
    if f.model:
        having.append("bool_or(request_model = ? OR response_model = ?)")
        params += [f.model, f.model]
    if f.text:
        pattern = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        having.append("bool_or(input_messages ILIKE ? ESCAPE '\\' "
                      "OR output_messages ILIKE ? ESCAPE '\\')")
        params += [pattern] * 2
    if f.status:
        having.append(_STATUS_SQL[f.status])
    if f.min_duration_ms is not None:
        having.append("date_diff('microsecond', min(start_time), max(end_time)) / 1000.0 >= ?")
        params.append(f.min_duration_ms)
    clause = f"HAVING {' AND '.join(having)}" if having else ""
    ids = store.read(
        "SELECT trace_id, min(start_time) AS first FROM spans "
        f"WHERE start_time >= ? AND start_time < ? GROUP BY trace_id {clause} "
        "ORDER BY first DESC, trace_id LIMIT ?", [*params, f.limit])
    if not ids:
        return []
    return details_before(store, [r["trace_id"] for r in ids])


def details_before(store: SpanStore, trace_ids: list[str]) -> list[dict[str, Any]]:
    """trace_summaries as it was: every span of ``spans`` probed by trace id."""
    rows = store.read(
        """
        SELECT trace_id,
          coalesce(arg_min(name, start_time) FILTER (WHERE parent_span_id IS NULL),
                   arg_min(name, start_time)) AS root_name,
          coalesce(arg_min(service_name, start_time) FILTER (WHERE parent_span_id IS NULL),
                   arg_min(service_name, start_time)) AS service,
          min(start_time) AS start_time,
          date_diff('microsecond', min(start_time), max(end_time)) / 1000.0 AS duration_ms,
          count(*) AS span_count,
          count(*) FILTER (WHERE status_code = 'error') AS error_count,
          count(*) FILTER (WHERE status_code = 'ok') AS ok_count,
          list(DISTINCT coalesce(response_model, request_model) ORDER BY
               coalesce(response_model, request_model))
            FILTER (WHERE coalesce(response_model, request_model) IS NOT NULL) AS models,
          list(DISTINCT service_name ORDER BY service_name) AS services,
          sum(input_tokens) AS input_tokens,
          sum(output_tokens) AS output_tokens
        FROM spans WHERE trace_id IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY trace_id ORDER BY start_time DESC, trace_id
        """, [trace_ids])
    for r in rows:
        r["start_time"] = r["start_time"].astimezone(UTC)
        r["error"] = r["error_count"] > 0
        ok = r.pop("ok_count") > 0
        r["status"] = "error" if r["error"] else ("ok" if ok else "unset")
        r["models"] = r["models"] or []
        r["input_tokens"] = int(r["input_tokens"] or 0)
        r["output_tokens"] = int(r["output_tokens"] or 0)
    return rows


def trace_before(store: SpanStore, trace_id: str) -> list[dict[str, Any]]:
    return [_span(r) for r in store.read(
        f"SELECT {spans_module._NAMES} FROM spans WHERE trace_id = ? "
        "ORDER BY start_time, span_id", [trace_id])]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"n": len(s), "p50_ms": round(statistics.median(s), 1),
            "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 1)}


def ab(before: Callable[[], Any], after: Callable[[], Any], reps: int,
       label: str) -> dict[str, Any]:
    """Alternate the two forms ``reps`` times each (after first on odd rounds); every
    pair must agree."""
    old: list[float] = []
    new: list[float] = []
    for i in range(reps):
        order = ((before, old), (after, new)) if i % 2 == 0 else ((after, new), (before, old))
        answers = []
        for fn, into in order:
            ms, out = timed(fn)
            into.append(ms)
            answers.append(out)
        assert answers[0] == answers[1], f"{label}: the two forms disagree"
    b, a = stats(old), stats(new)
    return {"before": b, "after": a, "p50_ratio": round(b["p50_ms"] / max(a["p50_ms"], 0.01), 1),
            "answers": len(answers[0])}


def block_bytes(store: SpanStore, table: str) -> int:
    row = store.read(f"SELECT count(DISTINCT block_id) AS n FROM pragma_storage_info('{table}') "
                     "WHERE persistent")
    return int(row[0]["n"]) * 262_144


class _RolledBack(Exception):
    pass


def seal_ab(store: SpanStore, rounds: int) -> dict[str, Any]:
    """A seal of the hot rows with and without the summaries, each rolled back."""
    real = partitions.summarise
    out: dict[str, list[float]] = {"with_summaries": [], "without": []}
    for i in range(rounds * 2):
        key = "with_summaries" if i % 2 == 0 else "without"
        if key == "without":
            partitions.summarise = lambda *a, **k: None  # type: ignore[assignment]
        t0 = time.perf_counter()
        try:
            with store.db.transaction() as con:
                done = partitions.seal(con, spans_module._NAMES, spans_module._DDL)
                out[key].append((time.perf_counter() - t0) * 1000)
                raise _RolledBack
        except _RolledBack:
            pass
        finally:
            partitions.summarise = real
    return {"hot_rows_sealed": done.rows,
            **{k: {"p50_ms": round(statistics.median(v), 1), "runs": [round(x) for x in v]}
               for k, v in out.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a filled store (a copy)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--text-reps", type=int, default=2, help="rare text: slow")
    parser.add_argument("--views", type=int, default=60, help="trace views per form")
    parser.add_argument("--seal-ab", type=int, default=0, help="rounds of the seal A/B")
    parser.add_argument("--output", default="query-speed.json", help="file in bench/results/")
    parser.add_argument("--index", action="store_true",
                        help="build the text index first (the daemon's Indexer, no CPU cap)")
    args = parser.parse_args()

    con = duckdb.connect(str(args.db), read_only=True)
    had_summaries = bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'span_traces'").fetchone()[0])
    con.close()
    load_start = os.getloadavg()
    t_open, store = timed(lambda: SpanStore(args.db))
    indexed = 0
    t_index = 0.0
    if args.index:
        indexer = textindex.Indexer(store.db, cpu_share=1.0)
        t0 = time.perf_counter()
        while n := indexer.step()[0]:
            indexed += n
        t_index = time.perf_counter() - t0
    st = store.stats()
    end = store.read("SELECT max(start_time) AS t FROM spans")[0]["t"] + timedelta(seconds=1)
    rng = random.Random(7)
    result: dict[str, Any] = {
        "benchmark": "trace search and trace view, before/after the trace summaries (issue 9)",
        "command": "PYTHONPATH=. nice .venv/bin/python bench/query_bench.py --db "
                   f"{args.db} --reps {args.reps} --text-reps {args.text_reps} "
                   f"--views {args.views} --seal-ab {args.seal_ab}"
                   + (" --index" if args.index else ""),
        "python": platform.python_version(), "duckdb": duckdb.__version__,
        "cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stored_spans": st["span_count"], "traces": st["trace_count"],
        "hot_rows": st["hot_rows"], "partitions": st["partitions"],
        "open_ms": round(t_open), "migrated_here": not had_summaries,
        "text_index": {"indexed_here": indexed, "index_s": round(t_index, 1),
                       "sealed_not_indexed": st["text_index_behind"]},
        "summary_rows": store.read("SELECT count(*) AS n FROM span_traces")[0]["n"],
        "summary_bytes": block_bytes(store, "span_traces"),
        "sealed_span_bytes": sum(block_bytes(store, p["name"]) for p in store.read(
            "SELECT name FROM span_partitions")),
        "search": {}, "note": "p50/p95 over the alternated runs; ratio = before/after p50",
    }
    print(json.dumps({k: v for k, v in result.items() if k != "search"}), flush=True)
    kinds: dict[str, Callable[[TimeRange], TraceFilter]] = {
        "no filter": lambda r: TraceFilter(r),
        "service": lambda r: TraceFilter(r, service=f"svc-{rng.randrange(4)}"),
        "model": lambda r: TraceFilter(r, model="gpt-4o"),
        "status=error": lambda r: TraceFilter(r, status="error"),
        "text (rare)": lambda r: TraceFilter(r, text=f"ticket {rng.randrange(10**8)}:"),
        "text (common)": lambda r: TraceFilter(r, text="Refund"),
        "min duration 800 ms": lambda r: TraceFilter(r, min_duration_ms=800),
    }
    for label, span in (("1h", timedelta(hours=1)), ("7d", timedelta(days=7))):
        window = TimeRange(end - span, end)
        for kind, make in kinds.items():
            f = make(window)
            reps = args.text_reps if kind == "text (rare)" else args.reps
            res = ab(lambda f=f: search_before(store, f), lambda f=f: search_traces(store, f),
                     reps, f"{label}, {kind}")
            result["search"][f"{label}, {kind}"] = res
            print(label, kind, json.dumps(res), flush=True)
    sealed = [r["trace_id"] for r in store.read(
        "SELECT trace_id FROM span_traces USING SAMPLE 200 ROWS")]
    hot = [r["trace_id"] for r in store.read(
        "SELECT DISTINCT trace_id FROM spans_hot USING SAMPLE 50 ROWS")]
    ids = rng.sample(sealed, min(len(sealed), args.views * 3 // 4)) + hot[:args.views // 4]
    rng.shuffle(ids)
    old: list[float] = []
    new: list[float] = []
    for i, tid in enumerate(ids):
        first, second = ((trace_before, old), (None, new)) if i % 2 else ((None, new),
                                                                           (trace_before, old))
        got = []
        for fn, into in (first, second):
            ms, out = timed(lambda fn=fn, tid=tid: fn(store, tid) if fn else store.trace(tid))
            into.append(ms)
            got.append(out)
        assert got[0] == got[1] and got[0], tid
    result["trace_view"] = {"before": stats(old), "after": stats(new),
                            "p50_ratio": round(statistics.median(old) / statistics.median(new),
                                               1), "hot_traces": len(hot[:args.views // 4])}
    print("trace view", json.dumps(result["trace_view"]), flush=True)
    if args.seal_ab:
        result["seal"] = seal_ab(store, args.seal_ab)
        print("seal", json.dumps(result["seal"]), flush=True)
    result["load_avg_1m"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    store.close()
    (RESULTS / args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
