"""Candidate span-store designs for issue 9, measured on the same rows (not wired into the
daemon: the decision is written down in docs/store-design.md).

Every design gets the same batches of 2,000 rows of ~3 KB spans from the real decode path
(``bench_store.random_batches``: random trace and span ids, start times moving on
``--seconds-per-batch`` per batch so the rows cover several hours), with at-least-once
duplicates injected: every ``--dup-every`` batches one recent batch (still hot) and one old
batch (already sealed, where a design seals) are sent again. Each design's ``spans`` (a
table or a view) must then count every span exactly once; the script checks it.

Designs:

* ``pk``: ``SpanStore`` as it was when measured (table with PRIMARY KEY (trace_id,
  span_id), ``INSERT OR IGNORE`` of one Arrow table per batch, a commit per batch). Since
  issue 9's store landed, ``SpanStore`` is the partitioned store itself (day tables, the
  message text stored once), so a rerun of ``pk`` measures that, and the other designs'
  rows come from its ``_table`` (message text already left out of the attributes).
* ``append``: the same table without the primary key, plain Arrow append; duplicates removed
  at read time over the whole table (``QUALIFY row_number() ... = 1`` in the ``spans`` view).
* ``hot_seal``: a hot table without a key takes the appends; when it holds ``--seal-rows``
  rows it is sealed in one transaction into immutable per-hour tables (by start hour),
  deduplicated inside the hot table and anti-joined against the keys already sealed for
  that hour; ``spans`` is a view: the sealed tables plus the hot rows deduplicated and not
  already sealed (a duplicate that arrives after its span was sealed never shows twice).
* ``hot_seal_slim``: ``hot_seal`` with the prompt/output text kept once (in the typed
  columns) instead of twice (typed columns and the attributes JSON).
* ``hot_seal_rowid``, ``hot_seal_slim_rowid``: the same, the seal and the view choosing one
  row per key by row id (grouping keys only) instead of ``QUALIFY`` over whole rows.

The designs are filled together, batch by batch in turn, so that load from other work on
a shared machine falls on all of them alike. Per design: insert rows/s per ``--every``
rows stored (end to end from SpanRow: Arrow build,
JSON encoding, the insert, commit, and seals when they happen), bytes per span on disk after
a checkpoint, and p50/p95 of trace search (``appliance.store.queries.search_traces``) and
trace view (``SpanStore.trace``'s SQL) at the end. Filling stops at ``--rows`` or after
``--budget-s`` seconds, whichever comes first.

    PYTHONPATH=. .venv/bin/python bench/store_designs.py [--designs pk,append,hot_seal]
        [--rows 2000000] [--budget-s 1800]

Writes bench/results/store-designs.json (merging designs measured by earlier runs).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_store import random_batches  # noqa: E402

from appliance.ingest.rows import SpanRow  # noqa: E402
from appliance.store import spans as spans_module  # noqa: E402
from appliance.store.database import rows as fetch_rows  # noqa: E402
from appliance.store.queries import TimeRange, TraceFilter, search_traces  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NAMES = spans_module._NAMES
COLUMN_DDL = ", ".join(f'"{name}" {sql}' for name, sql, _, _ in spans_module.COLUMNS)
TRACE_VIEW_SQL = f"SELECT {NAMES} FROM spans WHERE trace_id = ? ORDER BY start_time, span_id"
DEDUP = "QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY received_at) = 1"
SLIM_DROP = ("gen_ai.input.messages", "gen_ai.output.messages")


def slim_table(rows: Sequence[SpanRow]) -> pa.Table:
    """``spans._table`` with the message texts left out of the attributes JSON (they are
    in the typed input_messages/output_messages columns already)."""
    slim = [r if not any(k in r.attributes for k in SLIM_DROP) else _without(r) for r in rows]
    return spans_module._table(slim)


def _without(r: SpanRow) -> SpanRow:
    import dataclasses
    return dataclasses.replace(r, attributes={k: v for k, v in r.attributes.items()
                                              if k not in SLIM_DROP})


class Reader:
    """What the query modules need of a store: ``read(sql, params)``."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return fetch_rows(self.con, sql, params)


