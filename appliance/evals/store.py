"""The ``evaluations`` table: built-in scores beside the spans they judge.

One row per (trace_id, span_id, name): the score (NULL when not scored, with the
reason), who made it (``source``: ``tracehold``; the app's own scores stay in the span's
``eval_scores``), the evaluator's version, details (per sentence, per chunk) and when.
A re-run replaces the row, so a span has one built-in score per name.

The table is its own component of the shared ``Database`` (``migrate``), and the spans
are never written: the span store's layout is its own business. The detectors read
built-in scores through ``builtin_score``, a lookup by the span's key that the app's
own score goes before (``appliance/detect/quality.py``).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from appliance.store.database import Database, migrate

COMPONENT = "evaluations"
MIGRATIONS = [[
    "CREATE TABLE IF NOT EXISTS evaluations ("
    "trace_id VARCHAR NOT NULL, span_id VARCHAR NOT NULL, name VARCHAR NOT NULL, "
    "score DOUBLE, source VARCHAR NOT NULL, evaluator_version VARCHAR NOT NULL, "
    "reason VARCHAR, detail JSON, service_name VARCHAR, scored_at TIMESTAMPTZ NOT NULL, "
    "PRIMARY KEY (trace_id, span_id, name))",
]]
_ready: weakref.WeakSet[Database] = weakref.WeakSet()
_ready_lock = threading.Lock()
# Per database: called after scores are written or deleted, with the earliest ``seen`` of
# their spans (None when that is not known).
_scored: weakref.WeakKeyDictionary[Database, list[Callable[[datetime | None], object]]] = \
    weakref.WeakKeyDictionary()


def on_scored(db: Database, listener: Callable[[datetime | None], object]) -> None:
    """Call ``listener(seen)`` after every write or deletion of scores in ``db``'s table,
    by any ``EvalStore`` on it (the detector runner forgets the buckets they change)."""
    with _ready_lock:
        _scored.setdefault(db, []).append(listener)


def ensure(db: Database) -> None:
    """Create or migrate the table once per open database (cheap after the first call):
    readers below the evaluators in the import layers call it before they query."""
    with _ready_lock:
        if db in _ready:
            return
        with db.transaction() as con:
            migrate(con, COMPONENT, MIGRATIONS)
        _ready.add(db)


# What every ``builtin_score`` expression holds: how a reader (the detectors' bucket
# cache) tells the SQL that reads these scores from the SQL that does not.
READS_SCORES = "FROM evaluations e "


def builtin_score(name: str, table: str = "spans") -> str:
    """SQL for the built-in score ``name`` of the current row of ``table`` (NULL when
    none). ``name`` is one of our fixed evaluator names, never input."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not an evaluator name: {name!r}")
    return (f"(SELECT e.score {READS_SCORES}WHERE e.trace_id = {table}.trace_id "
            f"AND e.span_id = {table}.span_id AND e.name = '{name}')")


@dataclass(frozen=True)
class Evaluation:
    trace_id: str
    span_id: str
    name: str
    score: float | None
    evaluator_version: str
    reason: str = ""
    detail: dict[str, Any] | None = None
    service_name: str | None = None
    source: str = "tracehold"
    # When the appliance knew of the span (its end or arrival: ``store.spans.SEEN``),
    # told to the readers that keep aggregates by it (``on_scored``); not stored.
    seen: datetime | None = None


class EvalStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        ensure(db)

    def put(self, rows: Sequence[Evaluation], at: datetime | None = None) -> int:
        if not rows:
            return 0
        when = at or datetime.now(UTC)
        # One Arrow table, one statement: DuckDB's executemany runs row by row (~10 ms each).
        table = pa.table({
            "trace_id": [r.trace_id for r in rows], "span_id": [r.span_id for r in rows],
            "name": [r.name for r in rows],
            "score": pa.array([r.score for r in rows], pa.float64()),
            "source": [r.source for r in rows],
            "evaluator_version": [r.evaluator_version for r in rows],
            "reason": pa.array([r.reason or None for r in rows], pa.string()),
            "detail": pa.array([json.dumps(r.detail) if r.detail else None for r in rows],
                               pa.string()),
            "service_name": pa.array([r.service_name for r in rows], pa.string()),
            "scored_at": pa.array([when] * len(rows), pa.timestamp("us", tz="UTC"))})
        with self.db.transaction() as con:
            con.register("_evaluations", table)
            try:
                con.execute("INSERT OR REPLACE INTO evaluations SELECT * FROM _evaluations")
            finally:
                con.unregister("_evaluations")
        self._told(None if any(r.seen is None for r in rows) else min(
            r.seen for r in rows if r.seen is not None))
        return len(rows)

    def _told(self, seen: datetime | None) -> None:
        for listener in _scored.get(self.db, ()):
            listener(seen)

    def for_trace(self, trace_id: str) -> list[dict[str, Any]]:
        rows = self.db.read("SELECT * EXCLUDE (detail), detail::VARCHAR AS detail "
                            "FROM evaluations WHERE trace_id = ? ORDER BY span_id, name",
                            [trace_id.lower()])
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r["detail"] else None
        return rows

    def summary(self, since: datetime | None = None, until: datetime | None = None,
                service: str | None = None) -> list[dict[str, Any]]:
        """Per service and name: how many scored, their mean, how many not scored."""
        where, params = ["TRUE"], []
        for clause, value in (("scored_at >= ?", since), ("scored_at < ?", until),
                              ("service_name = ?", service)):
            if value is not None:
                where.append(clause)
                params.append(value)
        return self.db.read(
            "SELECT service_name AS service, name, count(score) AS scored, "
            "round(avg(score), 4) AS mean, count(*) - count(score) AS not_scored "
            f"FROM evaluations WHERE {' AND '.join(where)} GROUP BY ALL ORDER BY ALL", params)

    def apply_retention(self, days: int, now: datetime | None = None) -> int:
        """Delete scores made more than ``days`` ago (the spans' retention); how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        with self.db.transaction() as con:
            found = con.execute("DELETE FROM evaluations WHERE scored_at < ?", [cutoff])
            deleted = int((found.fetchone() or (0,))[0])
        if deleted:  # which spans lost a score is not known here: listeners forget all
            self._told(None)
        return deleted

    def count(self) -> int:
        return int(self.db.read("SELECT count(*) AS n FROM evaluations")[0]["n"])
