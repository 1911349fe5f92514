"""The span store's layout on disk: a hot table sealed into immutable time partitions,
read through one ``spans`` view (docs/store-design.md, ``hot_seal_slim_rowid``).

Why it looks like this:

* Inserts append to ``spans_hot``, which has no key: a per-row index on random ids, and
  checkpoints of one ever-growing table, made the insert rate fall as the store filled.
  The table that takes the writes stays small because a seal empties it.
* A seal moves the hot rows, one per (trace_id, span_id), into one table per UTC start
  day (``spans_pYYYYMMDD``), anti-joined against the keys already in that table (only
  its row groups of the same start times are read: zone maps), and empties the hot
  table: one transaction, so after a crash it happened entirely or not at all. Every
  copy of a span has the same start time, so a retried span can only ever land in the
  same partition, where the seal drops it.
* Day tables rather than hour tables (or hours merged into days later): every table in
  the view costs every query its planning and scan set-up, measured at ~3-5 ms a table
  on a loaded machine (24 hour tables: trace view 154 ms, the same rows in 3 tables:
  27 ms). Retention drops whole days.
* ``spans`` is a view: the sealed tables, plus the hot rows one per key (the first
  stored, as ``INSERT OR IGNORE`` kept) and not already sealed (``spans_recent``). Every
  query reads ``FROM spans`` and sees each span once.
* Each seal also writes one row per trace of the spans it moved into ``span_traces``
  (start, last start, end, error/ok counts, services, models), in the same transaction:
  trace search over sealed days reads ~5x fewer rows than there are spans and, for a
  trace with one such row (``multi`` false: nearly all), needs no GROUP BY, so it is a
  top-N (bench/results/query-speed.json: search 1.3-7.6x faster at 3.5M). The trace view
  reads the trace's start times there and then only the sealed row groups of that
  range (zone maps on start_time).

Every function here runs on the writer connection inside the caller's transaction, under
the database's write lock. Partitions are catalogued in ``span_partitions`` with the
hours they cover (``first_hour`` inclusive, ``end_hour`` exclusive, in hours since the
Unix epoch: independent of the session's time zone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

HOT = "spans_hot"
CATALOGUE = ("CREATE TABLE IF NOT EXISTS span_partitions (name VARCHAR PRIMARY KEY, "
             "first_hour BIGINT NOT NULL, end_hour BIGINT NOT NULL, rows BIGINT NOT NULL, "
             "sealed_at TIMESTAMPTZ NOT NULL)")
PARTITION_HOURS = 24
TRACES = "span_traces"
# A trace's summary per (seal, partition). ``tid``: the first 64 bits of the trace id as
# an integer (0 when it is not hex), so a lookup by trace id compares integers.
TRACES_DDL = (f"CREATE TABLE IF NOT EXISTS {TRACES} (part VARCHAR NOT NULL, "
              "tid UBIGINT NOT NULL, trace_id VARCHAR NOT NULL, first TIMESTAMPTZ, "
              "last TIMESTAMPTZ, end_max TIMESTAMPTZ, spans BIGINT NOT NULL, "
              "errors BIGINT NOT NULL, oks BIGINT NOT NULL, services VARCHAR[], "
              "models VARCHAR[], multi BOOLEAN NOT NULL)")
TID = "coalesce(TRY_CAST(('0x' || left({x}, 16)) AS UBIGINT), 0)"
# The summary columns of a set of spans, per trace (what search filters on; models: every
# request and response model, as the model filter matches either).
SUMMARY = ("trace_id, min(start_time) AS first, max(start_time) AS last, "
           "max(end_time) AS end_max, count(*) AS spans, "
           "count(*) FILTER (WHERE status_code = 'error') AS errors, "
           "count(*) FILTER (WHERE status_code = 'ok') AS oks, "
           "list_distinct(list(service_name)) AS services, "
           "list_distinct(flatten(list([request_model, response_model]))) AS models")
# A span's hour: its start time (ingest always sets one; a row without one, when it
# arrived, and such a row is never recognised as a retry).
HOUR = ("CAST(floor(epoch_us(coalesce({t}start_time, {t}received_at)) / 3600000000) "
        "AS BIGINT)")
# Its partition: the first hour of its UTC day.
PART = f"(({HOUR}) // {PARTITION_HOURS} * {PARTITION_HOURS})"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Tests set this to stop a child process inside a transaction just before it commits
# (kill -9 there must leave the store as it was or as it would be after the commit).
before_commit: Callable[[str], None] | None = None


def checkpoint(what: str) -> None:
    if before_commit is not None:
        before_commit(what)


@dataclass(frozen=True)
class Partition:
    name: str
    first_hour: int
    end_hour: int
    rows: int


@dataclass(frozen=True)
class Sealed:
    """What one seal did: rows moved, duplicates dropped, rows dropped as expired."""

    rows: int
    duplicates: int
    expired: int
    partitions_created: int


def hour_time(hour: int) -> datetime:
    return _EPOCH + timedelta(hours=hour)


def hour_of(t: datetime) -> int:
    return int((t - _EPOCH).total_seconds() // 3600)


def partitions(con: duckdb.DuckDBPyConnection) -> list[Partition]:
    return [Partition(*r) for r in con.execute(
        "SELECT name, first_hour, end_hour, rows FROM span_partitions "
        "ORDER BY first_hour").fetchall()]


def rebuild_view(con: duckdb.DuckDBPyConnection, names: str,
                 parts: Sequence[Partition] | None = None) -> None:
    """``spans_sealed`` (every partition) and ``spans`` (sealed + the hot rows to show)."""
    parts = partitions(con) if parts is None else parts
    sealed = " UNION ALL ".join(f"SELECT {names} FROM {p.name}" for p in parts)
    con.execute("CREATE OR REPLACE VIEW spans_sealed AS "
                + (sealed or f"SELECT {names} FROM {HOT} WHERE false"))
    con.execute(f"CREATE OR REPLACE VIEW spans_recent AS SELECT {names} FROM {HOT} "
                f"WHERE rowid IN ({hot_ids('')})")
    # Only keys, times and row ids are joined and grouped; whole hot rows are read once,
    # for the row ids chosen. min(rowid): the first copy stored wins. An explicit ANTI
    # JOIN, not NOT EXISTS: DuckDB builds it on the hot rows and pushes their key and
    # start-time ranges into the sealed scans (zone maps); NOT EXISTS decorrelates into
    # IS NOT DISTINCT FROM conditions that it does not push, and read every sealed key
    # on every query (3M spans, 30k hot: trace view p50 352 -> 63 ms, count 261 -> 40 ms).
    con.execute(f"CREATE OR REPLACE VIEW spans AS SELECT {names} FROM spans_sealed "
                f"UNION ALL SELECT {names} FROM spans_recent")


def hot_ids(where: str) -> str:
    """The row ids of the hot rows to show (``where``: a filter on them first)."""
    return (f"SELECT min(h.rowid) FROM (SELECT rowid, trace_id, span_id, start_time FROM "
            f"{HOT} {where}) h ANTI JOIN spans_sealed s ON s.trace_id = h.trace_id "
            "AND s.span_id = h.span_id AND s.start_time = h.start_time "
            "GROUP BY h.trace_id, h.span_id")


def copies_sql(names: str, where: str) -> str:
    """Every stored copy of the spans ``where`` keeps, as a subquery: the sealed rows and
    the hot rows, without the hot rows' dedup (a retried span can appear twice). For a
    reader that keys what it makes by (trace_id, span_id), so a repeat costs nothing: a
    query on ``spans`` anti-joins its hot rows against every sealed key, whatever its
    filter (~0.2 s of CPU at 110k hot rows and 2.7M sealed). ``where`` filters the
    table's columns with ``?`` placeholders, which appear twice: pass its values twice."""
    return (f"(SELECT {names} FROM spans_sealed WHERE {where} UNION ALL "
            f"SELECT {names} FROM {HOT} WHERE {where})")


