"""The span store: spans in the daemon's DuckDB file (``Database``), read as ``spans``.

Why it looks like this:

* The layout is ``appliance.store.partitions``: inserts append to a hot table without a
  key, seals move its rows into per-day tables, and ``spans``
  is a view that shows every span once. The insert rate holds as the store fills
  (docs/store-design.md).
* Delivery from the collector's persistent queue is at-least-once: a retried batch is
  appended again, hidden by the view and dropped by the seal, so a query or a count never
  sees a span twice. ``insert`` therefore returns the spans written, not the new ones.
* A batch becomes one pyarrow Table appended by one statement in one transaction that
  commits before ``insert`` returns (the daemon answers 200 after it): nothing is
  half-written when it fails. (Group commit, concurrent batches in one transaction, was
  built and measured: no gain, bench/results/group-commit.json.)
* DuckDB checkpoints after each seal and about twice between seals, not every few
  batches (``CHECKPOINT_THRESHOLD``).
* The message text is stored once: ``gen_ai.input.messages`` / ``gen_ai.output.messages``
  are kept in their typed columns and left out of the attributes JSON
  (``messages_moved``); reads put them back, so a span reads as it was sent.
* Connections, locking, error mapping (``StoreUnavailable`` -> 503 + Retry-After) and
  schema versions are the ``Database``'s (``appliance.store.database``); the tables are
  the ``spans`` component there.
* The typed GenAI columns come from ``conventions.FIELDS``; a field added there is added
  to every span table as a new column when the store opens.

Columns: trace_id, span_id, parent_span_id, name, kind, service_name, scope_name VARCHAR;
start_time, end_time, received_at TIMESTAMPTZ; duration_ms DOUBLE; status_code,
status_message VARCHAR; one column per ``conventions.FIELDS`` entry (str VARCHAR, int BIGINT,
float DOUBLE, str_list VARCHAR[], float_list DOUBLE[]); eval_scores MAP(VARCHAR, DOUBLE)
(queryable as ``eval_scores['relevance']``); attributes, resource_attributes, events,
links JSON; dropped_attributes_count, dropped_events_count BIGINT; messages_moved BOOLEAN.

Reads return one dict per span with those keys (but messages_moved): JSON columns parsed,
eval_scores a dict, times UTC-aware datetimes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from appliance.errors import StoreError
from appliance.ingest import conventions
from appliance.ingest.rows import SpanRow
from appliance.store import partitions, textindex
from appliance.store.database import Database, Step, migrate
from appliance.store.partitions import HOT, Sealed

log = logging.getLogger("tracehold.store")
# When the appliance knew of a span: it had ended and arrived, whichever is later. The
# detectors cut their windows on it and keep their aggregates by it; the evaluators tell
# them the seen times of the spans they score. One definition for both.
SEEN = "greatest(end_time, received_at)"
_TS = pa.timestamp("us", tz="UTC")
_GENAI_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "str": ("VARCHAR", pa.string()), "int": ("BIGINT", pa.int64()),
    "float": ("DOUBLE", pa.float64()), "str_list": ("VARCHAR[]", pa.list_(pa.string())),
    "float_list": ("DOUBLE[]", pa.list_(pa.float64()))}
_JSON_COLUMNS = ("attributes", "resource_attributes", "events", "links")
_std_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value: Any) -> str:
    """Compact JSON, as the standard encoder writes it for ingest's values, ~11x faster
    (one batch's JSON columns: 34 -> 3 ms, bench/results/ingest-profile-json.json). The
    standard encoder takes what orjson refuses (an int beyond 64 bits, a non-str key)
    rather than failing the batch."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _std_dumps(value)


# The canonical message attributes kept once, in their typed columns (attribute, column).
MOVED = tuple((f.attribute, f.column) for f in conventions.FIELDS
              if f.column in ("input_messages", "output_messages"))
_MOVED_NAMES = frozenset(name for name, _ in MOVED)
SEAL_ROWS = 250_000
# DuckDB checkpoints inside the commit that takes its WAL past this. With its default,
# 16 MB, a quarter of the commits of 2,000 spans of 3 KB (~6.5 MB of WAL each) did, the
# commit 36-44 % of an insert's time at 3.5M spans. 256 MiB: ~2 checkpoints per seal plus
# the seal's own (1.22x); none before the seal (1 GiB, ~800 MB of WAL per 250k spans) was
# no faster, with four times the unsealed rows in memory and to replay after a crash
# (bench/results/ingest-profile-checkpoint.json, ingest-profile-before-after.json).
CHECKPOINT_THRESHOLD = "256MiB"


# Where ``_table`` takes a column's values from: a SpanRow field of the same name, the
# row's ``genai`` entry of the same name, or (COMPUTED) its own code in ``_table``.
FIELD, GENAI, COMPUTED = "field", "genai", "computed"


def _column(name: str, sql: str, arrow: pa.DataType, source: str = FIELD
            ) -> tuple[str, str, pa.DataType, str]:
    return name, sql, arrow, source


COLUMNS = (
    _column("trace_id", "VARCHAR NOT NULL", pa.string()),
    _column("span_id", "VARCHAR NOT NULL", pa.string()),
    _column("parent_span_id", "VARCHAR", pa.string()),
    _column("name", "VARCHAR", pa.string()),
    _column("kind", "VARCHAR", pa.string()),
    _column("service_name", "VARCHAR", pa.string()),
    _column("scope_name", "VARCHAR", pa.string()),
    _column("start_time", "TIMESTAMPTZ", _TS),
    _column("end_time", "TIMESTAMPTZ", _TS),
    _column("duration_ms", "DOUBLE", pa.float64()),
    _column("status_code", "VARCHAR", pa.string()),
    _column("status_message", "VARCHAR", pa.string()),
    *(_column(f.column, *_GENAI_TYPES[f.kind], GENAI) for f in conventions.FIELDS),
    _column("eval_scores", "MAP(VARCHAR, DOUBLE)", pa.map_(pa.string(), pa.float64())),
    _column("attributes", "JSON", pa.string(), COMPUTED),  # with messages_moved
    _column("resource_attributes", "JSON", pa.string(), COMPUTED),  # shared, encoded once
    _column("events", "JSON", pa.string(), COMPUTED),
    _column("links", "JSON", pa.string(), COMPUTED),
    _column("dropped_attributes_count", "BIGINT", pa.int64()),
    _column("dropped_events_count", "BIGINT", pa.int64()),
    _column("received_at", "TIMESTAMPTZ", _TS),
    _column("messages_moved", "BOOLEAN", pa.bool_(), COMPUTED),
)
_BY_SOURCE = {source: tuple(c[0] for c in COLUMNS if c[3] == source)
              for source in (FIELD, GENAI)}
_GET_FIELDS = operator.attrgetter(*_BY_SOURCE[FIELD])
_GET_GENAI = operator.itemgetter(*_BY_SOURCE[GENAI])
_NAMES = ", ".join(f'"{c[0]}"' for c in COLUMNS)
_DDL = ", ".join(f'"{name}" {sql}' for name, sql, _, _ in COLUMNS)
# Version 1 as released: one table keyed on (trace_id, span_id). Its columns then are
# today's, less those added since (added to a version-1 table before it is partitioned).
_V1_SPANS: list[Step] = [
    "CREATE TABLE IF NOT EXISTS spans ("
    + ", ".join(f'"{name}" {sql}' for name, sql, _, _ in COLUMNS if name != "messages_moved")
    + ", PRIMARY KEY (trace_id, span_id))",
]


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
        [table]).fetchall()}
    missing = [(name, sql) for name, sql, _, _ in COLUMNS if name not in have]
    for name, sql in missing:
        con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql}')
    return bool(missing)


