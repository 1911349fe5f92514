"""The hash chain, as pure functions: the daemon, ``audit verify`` and the offline
``verify-export`` all recompute it with this one module.

An entry's hash is SHA-256 over the canonical encoding (UTF-8 JSON, keys sorted, no
spaces, NaN refused) of ``{seq, ts, actor, action, subject, details, prev_hash}``;
``prev_hash`` is the previous entry's hash, 64 zeros for entry 1. Changing, removing
or reordering any entry breaks the chain at that entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("seq", "ts", "actor", "action", "subject", "details", "prev_hash")
ALGORITHM = ("sha256 over UTF-8 JSON with sorted keys and no spaces of "
             "{seq, ts, actor, action, subject, details, prev_hash}")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: entry[k] for k in HASHED_FIELDS})).hexdigest()


@dataclass
class ChainCheck:
    ok: bool
    entries: int
    head_seq: int | None
    head_hash: str
    broken_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        broken = ({"seq": self.broken_seq, "reason": self.reason}
                  if self.broken_seq is not None else None)
        return {"ok": self.ok, "entries": self.entries,
                "head": {"seq": self.head_seq, "hash": self.head_hash},
                "first_broken": broken}


class ChainWalker:
    """Checks entries one at a time in stored order (so a long log can be paged); stops
    at the first broken entry and names it."""

    def __init__(self, prev_hash: str = GENESIS, first_seq: int = 1) -> None:
        self.expected, self.prev = first_seq, prev_hash
        self.count, self.head_seq = 0, None if first_seq == 1 else first_seq - 1
        self.broken: tuple[int, str] | None = None

    def feed(self, entry: Mapping[str, Any]) -> bool:
        """Check one entry; False once the chain is broken."""
        if self.broken is not None:
            return False
        seq = int(entry["seq"])
        if seq > self.expected:
            gap = (f"entry {self.expected} is missing" if seq == self.expected + 1
                   else f"entries {self.expected}..{seq - 1} are missing")
            self.broken = (self.expected, f"{gap}: entry {seq} follows entry "
                                          f"{self.expected - 1} (deleted)")
        elif seq < self.expected:
            self.broken = (seq, f"entry {seq} appears again after entry {self.expected - 1}")
        elif entry["prev_hash"] != self.prev:
            before = f"entry {seq - 1}" if seq > 1 else "the start of the chain"
            self.broken = (seq, f"entry {seq} does not link to {before}: entries were "
                                "reordered, inserted or changed before it")
        elif entry_hash(entry) != entry["hash"]:
            self.broken = (seq, f"entry {seq} ({entry['action']} {entry['subject']}) does not "
                                "match its hash: its content was changed")
        if self.broken is not None:
            return False
        self.prev, self.head_seq = str(entry["hash"]), seq
        self.expected, self.count = seq + 1, self.count + 1
        return True

    def result(self) -> ChainCheck:
        if self.broken is not None:
            return ChainCheck(False, self.count, self.head_seq, self.prev, *self.broken)
        return ChainCheck(True, self.count, self.head_seq, self.prev)


def check_chain(entries: Iterable[Mapping[str, Any]], prev_hash: str = GENESIS,
                first_seq: int = 1) -> ChainCheck:
    walker = ChainWalker(prev_hash, first_seq)
    for entry in entries:
        if not walker.feed(entry):
            break
    return walker.result()


def head_payload(seq: int | None, hash_: str, signed_at: str, key_id: str) -> bytes:
    """What a signed head signs."""
    return canonical({"seq": seq, "hash": hash_, "signed_at": signed_at, "key_id": key_id})