# The start times the spans of some traces ($1: their ids) can have: from their summary
# rows and their hot rows (hidden copies included), NULL when they have none. A reader
# then reads ``spans_sealed`` between these constant bounds (zone maps skip the other row
# groups; a seal between the two reads moves hot rows to start times inside them).
TRACE_BOUNDS = (
    f"SELECT min(lo) AS lo, max(hi) AS hi FROM (SELECT min(first) AS lo, max(last) AS hi "
    f"FROM {TRACES} WHERE tid IN (SELECT {TID.format(x='x')} FROM unnest($1::VARCHAR[]) "
    "t(x)) AND trace_id IN (SELECT unnest($1::VARCHAR[])) UNION ALL "
    f"SELECT min(start_time), max(start_time) FROM {HOT} "
    "WHERE trace_id IN (SELECT unnest($1::VARCHAR[])))")


# Each trace's first span start over all its stored spans ($1: the traces' ids), from its
# summary rows and hot rows (hidden copies included): ``TRACE_BOUNDS`` per trace.
TRACE_FIRSTS = (
    f"SELECT trace_id, min(first) AS first FROM (SELECT trace_id, first FROM {TRACES} "
    f"WHERE tid IN (SELECT {TID.format(x='x')} FROM unnest($1::VARCHAR[]) t(x)) "
    "AND trace_id IN (SELECT unnest($1::VARCHAR[])) UNION ALL SELECT trace_id, "
    f"start_time FROM {HOT} WHERE trace_id IN (SELECT unnest($1::VARCHAR[]))) "
    "WHERE first IS NOT NULL GROUP BY trace_id")