def _partition_v1(con: duckdb.DuckDBPyConnection) -> None:
    """Version 2: the keyed ``spans`` table becomes the partitioned layout. Every span of
    the old table is copied into its day's table, in start-time order; the old key made
    every span unique, so there is nothing to drop."""
    _add_missing_columns(con, "spans")
    con.execute(f"CREATE TABLE {HOT} ({_DDL})")
    con.execute(partitions.CATALOGUE)
    days = [int(r[0]) for r in con.execute(
        f"SELECT DISTINCT {partitions.PART.format(t='')} FROM spans ORDER BY 1").fetchall()]
    for first in days:
        name = f"spans_p{partitions.hour_time(first):%Y%m%d}"
        con.execute(f"CREATE TABLE {name} ({_DDL})")
        row = con.execute(
            f"INSERT INTO {name} ({_NAMES}) SELECT {_NAMES} FROM spans WHERE "
            f"{partitions.PART.format(t='')} = ? ORDER BY start_time", [first]).fetchone()
        con.execute("INSERT INTO span_partitions VALUES (?, ?, ?, ?, now())",
                    [name, first, first + partitions.PARTITION_HOURS, int(row[0]) if row else 0])
    con.execute("DROP TABLE spans")
    partitions.rebuild_view(con, _NAMES)


