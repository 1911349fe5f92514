"""Cases in the daemon's DuckDB (table ``cases``): one JSON document per case plus the
columns lists filter on. Every change writes the case and its audit entry in one
transaction, so nothing is half-written and nothing goes unaudited.

Dedup: a case's ``signature`` is ``service|failure_type|<detector signature>``. A new
detection whose signature matches an active case (open, investigating, mitigated)
appends its evidence there instead of opening another case.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from pydantic import BaseModel

from appliance.audit.log import AuditLog
from appliance.cases import transitions
from appliance.cases.model import (
    STATUSES,
    UNDETERMINED,
    Assign,
    Case,
    CaseContext,
    CaseOpen,
    ChangeRef,
    Note,
    NoteEntry,
    Rca,
    RcaRun,
    Resolution,
    Resolve,
    Status,
    StatusChange,
    TimelineEntry,
    Timestamp,
    Verification,
    Verify,
)
from appliance.domain.taxonomy import FAILURE_TYPES
from appliance.errors import ContentTooLarge, InvalidRequest, NotFound
from appliance.store.database import Database, migrate, rows
from appliance.times import iso, optional_time, parse_time

MIGRATIONS = [[
    "CREATE TABLE cases (id VARCHAR PRIMARY KEY, service VARCHAR NOT NULL, "
    "failure_type VARCHAR NOT NULL, signature VARCHAR NOT NULL, status VARCHAR NOT NULL, "
    "opened_at TIMESTAMPTZ NOT NULL, resolved_at TIMESTAMPTZ, doc VARCHAR NOT NULL)",
]]
_ACTIVE_SQL = ", ".join(f"'{s}'" for s in transitions.ACTIVE)  # fixed names, not input
MAX_SIGNALS, MAX_WINDOWS = 200, 20
# What an RCA run's audit entry copies from its details (the rest is in the case).
RCA_AUDITED = ("engine", "status", "model_name", "model_sha256", "evidence_ids")
log = logging.getLogger("tracehold.cases")
Listener = Callable[[str, Case], object]


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> Timestamp:
    text = iso(at)
    assert text is not None  # iso() answers None only for None
    return text


def _dumps(models: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """Models as the plain JSON an audit entry carries."""
    return [m.model_dump(mode="json") for m in models]


class CaseStore:
    def __init__(self, db: Database, audit: AuditLog, note_max_bytes: int = 64 * 1024,
                 max_trace_ids: int = 1000, change_lookback: timedelta = timedelta(hours=24),
                 clock: Callable[[], datetime] | None = None) -> None:
        self.db, self.audit = db, audit
        self.note_max_bytes, self.max_trace_ids = note_max_bytes, max_trace_ids
        self.change_lookback = change_lookback
        self.clock = clock or _now  # "now" for every time the store stamps on a case
        self._listeners: list[Listener] = []
        with db.transaction() as con:
            migrate(con, "cases", MIGRATIONS)

    # ---------------------------------------------------------------- open / dedup

    def open(self, body: CaseOpen, actor: str) -> Case:
        """Open a case, or add the evidence to the active case with the same signature.
        Returns the case with ``deduplicated`` true when it joined one."""
        now = self.clock()
        onset = optional_time(body.onset_at, "onset_at") or now
        for w in body.metric_windows:
            parse_time(w.start, "metric_windows.start")
            parse_time(w.end, "metric_windows.end")
        signature = f"{body.service}|{body.failure_type}|{body.signature or body.failure_type}"
        with self.db.transaction() as con:
            found = rows(con, "SELECT doc FROM cases WHERE signature = ? AND status IN "
                              f"({_ACTIVE_SQL}) ORDER BY opened_at DESC LIMIT 1", [signature])
            if found:
                case = Case.model_validate_json(found[0]["doc"])
                details = self._add_evidence(case, body, now)
                self._save(con, case)
                self.audit.append_in(con, actor, "case.evidence", case.id, details)
                deduplicated = True
            else:
                case = self._new(con, body, signature, onset, now)
                con.execute("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                            [case.id, case.service, str(case.failure_type), signature,
                             case.status, now, case.model_dump_json()])
                self.audit.append_in(con, actor, "case.open", case.id, {
                    "service": case.service, "failure_type": case.failure_type,
                    "signature": signature, "detected_by": case.detected_by,
                    "signals": _dumps(case.signals), "trace_ids": case.trace_ids[:20]})
                deduplicated = False
        answer = self.get(case.id)
        answer.deduplicated = deduplicated
        self._notify("case.evidence" if deduplicated else "case.open", answer)
        return answer

    def on_action(self, listener: Listener) -> None:
        """Call ``listener(action, case)`` after each committed case action (the audit
        action: ``case.open``, ``case.evidence``, ``case.resolve``, ``rca.run``, ...), e.g.
        to queue an RCA run. A listener's error is logged; the action has succeeded."""
        self._listeners.append(listener)

    def _notify(self, action: str, case: Case) -> None:
        for listener in self._listeners:
            try:
                listener(action, case)
            except Exception:  # committed: never fail the case action for this
                log.exception("case listener %r failed on %s", listener, action)

    def _new(self, con: duckdb.DuckDBPyConnection, body: CaseOpen, signature: str,
             onset: datetime, now: datetime) -> Case:
        window = [body.service, onset - self.change_lookback, max(now, onset)]
        changes = rows(con, "SELECT * FROM change_events WHERE service = ? AND changed_at >= ? "
                            "AND changed_at <= ? ORDER BY changed_at", window)
        trace_ids = list(dict.fromkeys(body.trace_ids))
        return Case(
            id="case_" + secrets.token_hex(4),
            title=body.title or f"{body.failure_type.replace('_', ' ')} in {body.service}",
            service=body.service, failure_type=body.failure_type,
            secondary_types=body.secondary_types, signature=signature,
            opened_at=_stamp(now), onset_at=_stamp(onset), updated_at=_stamp(now),
            detected_by=body.detected_by and body.detected_by.removeprefix("detector:"),
            signals=body.signals,
            trace_ids=trace_ids[:self.max_trace_ids], trace_ids_total=len(trace_ids),
            context=CaseContext(
                trace_ids=trace_ids[:self.max_trace_ids], metric_windows=body.metric_windows,
                detector=body.context,
                changes=[ChangeRef(id=c["id"], kind=c["kind"], service=c["service"],
                                   from_=c["from_value"], to=c["to_value"],
                                   at=iso(c["changed_at"]), source=c["source"])
                         for c in changes]),
            notes=[])

    def _add_evidence(self, case: Case, body: CaseOpen, now: datetime) -> dict[str, Any]:
        known = set(case.trace_ids)
        new_ids = [t for t in dict.fromkeys(body.trace_ids) if t not in known]
        room = max(0, self.max_trace_ids - len(case.trace_ids))
        case.trace_ids += new_ids[:room]
        case.trace_ids_total += len(new_ids)
        signals = {(s.name, s.window): s for s in case.signals}
        for s in body.signals:  # the newest reading of a signal replaces the older one
            signals[(s.name, s.window)] = s
        case.signals = list(signals.values())[-MAX_SIGNALS:]
        if case.context is not None:  # a stored case always has one
            windows = case.context.metric_windows + body.metric_windows
            case.context.metric_windows = windows[-MAX_WINDOWS:]
        case.occurrences += 1
        case.updated_at = _stamp(now)
        return {"new_trace_ids": new_ids[:20], "new_trace_ids_total": len(new_ids),
                "signals": _dumps(body.signals), "occurrences": case.occurrences}

    # ---------------------------------------------------------------- actions

    def assign(self, case_id: str, body: Assign, actor: str) -> Case:
        def change(case: Case) -> dict[str, Any]:
            before, case.assignee = case.assignee, body.assignee
            return {"from": before, "to": body.assignee}
        return self._mutate(case_id, actor, "case.assign", change)

    def set_status(self, case_id: str, body: StatusChange, actor: str) -> Case:
        def change(case: Case) -> dict[str, Any]:
            transitions.check(case.status, body.status, "status")
            before, case.status = case.status, body.status
            return {"from": before, "to": body.status, "reason": body.reason}
        return self._mutate(case_id, actor, "case.status", change)

    def add_note(self, case_id: str, body: Note, actor: str) -> Case:
        size = len(body.text.encode("utf-8"))
        if size > self.note_max_bytes:
            raise ContentTooLarge(f"a note is at most {self.note_max_bytes} bytes; this one "
                                  f"is {size}")

        def change(case: Case) -> dict[str, Any]:
            notes = case.notes if case.notes is not None else []
            note = NoteEntry(id=f"note_{len(notes) + 1}", at=_stamp(self.clock()), author=actor,
                             text=body.text)
            case.notes = [*notes, note]
            # the audit entry proves the text (its hash) without copying it
            return {"note_id": note.id, "bytes": size,
                    "sha256": hashlib.sha256(body.text.encode("utf-8")).hexdigest()}
        return self._mutate(case_id, actor, "case.note", change)

    def resolve(self, case_id: str, body: Resolve, actor: str) -> Case:
        def change(case: Case) -> dict[str, Any]:
            transitions.check(case.status, "resolved", "resolve")
            before, case.status = case.status, "resolved"
            case.resolution = Resolution(root_cause=body.root_cause,
                                         fix_applied=body.fix_applied,
                                         resolved_at=_stamp(self.clock()), resolved_by=actor,
                                         verified_at=None)
            return {"from": before, "to": "resolved", "root_cause": body.root_cause,
                    "fix_applied": body.fix_applied}
        return self._mutate(case_id, actor, "case.resolve", change)

    def verify(self, case_id: str, body: Verify, actor: str) -> Case:
        """Record a verification check: back to baseline -> verified; else reopened."""
        def change(case: Case) -> dict[str, Any]:
            target: Status = "verified" if body.back_to_baseline else "investigating"
            if case.status != "resolved":
                transitions.check(case.status, "verified", "verify")
            check = Verification(at=_stamp(self.clock()), actor=actor,
                                 back_to_baseline=body.back_to_baseline, checks=body.checks,
                                 detail=body.detail)
            case.verifications.append(check)
            if body.back_to_baseline:
                case.resolution.verified_at = check.at
            before, case.status = case.status, target
            return {"from": before, "to": target, "back_to_baseline": body.back_to_baseline,
                    "checks": _dumps(check.checks)}
        return self._mutate(case_id, actor, "case.verify", change)

    def set_rca(self, case_id: str, body: Rca, actor: str) -> Case:
        if body.confidence < 0.5 and body.root_cause not in (None, UNDETERMINED):
            raise InvalidRequest(f"confidence {body.confidence} is below 0.5: root_cause must "
                                 f"be null or {UNDETERMINED!r}, never a guess")
        if body.confidence >= 0.5 and not body.root_cause:
            raise InvalidRequest("root_cause is required when confidence is 0.5 or more")
        ranks = [h.rank for h in body.hypotheses]
        if len(set(ranks)) != len(ranks):
            raise InvalidRequest("hypotheses must have distinct ranks")

        def change(case: Case) -> dict[str, Any]:
            root = body.root_cause if body.confidence >= 0.5 else UNDETERMINED
            runs = (case.rca.runs if case.rca else 0) + 1
            case.root_cause, case.confidence = root, body.confidence
            case.hypotheses = sorted(body.hypotheses, key=lambda h: h.rank)
            case.suggested_fixes = list(body.suggested_fixes)
            case.rca = RcaRun(ran_at=_stamp(self.clock()), ran_by=actor, runs=runs,
                              model=body.model, failure_type=body.failure_type,
                              secondary_types=body.secondary_types, details=body.details)
            return {"root_cause": root, "confidence": body.confidence, "run": runs,
                    "failure_type": body.failure_type, "hypotheses": len(body.hypotheses),
                    "suggested_fixes": len(body.suggested_fixes), "model": body.model,
                    **{k: body.details[k] for k in RCA_AUDITED if k in body.details}}
        return self._mutate(case_id, actor, "rca.run", change)

    def _mutate(self, case_id: str, actor: str, action: str,
                change: Callable[[Case], dict[str, Any]]) -> Case:
        with self.db.transaction() as con:
            case = self._load(con, case_id)
            details = change(case)
            case.updated_at = _stamp(self.clock())
            self._save(con, case)
            self.audit.append_in(con, actor, action, case_id, details)
        answer = self.get(case_id)
        self._notify(action, answer)
        return answer

    # ---------------------------------------------------------------- storage

    def _load(self, con: duckdb.DuckDBPyConnection, case_id: str) -> Case:
        found = rows(con, "SELECT doc FROM cases WHERE id = ?", [case_id])
        if not found:
            raise NotFound(f"no case with id {case_id!r}")
        return Case.model_validate_json(found[0]["doc"])

    def _save(self, con: duckdb.DuckDBPyConnection, case: Case) -> None:
        resolved = case.closed_at
        con.execute("UPDATE cases SET status = ?, failure_type = ?, resolved_at = ?, doc = ? "
                    "WHERE id = ?", [case.status, str(case.failure_type),
                                     parse_time(resolved, "resolved_at") if resolved else None,
                                     case.model_dump_json(), case.id])

    # ---------------------------------------------------------------- reads

    def get(self, case_id: str) -> Case:
        found = self.db.read("SELECT doc FROM cases WHERE id = ?", [case_id])
        if not found:
            raise NotFound(f"no case with id {case_id!r}")
        case = Case.model_validate_json(found[0]["doc"])
        case.timeline = self.timeline(case_id)
        return case

    def timeline(self, case_id: str) -> list[TimelineEntry]:
        """The case's audit entries, oldest first."""
        out: list[TimelineEntry] = []
        after = 0
        while True:
            page = self.audit.entries(subject=case_id, after_seq=after, limit=1000)
            out += [TimelineEntry(seq=e["seq"], at=e["ts"], actor=e["actor"], action=e["action"],
                                  details=e["details"]) for e in page]
            if len(page) < 1000:
                return out
            after = page[-1]["seq"]

    def list(self, status: str | None = None, service: str | None = None,
             failure_type: str | None = None, limit: int = 200) -> list[Case]:
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
        if failure_type is not None and failure_type not in FAILURE_TYPES:
            raise InvalidRequest(f"failure_type must be one of {', '.join(FAILURE_TYPES)}")
        where, params = ["TRUE"], []
        for clause, value in (("status = ?", status), ("service = ?", service),
                              ("failure_type = ?", failure_type)):
            if value is not None:
                where.append(clause)
                params.append(value)
        found = self.db.read(f"SELECT doc FROM cases WHERE {' AND '.join(where)} "
                             "ORDER BY opened_at DESC LIMIT ?", [*params, limit])
        out = []
        for r in found:
            case = Case.model_validate_json(r["doc"])
            case.context = case.notes = None  # a list answer leaves them out
            out.append(case)
        return out

    def in_period(self, start: datetime, end: datetime) -> builtins.list[Case]:
        """Cases opened in [start, end) (the compliance report's incidents)."""
        found = self.db.read("SELECT doc FROM cases WHERE opened_at >= ? AND opened_at < ? "
                             "ORDER BY opened_at", [start, end])
        return [Case.model_validate_json(r["doc"]) for r in found]