# --------------------------------------------------------------------------- designs

class Pk:
    """Today's store, unchanged."""

    def __init__(self, path: Path, args: argparse.Namespace) -> None:
        self.store = SpanStore(path)
        self.path = path
        self.reader: Any = self.store
        self.seals: list[float] = []

    def insert(self, rows: Sequence[SpanRow]) -> None:
        self.store.insert(rows)

    def checkpoint(self) -> None:
        self.store.db._writer().execute("CHECKPOINT")

    def close(self) -> None:
        self.store.close()


class Append:
    """One table, no key; read-time dedup over all of it."""

    table_fn = staticmethod(spans_module._table)

    def __init__(self, path: Path, args: argparse.Namespace) -> None:
        self.path = path
        self.con = duckdb.connect(str(path))
        self.con.execute(f"CREATE TABLE spans_raw ({COLUMN_DDL})")
        self.con.execute(f"CREATE VIEW spans AS SELECT * FROM spans_raw {DEDUP}")
        self.reader = Reader(self.con)
        self.seals: list[float] = []

    def _append(self, table: str, rows: Sequence[SpanRow]) -> None:
        batch = self.table_fn(rows)
        con = self.con
        con.begin()
        con.register("_batch", batch)
        con.execute(f"INSERT INTO {table} ({NAMES}) SELECT {NAMES} FROM _batch")
        con.unregister("_batch")
        con.commit()

    def insert(self, rows: Sequence[SpanRow]) -> None:
        self._append("spans_raw", rows)

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        self.con.close()


class HotSeal(Append):
    """Hot table (no key) + immutable per-start-hour tables, deduplicated at seal."""

    # the hot rows of one start hour, one per key, none already sealed in that hour
    seal_sql = ("INSERT INTO {name} SELECT {names} FROM spans_hot h "
                "WHERE date_trunc('hour', start_time) = ? AND NOT EXISTS (SELECT 1 FROM "
                "{name} s WHERE s.trace_id = h.trace_id AND s.span_id = h.span_id) "
                "{dedup} ORDER BY start_time")

    def __init__(self, path: Path, args: argparse.Namespace) -> None:
        self.path = path
        self.seal_rows = args.seal_rows
        self.con = duckdb.connect(str(path))
        self.con.execute(f"CREATE TABLE spans_hot ({COLUMN_DDL})")
        self.con.execute("CREATE TABLE span_partitions (hour TIMESTAMPTZ PRIMARY KEY, "
                         "name VARCHAR NOT NULL, rows BIGINT NOT NULL)")
        self.partitions: dict[datetime, str] = {}
        self.hot_rows = 0
        self.seals = []
        self._view()
        self.reader = Reader(self.con)

    def _view(self) -> None:
        sealed = " UNION ALL ".join(f"SELECT {NAMES} FROM {name}"
                                    for name in self.partitions.values())
        if not sealed:
            sealed = f"SELECT {NAMES} FROM spans_hot WHERE false"
        self.con.execute(f"CREATE OR REPLACE VIEW spans_sealed AS {sealed}")
        # hot rows: one per key, and none whose key is sealed already (a late duplicate)
        self.con.execute(f"CREATE OR REPLACE VIEW spans AS SELECT {NAMES} FROM spans_sealed "
                         f"UNION ALL {self.hot_sql}")

    # QUALIFY after the anti-join: windows over whole rows (slow when the hour is big)
    hot_sql = (f"SELECT {NAMES} FROM spans_hot h WHERE NOT EXISTS (SELECT 1 FROM spans_sealed "
               "s WHERE s.trace_id = h.trace_id AND s.span_id = h.span_id "
               f"AND s.start_time = h.start_time) {DEDUP}")

    def insert(self, rows: Sequence[SpanRow]) -> None:
        self._append("spans_hot", rows)
        self.hot_rows += len(rows)
        if self.hot_rows >= self.seal_rows:
            t0 = time.perf_counter()
            self.seal()
            self.seals.append(time.perf_counter() - t0)

    def seal(self) -> None:
        """Hot -> per-hour tables in one transaction: all or nothing (kill -9 safe)."""
        con = self.con
        hours = [r[0] for r in con.execute(
            "SELECT DISTINCT date_trunc('hour', start_time) FROM spans_hot").fetchall()]
        con.begin()
        created = False
        for hour in hours:
            name = self.partitions.get(hour)
            if name is None:
                name = f"spans_p{hour.astimezone(UTC):%Y%m%d%H}"
                con.execute(f"CREATE TABLE {name} ({COLUMN_DDL})")
                con.execute("INSERT INTO span_partitions VALUES (?, ?, 0)", [hour, name])
                self.partitions[hour] = name
                created = True
            con.execute(self.seal_sql.format(name=name, names=NAMES, dedup=DEDUP), [hour])
        con.execute("DELETE FROM spans_hot")
        con.commit()
        self.hot_rows = 0
        if created:
            self._view()


