"""The delivery thread of the daemon: turns new audit entries of cases into outbox
messages, then sends each destination's due message, oldest first.

It reads the audit log from its own cursor (``Outbox.cursor``) rather than being called
by the case store: every case action is already there with its sequence number, the
cursor moves in the same transaction as the messages it produced, and so a restart
resumes exactly where the last run stopped. On the very first start the cursor is set
to the log's end: cases from before notifications existed are not announced.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from appliance.audit.log import AuditLog
from appliance.cases.store import CaseStore
from appliance.errors import NotFound, TraceholdError
from appliance.notify import config, message
from appliance.notify.deliver import deliver
from appliance.notify.outbox import NewMessage, Outbox
from appliance.notify.routing import event_of, wants
from appliance.notify.tickets import Tickets
from appliance.settings import Settings

log = logging.getLogger("tracehold.notify")
TICKET = "ticket"  # the outbox destination of ticket comments
TICKET_MAX_TRIES = 12
PAGE = 500


class NotifyWorker:
    def __init__(self, settings: Settings, audit: AuditLog, cases: CaseStore, outbox: Outbox,
                 tickets: Tickets, wall: Callable[[], float] = time.time) -> None:
        self.settings, self.audit, self.cases = settings, audit, cases
        self.outbox, self.tickets = outbox, tickets
        self.wall = wall  # the webhook timestamp: real time even when the outbox clock is not
        # cached so that a round at rest costs one indexed read (the audit log's last seq)
        self._cursor: int | None = None
        self._next_due: datetime | None = None
        self._due_known = False

    # ---------------------------------------------------------------- audit -> outbox

    def enqueue_new(self) -> int:
        """Messages for the audit entries after the cursor; how many were stored."""
        last = int(self.audit.db.read("SELECT max(seq) AS seq FROM audit_log")[0]["seq"] or 0)
        if self._cursor is None:
            self._cursor = self.outbox.cursor()
        if self._cursor is None:  # the very first start
            self.outbox.add([], last)
            self._cursor = last
            return 0
        stored = 0
        while self._cursor < last:
            entries = self.audit.entries(after_seq=self._cursor, limit=PAGE)
            if not entries:
                break
            messages = [m for e in entries for m in self._messages(e)]
            self.outbox.add(messages, entries[-1]["seq"])
            self._cursor = entries[-1]["seq"]
            stored += len(messages)
        return stored

    def _messages(self, entry: dict[str, Any]) -> list[NewMessage]:
        event = event_of(entry)
        if event is None or (event == "diagnosis" and not self._new_diagnosis(entry)):
            return []
        try:
            case = self.cases.get(entry["subject"])
        except NotFound:
            return []
        payload = message.build(event, case, self.settings.notify.console_url, entry["ts"])
        message.as_of(payload, entry["details"])  # the event's own facts, not later ones
        out = [NewMessage(d.name, event, case.id, entry["seq"], payload)
               for d in self.settings.notify.destinations if wants(d, event, case)]
        ticket = self.tickets.get(case.id)
        if event == "verified" and ticket and ticket["state"] == "created":
            out.append(NewMessage(TICKET, event, case.id, entry["seq"], payload))
        return out

    def _new_diagnosis(self, entry: dict[str, Any]) -> bool:
        """An RCA run says something new (root cause or type) compared with the case's
        previous run: the RCA re-runs as evidence joins, and people want news, not echoes."""
        before = self.audit.db.read(
            "SELECT details FROM audit_log WHERE subject = ? AND action = 'rca.run' AND seq < ? "
            "ORDER BY seq DESC LIMIT 1", [entry["subject"], entry["seq"]])
        if not before:
            return True
        old, new = json.loads(before[0]["details"]), entry["details"]
        return any(old.get(k) != new.get(k) for k in ("root_cause", "failure_type"))

    # ---------------------------------------------------------------- outbox -> world

    def deliver_due(self) -> int:
        """Send due messages until none is due now; how many were sent."""
        if self.outbox.changed.is_set() or not self._due_known:
            self.outbox.changed.clear()
            self._next_due, self._due_known = self.outbox.next_due(), True
        if self._next_due is None or self._next_due > self.outbox.clock():
            return 0  # nothing pending, or not yet time: no query
        sent = 0
        while due := self.outbox.due():
            for row in due:
                sent += self._deliver(row)
        self.outbox.changed.clear()  # our own sends; the next time is read fresh below
        self._next_due = self.outbox.next_due()
        return sent

    def _deliver(self, row: dict[str, Any]) -> bool:
        msg, name = json.loads(row["payload"]), row["destination"]
        n = self.settings.notify
        max_tries = TICKET_MAX_TRIES
        try:
            if name == TICKET:
                self.tickets.comment(row["case_id"], message.text(msg))
            else:
                dest = config.destination(self.settings, name)
                max_tries = dest.max_tries
                deliver(dest, config.secrets_of(self.settings).get(name), msg, now=self.wall(),
                        delivery=f"msg-{row['id']}", timeout=n.timeout_s)
        except TraceholdError as exc:
            state = self.outbox.failed(row["id"], exc.message, max_tries, n.backoff_base_s,
                                       n.backoff_max_s)
            log.warning("notify %s: message %s (%s of %s) failed, %s: %s", name, row["id"],
                        row["event"], row["case_id"], state, exc.message)
            return False
        except Exception as exc:  # a bug must not stop the other destinations
            log.exception("notify %s: message %s failed unexpectedly", name, row["id"])
            self.outbox.failed(row["id"], f"{type(exc).__name__}: {exc}", max_tries,
                               n.backoff_base_s, n.backoff_max_s)
            return False
        self.outbox.sent(row["id"])
        return True

    # ---------------------------------------------------------------- the thread

    def run_once(self) -> int:
        self.enqueue_new()
        return self.deliver_due()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # keep the loop alive; the next round retries
                log.exception("notification round failed")
            stop.wait(self.settings.notify.poll_interval_s)