def trace_sql(names: str) -> str:
    """One trace's spans ($1: its id; $2, $3: its ``TRACE_BOUNDS``), ordered: the sealed
    rows between the bounds (3.5M spans: 1 of 29 row groups read) and its hot rows (the
    anti-join built on them alone, not the whole hot table)."""
    return (f"SELECT {names} FROM (SELECT {names} FROM spans_sealed WHERE trace_id = $1 "
            f"AND start_time BETWEEN $2 AND $3 UNION ALL SELECT {names} FROM {HOT} "
            f"WHERE rowid IN ({hot_ids('WHERE trace_id = $1')})) "
            "ORDER BY start_time, span_id")


def summarise(con: duckdb.DuckDBPyConnection, part: str, rows_sql: str,
              params: Sequence[object] = ()) -> None:
    """Write ``span_traces`` rows of the spans ``rows_sql`` selects (all of partition
    ``part``), and mark ``multi`` every row of a trace that now has more than one."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _traces AS SELECT ? AS part, "
                f"{TID.format(x='trace_id')} AS tid, {SUMMARY} FROM ({rows_sql}) "
                "GROUP BY trace_id ORDER BY first", [part, *params])
    con.execute(f"CREATE OR REPLACE TEMP TABLE _multi AS SELECT n.tid, n.trace_id FROM "
                f"_traces n JOIN {TRACES} o ON o.tid = n.tid AND o.trace_id = n.trace_id "
                "GROUP BY ALL")
    con.execute(f"INSERT INTO {TRACES} SELECT part, tid, trace_id, first, last, end_max, "
                "spans, errors, oks, services, models, trace_id IN (SELECT trace_id FROM "
                "_multi) FROM _traces ORDER BY first")
    con.execute(f"UPDATE {TRACES} SET multi = true WHERE NOT multi AND tid IN (SELECT tid "
                "FROM _multi) AND trace_id IN (SELECT trace_id FROM _multi)")
    con.execute("DROP TABLE _traces")
    con.execute("DROP TABLE _multi")


def add_trace_summaries(con: duckdb.DuckDBPyConnection) -> None:
    """Migration 3 of the ``spans`` component: ``span_traces`` for every partition."""
    con.execute(TRACES_DDL)
    for p in partitions(con):
        summarise(con, p.name, f"SELECT * FROM {p.name}")


def _covering(parts: Sequence[Partition], hour: int) -> Partition | None:
    for p in parts:
        if p.first_hour <= hour < p.end_hour:
            return p
    return None


def _name(first_hour: int) -> str:
    return f"spans_p{hour_time(first_hour):%Y%m%d}"


def seal(con: duckdb.DuckDBPyConnection, names: str, ddl: str,
         expire_before_hour: int | None = None) -> Sealed:
    """Move every hot row into its partition (one per key, none already there), drop the
    hot rows whose partition ends by ``expire_before_hour`` (older than the retention),
    and empty the hot table. Call inside a transaction."""
    part_sql = PART.format(t="")
    hot = con.execute(f"SELECT count(*) FROM {HOT}").fetchone()
    total = int(hot[0]) if hot else 0
    if not total:
        return Sealed(0, 0, 0, 0)
    groups = con.execute(f"SELECT {PART.format(t='')} AS p, count(*), min(start_time), "
                         f"max(start_time) FROM {HOT} GROUP BY p ORDER BY p").fetchall()
    parts = partitions(con)
    moved = expired = created = 0
    for first, n, lo, hi in groups:
        first = int(first)
        if expire_before_hour is not None and first + PARTITION_HOURS <= expire_before_hour:
            expired += int(n)
            continue
        part = _covering(parts, first)
        if part is None:
            part = Partition(_name(first), first, first + PARTITION_HOURS, 0)
            con.execute(f"CREATE TABLE {part.name} ({ddl})")
            con.execute("INSERT INTO span_partitions VALUES (?, ?, ?, 0, now())",
                        [part.name, part.first_hour, part.end_hour])
            parts.append(part)
            created += 1
        # The anti-join reads only the partition's row groups whose start times overlap
        # the hot rows' (a retry has its span's start time): constant bounds, zone maps.
        # Each seal's rows are written in trace id order: a trace view then reads one row
        # group per seal (zone maps on trace_id; start-time order: p95 318 -> 32 ms over
        # 3M spans), and a time range still prunes by seal (a seal's rows are minutes).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _sealing AS SELECT min(h.rowid) AS id FROM "
            f"(SELECT rowid, * FROM {HOT} WHERE {part_sql} = ?) h "
            f"ANTI JOIN (SELECT trace_id, span_id, start_time FROM {part.name} "
            "WHERE start_time BETWEEN ? AND ?) s ON s.trace_id = h.trace_id "
            "AND s.span_id = h.span_id AND s.start_time = h.start_time "
            "GROUP BY h.trace_id, h.span_id", [first, lo, hi])
        chosen = f"SELECT * FROM {HOT} WHERE rowid IN (SELECT id FROM _sealing)"
        row = con.execute(f"INSERT INTO {part.name} ({names}) SELECT {names} FROM "
                          f"({chosen}) ORDER BY trace_id, start_time").fetchone()
        n_moved = int(row[0]) if row else 0
        summarise(con, part.name, chosen)
        con.execute("DROP TABLE _sealing")
        moved += n_moved
        con.execute("UPDATE span_partitions SET rows = rows + ?, sealed_at = now() "
                    "WHERE name = ?", [n_moved, part.name])
    con.execute(f"DELETE FROM {HOT}")
    if created:
        rebuild_view(con, names, parts)
    return Sealed(moved, total - moved - expired, expired, created)


def drop_expired(con: duckdb.DuckDBPyConnection, names: str, before_hour: int) -> int:
    """Drop every partition whose hours all end by ``before_hour``; returns its spans.
    Call inside a transaction."""
    gone = [p for p in partitions(con) if p.end_hour <= before_hour]
    for p in gone:
        con.execute(f"DROP TABLE {p.name}")
        con.execute("DELETE FROM span_partitions WHERE name = ?", [p.name])
        con.execute(f"DELETE FROM {TRACES} WHERE part = ?", [p.name])
    if gone:
        rebuild_view(con, names)
    return sum(p.rows for p in gone)