class HotSealSlim(HotSeal):
    table_fn = staticmethod(slim_table)


# The same rows chosen by row id: the dedup groups only the keys (and row ids) instead of
# windowing over whole 3 KB rows.
ROWID_SEAL = ("INSERT INTO {name} SELECT {names} FROM spans_hot WHERE rowid IN ("
              "SELECT arg_min(h.rowid, h.received_at) FROM spans_hot h "
              "WHERE date_trunc('hour', h.start_time) = ? AND NOT EXISTS (SELECT 1 FROM "
              "{name} s WHERE s.trace_id = h.trace_id AND s.span_id = h.span_id) "
              "GROUP BY h.trace_id, h.span_id) ORDER BY start_time")


# The hot rows to show chosen the same way: only keys, times and row ids are joined and
# grouped; whole rows are read once, for the row ids that remain.
ROWID_HOT = (f"SELECT {NAMES} FROM spans_hot WHERE rowid IN (SELECT arg_min(h.rowid, "
             "h.received_at) FROM spans_hot h WHERE NOT EXISTS (SELECT 1 FROM spans_sealed s "
             "WHERE s.trace_id = h.trace_id AND s.span_id = h.span_id "
             "AND s.start_time = h.start_time) GROUP BY h.trace_id, h.span_id)")


class HotSealRowid(HotSeal):
    seal_sql = ROWID_SEAL
    hot_sql = ROWID_HOT


class HotSealSlimRowid(HotSealSlim):
    seal_sql = ROWID_SEAL
    hot_sql = ROWID_HOT


DESIGNS: dict[str, type[Any]] = {"pk": Pk, "append": Append, "hot_seal": HotSeal,
                                 "hot_seal_slim": HotSealSlim, "hot_seal_rowid": HotSealRowid,
                                 "hot_seal_slim_rowid": HotSealSlimRowid}


# --------------------------------------------------------------------------- measuring

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def query_timings(reader: Any, end: datetime, trace_ids: list[tuple[str, int]], reps: int
                  ) -> dict[str, Any]:
    hour, day = timedelta(hours=1), timedelta(days=1)
    rng = random.Random(5)
    searches = {
        "1h, no filter": lambda: TraceFilter(TimeRange(end - hour, end)),
        "1h, service": lambda: TraceFilter(TimeRange(end - hour, end),
                                           service=f"svc-{rng.randrange(4)}"),
        "1h, text, rare (scans the hour)": lambda: TraceFilter(
            TimeRange(end - hour, end), text=f"ticket {rng.randrange(10**6)}"),
        "24h, status=error": lambda: TraceFilter(TimeRange(end - day, end), status="error"),
        "24h, min duration 850 ms": lambda: TraceFilter(TimeRange(end - day, end),
                                                        min_duration_ms=850),
    }
    out: dict[str, Any] = {"search": {}}
    every: list[float] = []
    for label, make in searches.items():
        search_traces(reader, make())  # warm
        ms = [timed(lambda m=make: search_traces(reader, m())) for _ in range(reps)]
        out["search"][label] = {"p50_ms": round(statistics.median(ms), 1),
                                "p95_ms": pct(ms, 0.95)}
        every += ms
    out["search_all"] = {"n": len(every), "p50_ms": round(statistics.median(every), 1),
                         "p95_ms": pct(every, 0.95)}
    sample = rng.sample(trace_ids, min(len(trace_ids), reps * 5))
    view = []
    for tid, spans in sample:
        t0 = time.perf_counter()
        got = reader.read(TRACE_VIEW_SQL, [tid])
        view.append((time.perf_counter() - t0) * 1000)
        assert len(got) == spans, (tid, len(got), spans)  # each span once
    out["trace_view"] = {"n": len(view), "p50_ms": round(statistics.median(view), 1),
                         "p95_ms": pct(view, 0.95)}
    return out


