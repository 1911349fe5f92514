"""The daemon's one DuckDB file: the span store, the audit log, cases and change events
all keep their tables in it, through one ``Database``.

Why one shared database:

* One writer. DuckDB takes a file lock, so only the daemon opens the file; everyone else
  reads through its API. One file also lets a case change and its audit entry commit in
  one transaction (``transaction``).
* Thread-safe: writes serialise on one lock, reads use a cursor per thread (closed when the
  thread ends, or by ``close``).
* DuckDB I/O failures (disk full, I/O error, file lock) raise ``StoreUnavailable`` so the
  API answers 503 + Retry-After and the collector retries; anything else is ``StoreError``.
  A fatal error (e.g. a checkpoint that hit a full disk) invalidates the database until it
  is reopened, so the connections are dropped and the next call reopens the file,
  replaying the committed WAL.
* Reads go through Arrow because fetching TIMESTAMPTZ with ``fetchall()`` needs pytz,
  which is not a dependency.

Schema versions, one mechanism for every component:

* ``schema_version`` holds the version of the file as a whole (``SCHEMA_VERSION``). Every
  Tracehold ever released checks it when it opens the file, so it is the gate for a change
  an older Tracehold must not open: a file newer than this code understands is refused.
* Each component (``spans``, ``audit``, ``cases``, ``changes``) names itself and lists its
  migrations in order; ``migrate`` applies the ones newer than the version recorded for
  that name in ``component_schema``, in the caller's transaction, so a component's tables
  appear whole or not at all, and a component newer than this code is refused.

Who takes what: ``SpanStore(path)`` opens the ``Database`` and owns it (``store.db``;
``store.close()`` closes it), so every composition root still opens one object per file.
The audit log, case store and change store take the ``Database``, not the span store:
none of them reads spans, they need only transactions, reads and their own migrations,
and this keeps ``SpanStore`` about spans.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from appliance.errors import StoreError, StoreUnavailable

SCHEMA_VERSION = 1
T = TypeVar("T")
_TRANSIENT = (duckdb.IOException, duckdb.OutOfMemoryException, duckdb.FatalException,
              duckdb.InterruptException)


def store_error(exc: duckdb.Error) -> StoreError:
    """A DuckDB error as ours: transient ones (retry later) are ``StoreUnavailable``."""
    # A commit whose WAL write failed (a full disk, since the checkpoint threshold keeps
    # the WAL growing to 256 MiB) comes as a TransactionException, not an IOException.
    if isinstance(exc, _TRANSIENT) or (isinstance(exc, duckdb.TransactionException)
                                       and "Failed to commit" in str(exc)):
        return StoreUnavailable(f"span store unavailable: {exc}")
    return StoreError(f"span store failed: {exc}")


def rows(con: duckdb.DuckDBPyConnection, sql: str,
         params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """One dict per row (through Arrow: TIMESTAMPTZ without pytz)."""
    result: list[dict[str, Any]] = con.sql(sql, params=list(params)).to_arrow_table().to_pylist()
    return result


Step = str | Callable[[duckdb.DuckDBPyConnection], object]


def migrate(con: duckdb.DuckDBPyConnection, component: str,
            migrations: Sequence[Sequence[Step]]) -> int:
    """Apply ``migrations[v:]`` for ``component`` (each a list of statements, or of
    functions of the connection when the statements depend on the data); returns the
    version now in force. Call inside ``Database.transaction()``."""
    found = rows(con, "SELECT version FROM component_schema WHERE component = ?", [component])
    current = int(found[0]["version"]) if found else 0
    if current > len(migrations):
        raise StoreError(f"{component} tables have schema version {current}; this Tracehold "
                         f"understands up to {len(migrations)}")
    for steps in migrations[current:]:
        for step in steps:
            if isinstance(step, str):
                con.execute(step)
            else:
                step(con)
    if current < len(migrations):
        con.execute("INSERT OR REPLACE INTO component_schema VALUES (?, ?, now())",
                    [component, len(migrations)])
    return len(migrations)


class Database:
    """The DuckDB file at ``path``, opened (and its version checked) on construction."""

    def __init__(self, path: Path, config: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        # DuckDB settings of the database instance (e.g. memory_limit), given to every
        # connect, so a reopen after a fatal error keeps them.
        self._config: dict[str, str | bool | int | float | list[str]] = {**(config or {})}
        self._lock = threading.Lock()
        self._local = threading.local()
        # weak: a thread's cursor goes (and is closed) with the thread's locals
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        self._closed = False
        self._con: duckdb.DuckDBPyConnection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path), config=self._config)
            self._check_version(self._con)
        except BaseException as exc:
            if self._con is not None:
                self._con.close()
            if isinstance(exc, duckdb.Error):
                raise store_error(exc) from exc
            if isinstance(exc, OSError):
                raise StoreUnavailable(f"span store unavailable: {exc}") from exc
            raise

    def _check_version(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                    "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}; this Tracehold "
                             f"understands up to {SCHEMA_VERSION}")
        if version is None:
            con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION])
        con.execute("CREATE TABLE IF NOT EXISTS component_schema (component VARCHAR PRIMARY KEY, "
                    "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The writer connection inside one transaction, under the database's lock.
        Commits on a clean exit, rolls back on any error; DuckDB errors map as described
        above. The lock is not re-entrant: do not call other methods inside."""
        with self._lock:
            con = self._writer()
            try:
                con.begin()
                yield con
                con.commit()
            except duckdb.Error as exc:
                _rollback(con)
                raise self._failed(exc) from exc
            except BaseException:
                _rollback(con)
                raise

    def _writer(self) -> duckdb.DuckDBPyConnection:
        """The connection (call with the lock held); reopened after a fatal error."""
        if self._closed:
            raise StoreError("span store is closed")
        if self._con is None:
            try:
                self._con = duckdb.connect(str(self.path), config=self._config)
            except duckdb.Error as exc:
                raise store_error(exc) from exc
        return self._con

    def _failed(self, exc: duckdb.Error) -> StoreError:
        """Map a DuckDB error (call with the lock held), dropping the connections after a
        fatal one."""
        if isinstance(exc, duckdb.FatalException):
            self._drop_connections()
        return store_error(exc)

    def _drop_connections(self) -> None:
        for con in (*list(self._cursors), self._con):
            if con is not None:
                with contextlib.suppress(duckdb.Error):
                    con.close()
        self._cursors.clear()
        self._local = threading.local()
        self._con = None

    def checkpoint(self) -> None:
        """Write committed changes from the WAL into the file and empty the WAL (DuckDB's
        CHECKPOINT), under the write lock."""
        with self._lock:
            con = self._writer()
            try:
                con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise self._failed(exc) from exc

    # ------------------------------------------------------------------ reads

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read-only query on this thread's cursor: every value goes in ``params``, never
        into ``sql``. Rows as dicts, DuckDB errors as StoreError."""
        return self._on_cursor(lambda cursor: rows(cursor, sql, params))

    def read_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """``read``, the result as an Arrow table (for bulk columns: no per-row objects).
        A missing table raises duckdb.CatalogException itself, for callers that name a
        partition table a retention pass may have dropped."""
        return self._on_cursor(
            lambda cursor: cursor.sql(sql, params=list(params)).to_arrow_table(),
            passing=(duckdb.CatalogException,))

    def _on_cursor(self, run: Callable[[duckdb.DuckDBPyConnection], T],
                   passing: tuple[type[duckdb.Error], ...] = ()) -> T:
        local = self._local
        cursor = getattr(local, "cursor", None)
        try:
            if cursor is None:
                with self._lock:
                    cursor = self._writer().cursor()
                    self._cursors.add(cursor)
                local.cursor = cursor
            return run(cursor)
        except passing:
            raise
        except duckdb.Error as exc:
            with self._lock:  # unless another thread already dropped the connections
                error = self._failed(exc) if local is self._local else store_error(exc)
            raise error from exc

    def file_bytes(self) -> int:
        """Size on disk: the database file and its WAL."""
        files = (self.path, self.path.with_name(self.path.name + ".wal"))
        return sum(f.stat().st_size for f in files if f.exists())

    def close(self) -> None:
        """Close every connection; later calls raise StoreError."""
        with self._lock:
            self._closed = True
            self._drop_connections()


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # no transaction open, or db invalidated
        con.rollback()