# 5: the text index's filters cut into pieces (textindex.py); the indexer builds them again.
MIGRATIONS: list[list[Step]] = [_V1_SPANS, [_partition_v1],
                                [partitions.add_trace_summaries], [textindex.V4_DDL],
                                [f"DROP TABLE IF EXISTS {textindex.V4_TABLE}", textindex.DDL]]


class SpanStore:
    """The span tables in the daemon's ``Database``, which this store opens and owns.
    Thread-safe as the database is. Only one process may open the file.

    ``seal_rows``: an insert that leaves the hot table with at least this many rows seals
    it (after its own commit); ``seal_if_idle`` seals on a timer.
    ``checkpoint_threshold``: DuckDB's automatic checkpoint threshold; with one, each seal
    checkpoints after it commits (None: DuckDB's default, no checkpoint of ours).
    ``memory_limit``: DuckDB's memory limit (e.g. "2GB"; None: DuckDB's default, 80 % of
    RAM)."""

    def __init__(self, path: Path, seal_rows: int = SEAL_ROWS,
                 checkpoint_threshold: str | None = CHECKPOINT_THRESHOLD,
                 memory_limit: str | None = None) -> None:
        config = {}
        if checkpoint_threshold is not None:
            config["checkpoint_threshold"] = checkpoint_threshold
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        self.db = Database(path, config)
        self._checkpoint_after_seal = checkpoint_threshold is not None
        self.path = self.db.path
        self.seal_rows = seal_rows
        self._listeners: list[Callable[[Sequence[SpanRow]], object]] = []
        self._retention_listeners: list[Callable[[], object]] = []
        self._expire_before: int | None = None  # hour: the last retention pass's cutoff
        self._last_seal = time.monotonic()
        self._busy_s = 0.0
        try:
            with self.db.transaction() as con:
                migrate(con, "spans", MIGRATIONS)
                for table in (HOT, *(p.name for p in partitions.partitions(con))):
                    _add_missing_columns(con, table)  # fields added since
                partitions.rebuild_view(con, _NAMES)  # this version's columns and form
                found = con.execute(f"SELECT count(*) FROM {HOT}").fetchone()
                self._hot = int(found[0]) if found else 0
        except BaseException:
            self.db.close()
            raise

    def insert(self, rows: Sequence[SpanRow]) -> int:
        """Append rows in one transaction, committed on return; returns how many were
        written (a retried span is written again and shown once: see the module doc).
        Seals the hot table afterwards when it has reached ``seal_rows``."""
        if not rows:
            return 0
        t0 = time.perf_counter()
        try:
            try:
                table = _table(rows)
            except (pa.ArrowException, TypeError, ValueError) as exc:  # not SpanRow-shaped
                raise StoreError(f"cannot store these rows: {exc}") from exc
            with self.db.transaction() as con:
                con.register("_batch", table)
                try:
                    con.execute(f"INSERT INTO {HOT} ({_NAMES}) SELECT {_NAMES} FROM _batch")
                finally:
                    with contextlib.suppress(duckdb.Error):
                        con.unregister("_batch")
                self._hot += len(rows)
                full = self._hot >= self.seal_rows
            self._notify(rows)
            if full:
                self.seal()
            return len(rows)
        finally:
            self._busy_s += time.perf_counter() - t0

    @property
    def busy_seconds(self) -> float:
        """Seconds spent in ``insert`` so far (its seals included): how busy ingest keeps
        the store (the text indexer yields to it)."""
        return self._busy_s

    def seal(self) -> Sealed:
        """Move the hot rows into their partitions now (one transaction)."""
        t0 = time.perf_counter()
        with self.db.transaction() as con:
            if not self._hot:  # another thread sealed first
                return Sealed(0, 0, 0, 0)
            done = partitions.seal(con, _NAMES, _DDL, self._expire_before)
            partitions.checkpoint("seal")
            self._hot = 0
            self._last_seal = time.monotonic()
        if self._checkpoint_after_seal and (done.rows or done.duplicates or done.expired):
            # The WAL now holds rows that are gone from the hot table: write the result
            # once and empty it (what the raised threshold kept off every insert's commit).
            self.db.checkpoint()
        if done.rows or done.duplicates:
            log.info("sealed %d spans in %.1f s (%d duplicates, %d expired dropped)",
                     done.rows, time.perf_counter() - t0, done.duplicates, done.expired)
        return done

    def seal_if_idle(self, interval_s: float) -> Sealed | None:
        """The timer's seal: seal when there are hot rows and the last seal was
        ``interval_s`` ago or more (so a quiet store does not keep rows hot for long)."""
        if self._hot and time.monotonic() - self._last_seal >= interval_s:
            return self.seal()
        return None

    def apply_retention(self, days: int) -> int:
        """Drop the partitions whose spans all started more than ``days`` days ago (the
        hot rows are sealed first, those that old dropped); returns how many spans.
        Spans go between ``days`` and ``days`` + 1 days after they started (a partition is
        a UTC day)."""
        if days < 0:
            raise ValueError("retention days must be >= 0")
        before = partitions.hour_of(datetime.now(UTC) - timedelta(days=days))
        with self.db.transaction() as con:
            self._expire_before = before
            done = partitions.seal(con, _NAMES, _DDL, before)
            dropped = partitions.drop_expired(con, _NAMES, before)
            textindex.forget_dropped(con)
            partitions.checkpoint("retention")
            self._hot = 0
        if done.expired or dropped:
            for listener in self._retention_listeners:
                listener()
        return done.expired + dropped

    def on_insert(self, listener: Callable[[Sequence[SpanRow]], object]) -> None:
        """Call ``listener(rows)`` after each committed insert, outside the lock (e.g. to
        infer change events). A listener's error is logged; the insert has succeeded."""
        self._listeners.append(listener)

    def on_retention(self, listener: Callable[[], object]) -> None:
        """Call ``listener()`` after a retention pass has dropped spans (e.g. to forget
        what was computed from them)."""
        self._retention_listeners.append(listener)

    def _notify(self, rows: Sequence[SpanRow]) -> None:
        for listener in self._listeners:
            try:
                listener(rows)
            except Exception:  # the spans are committed: never fail the ingest for this
                log.exception("span store listener %r failed", listener)

    # ------------------------------------------------------------------ reads

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read-only query for the query modules (appliance/store/queries.py, detectors):
        every value goes in ``params``, never into ``sql``. See ``Database.read``."""
        return self.db.read(sql, params)

    def count(self, service: str | None = None) -> int:
        """Number of spans stored, optionally of one service."""
        if service is None:
            return int(self.db.read("SELECT count(*) AS n FROM spans")[0]["n"])
        return int(self.db.read("SELECT count(*) AS n FROM spans WHERE service_name = ?",
                                [service])[0]["n"])

    def last_ingest(self) -> datetime | None:
        """When the newest stored span was received, None if the store is empty."""
        return _utc(self.db.read("SELECT max(received_at) AS t FROM spans")[0]["t"])

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """All spans of one trace, ordered by start_time."""
        trace_id = trace_id.lower()
        # Two reads, the sealed scan bounded by the first's answer (partitions.trace_sql).
        bounds = self.db.read(partitions.TRACE_BOUNDS, [[trace_id]])[0]
        if bounds["lo"] is None:
            return []
        return [_span(r) for r in self.db.read(partitions.trace_sql(_NAMES),
                                               [trace_id, bounds["lo"], bounds["hi"]])]

    def spans(self, limit: int, offset: int = 0, service: str | None = None,
              trace_id: str | None = None) -> list[dict[str, Any]]:
        """Spans newest first, optionally filtered by service name and/or trace id."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        where, params = [], []
        if service is not None:
            where.append("service_name = ?")
            params.append(service)
        if trace_id is not None:
            where.append("trace_id = ?")
            params.append(trace_id.lower())
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [_span(r) for r in self.db.read(
            f"SELECT {_NAMES} FROM spans {clause} "
            "ORDER BY start_time DESC, trace_id, span_id LIMIT ? OFFSET ?",
            [*params, limit, offset])]

    def stats(self) -> dict[str, Any]:
        """span_count, trace_count, db_bytes (database + WAL file), bytes_per_span,
        oldest/newest start, partitions (sealed tables), hot_rows (rows not sealed yet,
        duplicates included) and text_index_behind (sealed rows the text index does not
        cover yet: the text search scans them)."""
        row = self.db.read("SELECT count(*) AS span_count, count(DISTINCT trace_id) AS "
                           "trace_count, min(start_time) AS oldest_start, max(start_time) AS "
                           "newest_start FROM spans")[0]
        parts = self.db.read("SELECT count(*) AS n, coalesce(sum(rows), 0) AS sealed "
                             "FROM span_partitions")[0]
        db_bytes = self.db.file_bytes()
        spans = int(row["span_count"])
        return {"span_count": spans, "trace_count": row["trace_count"],
                "db_bytes": db_bytes,
                "bytes_per_span": round(db_bytes / spans, 1) if spans else None,
                "oldest_start": _utc(row["oldest_start"]),
                "newest_start": _utc(row["newest_start"]),
                "partitions": int(parts["n"]), "hot_rows": self._hot,
                "text_index_behind": int(parts["sealed"]) - textindex.indexed_rows(self.db)}

    def close(self) -> None:
        """Close the database (every connection); later calls raise StoreError."""
        self.db.close()


