"""The audit log in the daemon's DuckDB: ``audit_log`` (append-only, hash-chained) and
``audit_heads`` (signed chain heads, so a head can be anchored outside the host).

Nothing here updates or deletes an entry. Appends serialise on the database's lock
and can join a caller's transaction (``append_in``), so a case change and its audit
entry commit together or not at all. ``ts`` is kept as the ISO text that was hashed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb

from appliance.audit import chain
from appliance.audit.signing import Signer
from appliance.audit.signing import verify as verify_signature
from appliance.errors import InvalidRequest
from appliance.store.database import Database, migrate, rows

MIGRATIONS = [[
    "CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, ts VARCHAR NOT NULL, "
    "actor VARCHAR NOT NULL, action VARCHAR NOT NULL, subject VARCHAR NOT NULL, "
    "details VARCHAR NOT NULL, prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL)",
    "CREATE TABLE audit_heads (seq BIGINT, hash VARCHAR NOT NULL, signed_at VARCHAR NOT NULL, "
    "reason VARCHAR NOT NULL, key_id VARCHAR NOT NULL, signature VARCHAR NOT NULL)",
]]
_COLUMNS = "seq, ts, actor, action, subject, details, prev_hash, hash"
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
PAGE = 5000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "seq": int(row["seq"]), "details": json.loads(row["details"])}


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as con:
            migrate(con, "audit", MIGRATIONS)

    # ---------------------------------------------------------------- writes

    def append(self, actor: str, action: str, subject: str,
               details: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.db.transaction() as con:
            return self.append_in(con, actor, action, subject, details)

    def append_in(self, con: duckdb.DuckDBPyConnection, actor: str, action: str, subject: str,
                  details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append inside the caller's ``Database.transaction()``."""
        if not actor or len(actor) > 200:
            raise InvalidRequest("an audit actor must be 1 to 200 characters")
        if not _NAME.match(action):
            raise InvalidRequest(f"audit action {action!r} must match {_NAME.pattern}")
        try:
            details_text = chain.canonical(details or {}).decode()
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"audit details are not plain JSON: {exc}") from exc
        last = rows(con, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        entry: dict[str, Any] = {
            "seq": int(last[0]["seq"]) + 1 if last else 1, "ts": now_iso(), "actor": actor,
            "action": action, "subject": subject, "details": json.loads(details_text),
            "prev_hash": last[0]["hash"] if last else chain.GENESIS}
        entry["hash"] = chain.entry_hash(entry)
        con.execute(f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [entry["seq"], entry["ts"], actor, action, subject, details_text,
                     entry["prev_hash"], entry["hash"]])
        return entry

    def sign_head(self, signer: Signer, reason: str) -> dict[str, Any]:
        """Sign the current head (seq None and the genesis hash for an empty log)."""
        with self.db.transaction() as con:
            last = rows(con, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq = int(last[0]["seq"]) if last else None
            hash_ = last[0]["hash"] if last else chain.GENESIS
            signed_at = now_iso()
            signature = signer.sign(chain.head_payload(seq, hash_, signed_at, signer.key_id))
            con.execute("INSERT INTO audit_heads VALUES (?, ?, ?, ?, ?, ?)",
                        [seq, hash_, signed_at, reason, signer.key_id, signature])
        return {"seq": seq, "hash": hash_, "signed_at": signed_at, "reason": reason,
                "key_id": signer.key_id, "signature": signature}

    # ---------------------------------------------------------------- reads

    def entries(self, subject: str | None = None, action: str | None = None,
                after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        where: list[str] = ["seq > ?"]
        params: list[int | str] = [after_seq]
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        return [_entry(r) for r in self.db.read(
            f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT ?", [*params, limit])]

    def between(self, first: int, last: int) -> list[dict[str, Any]]:
        """Entries first..last as stored (for an export's chain segment)."""
        return [_entry(r) for r in self.db.read(
            f"SELECT {_COLUMNS} FROM audit_log WHERE seq BETWEEN ? AND ? ORDER BY seq",
            [first, last])]

    def hash_of(self, seq: int) -> str | None:
        if seq == 0:
            return chain.GENESIS
        found = self.db.read("SELECT hash FROM audit_log WHERE seq = ?", [seq])
        return found[0]["hash"] if found else None

    def heads(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{**h, "seq": None if h["seq"] is None else int(h["seq"])}
                for h in self.db.read("SELECT * FROM audit_heads ORDER BY signed_at DESC "
                                      "LIMIT ?", [limit])]

    def _all(self) -> Iterator[dict[str, Any]]:
        after = -1  # pages by position in seq order; a gap or repeat is the walker's to see
        while True:
            page = self.db.read(f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", [after, PAGE])
            yield from (_entry(r) for r in page)
            if len(page) < PAGE:
                return
            after = int(page[-1]["seq"])

    def verify(self, public_pem: bytes | None = None) -> dict[str, Any]:
        """Recompute the chain and check every signed head; names the first broken entry."""
        heads = self.db.read("SELECT * FROM audit_heads ORDER BY signed_at")
        wanted = {int(h["seq"]) for h in heads if h["seq"] is not None}
        walker = chain.ChainWalker()
        hashes: dict[int, str] = {}  # only where a head was signed: the log may be long
        for entry in self._all():
            if not walker.feed(entry):
                break
            if entry["seq"] in wanted:
                hashes[entry["seq"]] = entry["hash"]
        result = walker.result().as_dict()
        head_problem = _check_heads(heads, hashes, walker.head_seq, public_pem)
        if result["ok"] and head_problem is not None:
            result["ok"], result["first_broken"] = False, head_problem
        result["signed_heads"] = len(heads)
        result["last_signed_head"] = heads[-1] if heads else None
        return result


def _check_heads(heads: list[dict[str, Any]], hashes: dict[int, str], last_seq: int | None,
                 public_pem: bytes | None) -> dict[str, Any] | None:
    """The first signed head that the chain contradicts, as {seq, reason}."""
    for head in heads:
        seq = None if head["seq"] is None else int(head["seq"])
        if public_pem is not None and not verify_signature(
                public_pem, chain.head_payload(seq, head["hash"], head["signed_at"],
                                               head["key_id"]), head["signature"]):
            return {"seq": seq, "reason": f"the head signed at {head['signed_at']} has an "
                                          "invalid signature"}
        if seq is None:
            continue
        if seq not in hashes and (last_seq is None or seq > last_seq):
            first = (last_seq or 0) + 1
            return {"seq": first, "reason": f"entries {first}..{seq} are missing: a head "
                                            f"signed at {head['signed_at']} covers entry {seq}"}
        if hashes.get(seq) != head["hash"]:
            return {"seq": seq, "reason": f"entry {seq} differs from the head signed at "
                                          f"{head['signed_at']}: the log was rewritten"}
    return None