class Measured:
    """One design being filled: its timings per bucket of rows stored."""

    def __init__(self, name: str, path: Path, args: argparse.Namespace) -> None:
        self.name = name
        self.design = DESIGNS[name](path, args)
        self.spent = self.bucket_t = 0.0
        self.bucket_rows = 0
        self.buckets: list[dict[str, Any]] = []

    def insert(self, rows: Sequence[SpanRow]) -> None:
        t0 = time.perf_counter()
        self.design.insert(rows)
        took = time.perf_counter() - t0
        self.spent += took
        self.bucket_t += took

    def bucket(self, stored: int) -> None:
        self.buckets.append({"stored_rows": stored,
                             "rows_per_s": round(self.bucket_rows / self.bucket_t),
                             "db_bytes": _bytes(self.design.path),
                             "load_avg_1m": round(os.getloadavg()[0], 2)})
        print(self.name, json.dumps(self.buckets[-1]), flush=True)
        self.bucket_t, self.bucket_rows = 0.0, 0


def run(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Fill every design with the same batches, interleaved batch by batch, so load from
    other work on the machine falls on every design alike."""
    batches_n = args.rows // args.batch_size
    gen = random_batches(batches_n, args.batch_size, args.seconds_per_batch, seed=9)
    recent: collections.deque[list[SpanRow]] = collections.deque(maxlen=3)
    old: list[list[SpanRow]] = []
    trace_ids: list[tuple[str, int]] = []
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        designs = [Measured(n, Path(tmp) / f"{n}.duckdb", args) for n in names]
        stored = dups = 0
        t_wall = time.perf_counter()
        end = None
        for i, batch in enumerate(gen):
            resend = []
            if i % args.dup_every == args.dup_every - 1:  # at-least-once: resend two batches
                resend = [recent[0], old[len(old) // 2] if old else recent[-1]]
                dups += sum(len(b) for b in resend)
            for m in designs:
                m.insert(batch)
                for again in resend:
                    m.insert(again)
                m.bucket_rows += len(batch)
            stored += len(batch)
            recent.append(batch)
            if i % 25 == 0:
                old.append(batch)
            if i % 7 == 0:
                tid = batch[10 + i % 1000].trace_id
                trace_ids.append((tid, sum(r.trace_id == tid for r in batch)))
            end = batch[-1].start_time
            if stored % args.every < args.batch_size:
                for m in designs:
                    m.bucket(stored)
            if time.perf_counter() - t_wall > args.budget_s:
                print(f"time budget reached at {stored:,} rows", flush=True)
                break
        if designs[0].bucket_rows:
            for m in designs:
                m.bucket(stored)
        assert end is not None
        for m in designs:
            design = m.design
            count = int(design.reader.read("SELECT count(*) AS n FROM spans")[0]["n"])
            assert count == stored, (m.name, count, stored)  # every span once
            queries = query_timings(design.reader, end + timedelta(seconds=5), trace_ids,
                                    args.reps)
            t0 = time.perf_counter()
            design.checkpoint()
            checkpoint_s = time.perf_counter() - t0
            size = _bytes(design.path)
            design.close()
            first, last = m.buckets[0]["rows_per_s"], m.buckets[-1]["rows_per_s"]
            seals = design.seals
            results[m.name] = {
                "stored_rows": stored, "duplicate_rows_sent": dups, "count_exact": True,
                "insert_seconds": round(m.spent, 1),
                "rows_per_s": round((stored + dups) / m.spent),
                "curve": m.buckets, "last_over_first": round(last / first, 2),
                "bytes_per_span": round(size / stored),
                "final_checkpoint_s": round(checkpoint_s, 1),
                "seals": {"count": len(seals),
                          "median_s": round(statistics.median(seals), 2) if seals else None,
                          "max_s": round(max(seals), 2) if seals else None},
                "queries": queries,
            }
            print(m.name, json.dumps({k: v for k, v in results[m.name].items()
                                      if k != "curve"}), flush=True)
        print(f"wall {time.perf_counter() - t_wall:.0f} s", flush=True)
    return results


def view_overhead(partitions: int, args: argparse.Namespace) -> dict[str, Any]:
    """The cost of the ``spans`` view itself with many partitions (30 days of hours = 720):
    ``partitions`` sealed hours of one batch each (``args.batch_size`` rows), then trace
    view and search p50/p95 through the view."""
    batches = random_batches(partitions, args.batch_size, 3600.0, seed=4)
    trace_ids: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        design = HotSealRowid(Path(tmp) / "view.duckdb", args)
        end = None
        for i, batch in enumerate(batches):
            design.insert(batch)
            design.seal()
            tid = batch[10].trace_id
            trace_ids.append((tid, sum(r.trace_id == tid for r in batch)))
            end = batch[-1].start_time
            if i == partitions - 2:
                design.insert(batch)  # a late duplicate, hidden by the view until a seal
        assert end is not None
        count = int(design.reader.read("SELECT count(*) AS n FROM spans")[0]["n"])
        assert count == partitions * args.batch_size, count
        t0 = time.perf_counter()
        design._view()
        rebuild_ms = (time.perf_counter() - t0) * 1000
        queries = query_timings(design.reader, end + timedelta(seconds=5), trace_ids,
                                args.reps)
        design.close()
    return {"partitions": partitions, "rows_per_partition": args.batch_size,
            "view_rebuild_ms": round(rebuild_ms, 1), "queries": queries}


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal"))
               if p.exists())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", default="pk,append,hot_seal,hot_seal_slim")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250_000)
    parser.add_argument("--budget-s", type=float, default=1800,
                        help="stop filling after this many seconds (all designs together)")
    parser.add_argument("--seconds-per-batch", type=float, default=12.0)
    parser.add_argument("--seal-rows", type=int, default=250_000)
    parser.add_argument("--dup-every", type=int, default=50)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--tmp", default=None, help="folder for the databases")
    parser.add_argument("--output", default="store-designs.json", help="file in bench/results/")
    parser.add_argument("--view-test", type=int, default=0, metavar="PARTITIONS",
                        help="only time queries through a view over this many partitions")
    parser.add_argument("--label", default="", help="stored as design@label (another scenario)")
    args = parser.parse_args()
    out_file = RESULTS / args.output
    result: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        result = json.loads(out_file.read_text())
    result.setdefault("designs", {})
    if args.view_test:
        result["view_overhead"] = view_overhead(args.view_test, args)
        print(json.dumps(result["view_overhead"]), flush=True)
        out_file.write_text(json.dumps(result, indent=2) + "\n")
        return
    names = args.designs.split(",")
    measured_at = datetime.now(UTC).isoformat()
    for name, measured in run(names, args).items():
        measured["args"] = {k: v for k, v in vars(args).items()
                            if k not in ("designs", "tmp", "output", "label")}
        measured["measured_at"] = measured_at
        measured["filled_with"] = names
        result["designs"][name + (f"@{args.label}" if args.label else "")] = measured
    result.update({"benchmark": "span store designs (issue 9)",
                   "python": platform.python_version(), "duckdb": duckdb.__version__,
                   "pyarrow": pa.__version__, "cpus": os.cpu_count()})
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=2) + "\n")

if __name__ == "__main__":
    main()
