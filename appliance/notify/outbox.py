"""The outbox: every message to every destination, kept in the daemon's DuckDB file
until it is delivered or becomes a dead letter.

* Nothing is lost: a message is committed (with the audit position it came from, in
  one transaction) before any attempt to send it, so a kill -9 at any point leaves it
  in the file; the next start sends it.
* No duplicate from a restart: the worker's audit cursor moves in the same transaction
  as the messages it produced, so an entry is turned into messages exactly once. A
  process killed between a destination's 2xx and the commit of "sent" sends that one
  message again on restart (at least once); the webhook's ``X-Tracehold-Delivery``
  header names the message so a receiver can drop it.
* In order per destination: only a destination's oldest pending message is tried; a
  failing one holds back the ones after it, with exponential backoff, until it is sent
  or has used its tries (then it is a dead letter, and the next one goes).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.errors import NotFound
from appliance.store.database import Database, migrate, rows
from appliance.times import iso

MIGRATIONS = [[
    "CREATE TABLE notify_outbox (id BIGINT PRIMARY KEY, destination VARCHAR NOT NULL, "
    "event VARCHAR NOT NULL, case_id VARCHAR NOT NULL, audit_seq BIGINT NOT NULL, "
    "payload VARCHAR NOT NULL, state VARCHAR NOT NULL, tries INTEGER NOT NULL, "
    "next_at TIMESTAMPTZ NOT NULL, last_try_at TIMESTAMPTZ, last_error VARCHAR, "
    "created_at TIMESTAMPTZ NOT NULL, sent_at TIMESTAMPTZ)",
    "CREATE TABLE notify_cursor (name VARCHAR PRIMARY KEY, seq BIGINT NOT NULL)",
    "CREATE TABLE case_tickets (case_id VARCHAR PRIMARY KEY, tracker VARCHAR NOT NULL, "
    "state VARCHAR NOT NULL, url VARCHAR, ref VARCHAR, error VARCHAR, "
    "created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
]]
STATES = ("pending", "sent", "dead")
_CURSOR = "audit"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewMessage:
    destination: str
    event: str
    case_id: str
    audit_seq: int
    payload: dict[str, Any]


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the API answers it (times as ISO text)."""
    out = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in row.items()}
    out["payload"] = json.loads(row["payload"])
    return out


