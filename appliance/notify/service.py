"""The notification parts built once over the daemon's records (the composition root
calls ``Notifications.open``), and the test message of `tracehold notify test`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.notify import config
from appliance.notify.deliver import deliver
from appliance.notify.message import case_link
from appliance.notify.outbox import Outbox
from appliance.notify.tickets import Tickets
from appliance.notify.worker import NotifyWorker
from appliance.records import Records
from appliance.settings import Settings
from appliance.times import iso


@dataclass(frozen=True)
class Notifications:
    outbox: Outbox
    tickets: Tickets
    worker: NotifyWorker

    @classmethod
    def open(cls, records: Records, clock: Callable[[], datetime] | None = None,
             wall: Callable[[], float] = time.time) -> Notifications:
        outbox = Outbox(records.store.db, clock)
        tickets = Tickets(records.store.db, records.audit, records.cases, records.settings,
                          clock)
        return cls(outbox, tickets, NotifyWorker(records.settings, records.audit,
                                                 records.cases, outbox, tickets, wall))

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.worker.run, args=(stop,), daemon=True,
                                  name="notify")
        thread.start()
        return thread


def send_test(s: Settings, name: str) -> None:
    """Send a test message to destination ``name`` now, outside the outbox."""
    dest = config.destination(s, name)
    now = datetime.now(UTC)
    msg = {"event": "test", "at": iso(now), "case_id": "case_test", "title": "Test message",
           "type": "test", "service": "tracehold", "status": "open", "onset": iso(now),
           "diagnosis": None, "confidence": None, "resolution": None,
           "link": case_link(s.notify.console_url, "case_test")}
    deliver(dest, config.secrets_of(s).get(name), msg, now=time.time(), delivery="test",
            timeout=s.notify.timeout_s)
