"""Change events in the daemon's DuckDB (table ``change_events``). Each one recorded is
also an audit entry, in the same transaction."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from appliance.audit.log import AuditLog
from appliance.domain.change_kinds import ChangeKind
from appliance.store.database import Database, migrate
from appliance.times import iso, optional_time

MIGRATIONS = [[
    "CREATE TABLE change_events (id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, "
    "service VARCHAR NOT NULL, from_value VARCHAR, to_value VARCHAR, "
    "changed_at TIMESTAMPTZ NOT NULL, note VARCHAR, source VARCHAR NOT NULL, "
    "actor VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL)",
]]


class ChangeIn(BaseModel):
    """What a person or tool reports: ``kind`` one of ``ChangeKind``
    (``appliance.domain.change_kinds``); ``at`` is ISO 8601 (default: now)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: ChangeKind
    service: str = Field(min_length=1, max_length=200)
    from_: str | None = Field(None, alias="from", max_length=1000)
    to: str | None = Field(None, max_length=1000)
    at: str | None = None
    note: str | None = Field(None, max_length=4096)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "kind": row["kind"], "service": row["service"],
            "from": row["from_value"], "to": row["to_value"], "at": iso(row["changed_at"]),
            "note": row["note"], "source": row["source"], "actor": row["actor"],
            "recorded_at": iso(row["recorded_at"])}


class ChangeStore:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db, self.audit = db, audit
        with db.transaction() as con:
            migrate(con, "changes", MIGRATIONS)

    def record(self, change: ChangeIn, actor: str, source: str = "manual") -> dict[str, Any]:
        at = optional_time(change.at, "at") or datetime.now(UTC)  # 400 before any write
        with self.db.transaction() as con:
            return self.record_in(con, change, at, actor, source)

    def record_in(self, con: duckdb.DuckDBPyConnection, change: ChangeIn, at: datetime,
                  actor: str, source: str) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": "chg_" + secrets.token_hex(5), "kind": change.kind.value,
            "service": change.service, "from_value": change.from_, "to_value": change.to,
            "changed_at": at, "note": change.note, "source": source, "actor": actor,
            "recorded_at": datetime.now(UTC)}
        con.execute("INSERT INTO change_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    list(event.values()))
        out = _out(event)
        self.audit.append_in(con, actor, "change.record", event["id"],
                             {k: out[k] for k in ("kind", "service", "from", "to", "at",
                                                  "source")})
        return out

    def list(self, service: str | None = None, since: datetime | None = None,
             until: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
        where, params = ["TRUE"], []
        for clause, value in (("service = ?", service), ("changed_at >= ?", since),
                              ("changed_at <= ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        return [_out(r) for r in self.db.read(
            f"SELECT * FROM change_events WHERE {' AND '.join(where)} "
            "ORDER BY changed_at DESC, id LIMIT ?", [*params, limit])]