class Outbox:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or _now
        # set by every change made outside the worker's own sends (new messages, a retry):
        # the worker then asks the table again instead of trusting its cached next time
        self.changed = threading.Event()
        with db.transaction() as con:
            migrate(con, "notify", MIGRATIONS)

    # ---------------------------------------------------------------- the audit cursor

    def cursor(self) -> int | None:
        found = self.db.read("SELECT seq FROM notify_cursor WHERE name = ?", [_CURSOR])
        return int(found[0]["seq"]) if found else None

    def add(self, messages: Sequence[NewMessage], cursor: int) -> None:
        """Store ``messages`` and move the audit cursor to ``cursor``, all or nothing."""
        now = self.clock()
        with self.db.transaction() as con:
            top = rows(con, "SELECT coalesce(max(id), 0) AS id FROM notify_outbox")[0]["id"]
            for i, m in enumerate(messages, start=int(top) + 1):
                con.execute("INSERT INTO notify_outbox VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, "
                            "?, NULL, NULL, ?, NULL)",
                            [i, m.destination, m.event, m.case_id, m.audit_seq,
                             json.dumps(m.payload), now, now])
            con.execute("INSERT OR REPLACE INTO notify_cursor VALUES (?, ?)", [_CURSOR, cursor])
        if messages:
            self.changed.set()

    # ---------------------------------------------------------------- delivery

    def due(self) -> list[dict[str, Any]]:
        """Each destination's oldest pending message, if its time has come."""
        return self.db.read(
            "SELECT * FROM notify_outbox o WHERE state = 'pending' AND next_at <= ? AND id = "
            "(SELECT min(id) FROM notify_outbox p WHERE p.destination = o.destination "
            "AND p.state = 'pending') ORDER BY id", [self.clock()])

    def next_due(self) -> datetime | None:
        found = self.db.read("SELECT min(next_at) AS t FROM notify_outbox "
                             "WHERE state = 'pending'")
        t: datetime | None = found[0]["t"]
        return t

    def sent(self, message_id: int) -> None:
        now = self.clock()
        with self.db.transaction() as con:
            con.execute("UPDATE notify_outbox SET state = 'sent', sent_at = ?, last_try_at = ?, "
                        "tries = tries + 1 WHERE id = ?", [now, now, message_id])

    def failed(self, message_id: int, error: str, max_tries: int, backoff_base_s: float,
               backoff_max_s: float) -> str:
        """Record a failed try: retried after ``base * 2**(tries-1)`` seconds (at most
        ``backoff_max_s``), a dead letter once it has had ``max_tries``. Returns the state."""
        now = self.clock()
        with self.db.transaction() as con:
            found = rows(con, "SELECT tries FROM notify_outbox WHERE id = ?", [message_id])
            tries = int(found[0]["tries"]) + 1 if found else 1
            state = "dead" if tries >= max_tries else "pending"
            delay = min(backoff_base_s * 2 ** (tries - 1), backoff_max_s)
            con.execute("UPDATE notify_outbox SET state = ?, tries = ?, last_try_at = ?, "
                        "last_error = ?, next_at = ? WHERE id = ?",
                        [state, tries, now, error[:2000], now + timedelta(seconds=delay),
                         message_id])
        return state

    def retry(self, message_id: int | None = None) -> int:
        """Dead letters (one, or all with None) back to pending, due now, tries reset.
        Returns how many."""
        where, params = "state = 'dead'", [self.clock()]
        if message_id is not None:
            if not self.db.read("SELECT id FROM notify_outbox WHERE id = ? AND state = 'dead'",
                                [message_id]):
                raise NotFound(f"no dead letter with id {message_id}")
            where += " AND id = ?"
            params.append(message_id)  # type: ignore[arg-type]
        with self.db.transaction() as con:
            n = rows(con, f"SELECT count(*) AS n FROM notify_outbox WHERE {where}",
                     params[1:])[0]["n"]
            con.execute("UPDATE notify_outbox SET state = 'pending', tries = 0, next_at = ? "
                        f"WHERE {where}", params)
        self.changed.set()
        return int(n)

    # ---------------------------------------------------------------- reads

    def messages(self, state: str | None = None, case_id: str | None = None,
                 limit: int = 200) -> list[dict[str, Any]]:
        where, params = ["TRUE"], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if case_id is not None:
            where.append("case_id = ?")
            params.append(case_id)
        found = self.db.read(f"SELECT * FROM notify_outbox WHERE {' AND '.join(where)} "
                             "ORDER BY id DESC LIMIT ?", [*params, limit])
        return [public(r) for r in found]

    def health(self) -> list[dict[str, Any]]:
        """Per destination: pending and dead counts, last sent, and the failing head's
        error; ``failing`` when a dead letter waits or the head has failed a try."""
        found = self.db.read(
            "SELECT destination, count(*) FILTER (state = 'pending') AS pending, "
            "count(*) FILTER (state = 'dead') AS dead, max(sent_at) AS last_sent_at, "
            "arg_min(last_error, id) FILTER (state = 'pending' AND tries > 0) AS head_error, "
            "arg_max(last_error, id) FILTER (state = 'dead') AS dead_error "
            "FROM notify_outbox GROUP BY destination ORDER BY destination")
        out = []
        for r in found:
            error = r["head_error"] or r["dead_error"]
            out.append({"destination": r["destination"], "pending": int(r["pending"]),
                        "dead": int(r["dead"]), "last_sent_at": iso(r["last_sent_at"]),
                        "failing": bool(r["dead"]) or bool(r["head_error"]),
                        "last_error": error})
        return out
