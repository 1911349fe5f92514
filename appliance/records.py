"""The daemon's stores of record, built once over its one DuckDB file.

The composition root (``appliance/daemon.py``) calls ``Records.open`` once and hands
the result to the API app and the background work; the CLI does the same through
``opened`` when no daemon owns the file. Nothing looks a ``Records`` up later: there is
no registry, so a second ``open`` with other settings is a second, separate object.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.audit.log import AuditLog
from appliance.audit.signing import Signer
from appliance.cases.store import CaseStore
from appliance.changes.infer import ChangeInference
from appliance.changes.store import ChangeStore
from appliance.evals.store import ensure as ensure_evaluations
from appliance.rca.worker import RcaSources, RcaWorker
from appliance.settings import Settings
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.records")
SYSTEM = "system:daemon"


@dataclass(frozen=True)
class Records:
    store: SpanStore
    settings: Settings
    audit: AuditLog
    signer: Signer
    changes: ChangeStore
    inference: ChangeInference
    cases: CaseStore
    rca: RcaWorker  # queued RCA runs; its thread runs only in the daemon (``start``)

    @classmethod
    def open(cls, store: SpanStore, settings: Settings,
             clock: Callable[[], datetime] | None = None) -> Records:
        """Build the record stores on ``store``: migrations run, the audit signing key is
        made at first start (and audited), and change inference watches every batch.
        ``clock`` (tests): the cases' "now", by default the system's UTC time."""
        audit = AuditLog(store.db)
        signer, created = Signer.load_or_create(settings.audit_key_file,
                                                settings.audit_public_key_file)
        if created:
            audit.append(SYSTEM, "audit.key.create", f"key:{signer.key_id}",
                         {"key_id": signer.key_id,
                          "public_key": str(settings.audit_public_key_file)})
        ensure_evaluations(store.db)  # detectors and RCA read the built-in scores' table
        changes = ChangeStore(store.db, audit)
        cases = CaseStore(store.db, audit, note_max_bytes=settings.case_note_max_kib * 1024,
                          max_trace_ids=settings.case_max_trace_ids,
                          change_lookback=timedelta(hours=settings.case_change_lookback_hours),
                          clock=clock)
        inference = ChangeInference(store, changes)
        store.on_insert(inference.observe)
        rca = RcaWorker(RcaSources(store, changes, cases, settings))
        cases.on_action(rca.on_case)  # a case that opens or gains evidence is queued
        return cls(store, settings, audit, signer, changes, inference, cases, rca)

    def sign_head_if_moved(self, reason: str) -> dict[str, Any] | None:
        """Sign the chain head unless the newest signed head is already this one."""
        last = self.store.read("SELECT max(seq) AS seq FROM audit_log")[0]["seq"]
        heads = self.audit.heads(limit=1)
        if heads and heads[0]["seq"] == (None if last is None else int(last)):
            return None
        return self.audit.sign_head(self.signer, reason)


@contextlib.contextmanager
def opened(settings: Settings) -> Iterator[Records]:
    """The record stores on the DuckDB file, for a CLI command when no daemon owns it
    (DuckDB's file lock keeps the file to one process)."""
    store = SpanStore(settings.span_db, memory_limit=settings.span_store_memory_limit)
    try:
        yield Records.open(store, settings)
    finally:
        store.close()


def sign_heads_loop(records: Records, stop: threading.Event) -> None:
    """The daemon's head signer: now, then every ``audit_sign_interval_hours``."""
    while not stop.is_set():
        try:
            records.sign_head_if_moved("daily")
        except Exception:  # keep the loop alive; the next round retries
            log.exception("signing the audit chain head failed")
        stop.wait(records.settings.audit_sign_interval_hours * 3600)
