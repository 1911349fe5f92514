"""Schema versions for the stores that share the span store's DuckDB file.

Each store (audit log, change events, cases) names itself and lists its migrations
in order; ``migrate`` applies the ones newer than the version recorded for that
name, in the caller's transaction, so a store's tables appear whole or not at all.
The span store keeps its own ``schema_version`` table; this one is keyed by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from appliance.errors import StoreError


def rows(con: duckdb.DuckDBPyConnection, sql: str,
         params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """One dict per row (through Arrow: TIMESTAMPTZ without pytz)."""
    return con.sql(sql, params=list(params)).to_arrow_table().to_pylist()


def migrate(con: duckdb.DuckDBPyConnection, component: str,
            migrations: Sequence[Sequence[str]]) -> int:
    """Apply ``migrations[v:]`` for ``component`` (each a list of statements); returns the
    version now in force. Call inside ``SpanStore.transaction()``."""
    con.execute("CREATE TABLE IF NOT EXISTS component_schema (component VARCHAR PRIMARY KEY, "
                "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    found = rows(con, "SELECT version FROM component_schema WHERE component = ?", [component])
    current = int(found[0]["version"]) if found else 0
    if current > len(migrations):
        raise StoreError(f"{component} tables have schema version {current}; this Tracehold "
                         f"understands up to {len(migrations)}")
    for statements in migrations[current:]:
        for sql in statements:
            con.execute(sql)
    if current < len(migrations):
        con.execute("INSERT OR REPLACE INTO component_schema VALUES (?, ?, now())",
                    [component, len(migrations)])
    return len(migrations)
