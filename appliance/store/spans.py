"""The span store: the ``spans`` table of the daemon's DuckDB file (``Database``).

Why it looks like this:

* Delivery from the collector's persistent queue is at-least-once, so inserts are
  idempotent on the primary key (trace_id, span_id): ``INSERT OR IGNORE``, which also
  absorbs duplicates inside one batch. No other index: DuckDB ART indexes are costly.
* A batch becomes one pyarrow Table inserted by one statement in one transaction: fast,
  and nothing is half-written when it fails.
* Connections, locking, error mapping (``StoreUnavailable`` -> 503 + Retry-After) and
  schema versions are the ``Database``'s (``appliance.store.database``); the table is the
  ``spans`` component there.
* The typed GenAI columns come from ``conventions.FIELDS``; a field added there is added
  to an existing database as a new column when the store opens.

Columns: trace_id, span_id, parent_span_id, name, kind, service_name, scope_name VARCHAR;
start_time, end_time, received_at TIMESTAMPTZ; duration_ms DOUBLE; status_code,
status_message VARCHAR; one column per ``conventions.FIELDS`` entry (str VARCHAR, int BIGINT,
float DOUBLE, str_list VARCHAR[], float_list DOUBLE[]); eval_scores MAP(VARCHAR, DOUBLE)
(queryable as ``eval_scores['relevance']``); attributes, resource_attributes, events,
links JSON; dropped_attributes_count, dropped_events_count BIGINT.

Reads return one dict per span with those keys: JSON columns parsed, eval_scores a dict,
times UTC-aware datetimes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.errors import StoreError
from appliance.ingest import conventions
from appliance.ingest.rows import SpanRow
from appliance.store.database import Database, migrate

log = logging.getLogger("tracehold.store")
_TS = pa.timestamp("us", tz="UTC")
_GENAI_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "str": ("VARCHAR", pa.string()), "int": ("BIGINT", pa.int64()),
    "float": ("DOUBLE", pa.float64()), "str_list": ("VARCHAR[]", pa.list_(pa.string())),
    "float_list": ("DOUBLE[]", pa.list_(pa.float64()))}
_JSON_COLUMNS = ("attributes", "resource_attributes", "events", "links")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _column(name: str, sql: str, arrow: pa.DataType, get: Callable[[SpanRow], Any] | None
            ) -> tuple[str, str, pa.DataType, Callable[[SpanRow], Any] | None]:
    return name, sql, arrow, get


def _genai_getter(column: str) -> Callable[[SpanRow], Any]:
    return lambda r: r.genai[column]


COLUMNS = (
    _column("trace_id", "VARCHAR NOT NULL", pa.string(), lambda r: r.trace_id),
    _column("span_id", "VARCHAR NOT NULL", pa.string(), lambda r: r.span_id),
    _column("parent_span_id", "VARCHAR", pa.string(), lambda r: r.parent_span_id),
    _column("name", "VARCHAR", pa.string(), lambda r: r.name),
    _column("kind", "VARCHAR", pa.string(), lambda r: r.kind),
    _column("service_name", "VARCHAR", pa.string(), lambda r: r.service_name),
    _column("scope_name", "VARCHAR", pa.string(), lambda r: r.scope_name),
    _column("start_time", "TIMESTAMPTZ", _TS, lambda r: r.start_time),
    _column("end_time", "TIMESTAMPTZ", _TS, lambda r: r.end_time),
    _column("duration_ms", "DOUBLE", pa.float64(), lambda r: r.duration_ms),
    _column("status_code", "VARCHAR", pa.string(), lambda r: r.status_code),
    _column("status_message", "VARCHAR", pa.string(), lambda r: r.status_message),
    *(_column(f.column, *_GENAI_TYPES[f.kind], _genai_getter(f.column))
      for f in conventions.FIELDS),
    _column("eval_scores", "MAP(VARCHAR, DOUBLE)", pa.map_(pa.string(), pa.float64()),
            lambda r: r.eval_scores),
    _column("attributes", "JSON", pa.string(), lambda r: _dumps(r.attributes)),
    _column("resource_attributes", "JSON", pa.string(), None),  # shared: see _table
    _column("events", "JSON", pa.string(), lambda r: _dumps(r.events) if r.events else "[]"),
    _column("links", "JSON", pa.string(), lambda r: _dumps(r.links) if r.links else "[]"),
    _column("dropped_attributes_count", "BIGINT", pa.int64(),
            lambda r: r.dropped_attributes_count),
    _column("dropped_events_count", "BIGINT", pa.int64(), lambda r: r.dropped_events_count),
    _column("received_at", "TIMESTAMPTZ", _TS, lambda r: r.received_at),
)
_NAMES = ", ".join(f'"{c[0]}"' for c in COLUMNS)
# Additive changes need no new migration: the table is created with today's columns and a
# field added to conventions.FIELDS since is added to an existing table when it opens.
MIGRATIONS = [[
    "CREATE TABLE IF NOT EXISTS spans ("
    + ", ".join(f'"{name}" {sql}' for name, sql, _, _ in COLUMNS)
    + ", PRIMARY KEY (trace_id, span_id))",
]]


class SpanStore:
    """The span table in the daemon's ``Database``, which this store opens and owns.
    Thread-safe as the database is. Only one process may open the file."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path)
        self.path = self.db.path
        self._listeners: list[Callable[[Sequence[SpanRow]], object]] = []
        try:
            with self.db.transaction() as con:
                migrate(con, "spans", MIGRATIONS)
                have = {r[0] for r in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'spans'").fetchall()}
                for name, sql, _, _ in COLUMNS:  # fields added to conventions.FIELDS since
                    if name not in have:
                        con.execute(f'ALTER TABLE spans ADD COLUMN "{name}" {sql}')
        except BaseException:
            self.db.close()
            raise

    def insert(self, rows: Sequence[SpanRow]) -> int:
        """Insert rows in one transaction; returns how many were new (duplicates ignored)."""
        if not rows:
            return 0
        try:
            table = _table(rows)
        except (pa.ArrowException, TypeError, ValueError) as exc:  # not SpanRow-shaped
            raise StoreError(f"cannot store these rows: {exc}") from exc
        with self.db.transaction() as con:
            con.register("_batch", table)
            try:
                result = con.execute(f"INSERT OR IGNORE INTO spans ({_NAMES}) "
                                     f"SELECT {_NAMES} FROM _batch").fetchone()
            finally:
                with contextlib.suppress(duckdb.Error):
                    con.unregister("_batch")
        self._notify(rows)
        return int(result[0]) if result else 0

    def apply_retention(self, days: int) -> int:
        """Delete spans that started more than ``days`` days ago; returns how many."""
        if days < 0:
            raise ValueError("retention days must be >= 0")
        cutoff = datetime.now(UTC) - timedelta(days=days)
        with self.db.transaction() as con:
            row = con.execute("DELETE FROM spans WHERE start_time < ?", [cutoff]).fetchone()
        return int(row[0]) if row else 0

    def on_insert(self, listener: Callable[[Sequence[SpanRow]], object]) -> None:
        """Call ``listener(rows)`` after each committed insert, outside the lock (e.g. to
        infer change events). A listener's error is logged; the insert has succeeded."""
        self._listeners.append(listener)

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
        return [_span(r) for r in self.db.read(
            f"SELECT {_NAMES} FROM spans WHERE trace_id = ? ORDER BY start_time, span_id",
            [trace_id.lower()])]

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
        """span_count, trace_count, db_bytes (database + WAL file), oldest/newest start."""
        row = self.db.read("SELECT count(*) AS span_count, count(DISTINCT trace_id) AS "
                           "trace_count, min(start_time) AS oldest_start, max(start_time) AS "
                           "newest_start FROM spans")[0]
        return {"span_count": row["span_count"], "trace_count": row["trace_count"],
                "db_bytes": self.db.file_bytes(),
                "oldest_start": _utc(row["oldest_start"]),
                "newest_start": _utc(row["newest_start"])}

    def close(self) -> None:
        """Close the database (every connection); later calls raise StoreError."""
        self.db.close()


def _table(rows: Sequence[SpanRow]) -> pa.Table:
    """Rows -> Arrow table; resource attributes, shared by a resource's spans, encoded once."""
    encoded: dict[int, str] = {}  # id() is stable: rows hold the dicts during the call

    def resource(r: SpanRow) -> str:
        key = id(r.resource_attributes)
        if (text := encoded.get(key)) is None:
            text = encoded[key] = _dumps(r.resource_attributes)
        return text

    return pa.table({name: pa.array([(get or resource)(r) for r in rows], type=arrow)
                     for name, _, arrow, get in COLUMNS})


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _span(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("start_time", "end_time", "received_at"):
        row[name] = _utc(row[name])
    for name in _JSON_COLUMNS:
        row[name] = json.loads(row[name]) if row[name] is not None else None
    row["eval_scores"] = dict(row["eval_scores"] or ())
    return row