def _slim(r: SpanRow) -> tuple[dict[str, Any], bool]:
    """The attributes to encode, and whether the message text was left out: only when
    every canonical message attribute present is the text of its typed column, and no
    alias filled a typed column (so a read can put back exactly what was sent)."""
    attrs = r.attributes
    if not _MOVED_NAMES & attrs.keys():
        return attrs, False
    for name, column in MOVED:
        value, typed = attrs.get(name), r.genai[column]
        if value is None:
            if typed is not None:  # an alias filled the column
                return attrs, False
        elif type(value) is not str or value != typed:
            return attrs, False
    slim = attrs.copy()  # a copy and two deletions: cheaper than a comprehension
    for name in _MOVED_NAMES & attrs.keys():
        del slim[name]
    return slim, True


def _table(rows: Sequence[SpanRow]) -> pa.Table:
    """Rows -> Arrow table; resource attributes, shared by a resource's spans, encoded once;
    the message text left out of the attributes (``_slim``). Values are gathered a row at
    a time by C getters and transposed by ``zip``, not by a Python call per cell."""
    encoded: dict[int, str] = {}  # id() is stable: rows hold the dicts during the call

    def resource(r: SpanRow) -> str:
        key = id(r.resource_attributes)
        if (text := encoded.get(key)) is None:
            text = encoded[key] = _dumps(r.resource_attributes)
        return text

    values = {**_transpose(_BY_SOURCE[FIELD], map(_GET_FIELDS, rows)),
              **_transpose(_BY_SOURCE[GENAI], (_GET_GENAI(r.genai) for r in rows))}
    slim = [_slim(r) for r in rows]
    values["attributes"] = [_dumps(a) for a, _ in slim]
    values["messages_moved"] = [m for _, m in slim]
    values["resource_attributes"] = [resource(r) for r in rows]
    values["events"] = [_dumps(r.events) if r.events else "[]" for r in rows]
    values["links"] = [_dumps(r.links) if r.links else "[]" for r in rows]
    return pa.table({name: pa.array(values[name], type=arrow)
                     for name, _, arrow, _ in COLUMNS})


def _transpose(names: Sequence[str], rows: Iterable[tuple[Any, ...]]
               ) -> dict[str, Sequence[Any]]:
    columns = list(zip(*rows, strict=True)) or [()] * len(names)  # no rows: empty columns
    return dict(zip(names, columns, strict=True))


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _span(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("start_time", "end_time", "received_at"):
        row[name] = _utc(row[name])
    for name in _JSON_COLUMNS:
        row[name] = json.loads(row[name]) if row[name] is not None else None
    if row.pop("messages_moved") and row["attributes"] is not None:
        for name, column in MOVED:
            if row[column] is not None:
                row["attributes"][name] = row[column]
    row["eval_scores"] = dict(row["eval_scores"] or ())
    return row
