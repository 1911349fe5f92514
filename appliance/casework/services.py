"""One set of record stores per span store, built once and shared by every API request.

``records_for(store, settings)`` is called by the daemon at start (migrations, the
signing key at first start, change inference seeded before the first batch) and by
the API routes afterwards; tests call it with their own settings first.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from appliance.audit.log import AuditLog
from appliance.audit.signing import Signer
from appliance.cases.store import CaseStore
from appliance.changes.infer import ChangeInference
from appliance.changes.store import ChangeStore
from appliance.settings import Settings, load
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.casework")
SYSTEM = "system:daemon"


@dataclass
class Records:
    store: SpanStore
    settings: Settings
    audit: AuditLog
    signer: Signer
    changes: ChangeStore
    inference: ChangeInference
    cases: CaseStore

    def sign_head_if_moved(self, reason: str) -> dict[str, Any] | None:
        """Sign the chain head unless the newest signed head is already this one."""
        last = self.store.read("SELECT max(seq) AS seq FROM audit_log")[0]["seq"]
        heads = self.audit.heads(limit=1)
        if heads and heads[0]["seq"] == (None if last is None else int(last)):
            return None
        return self.audit.sign_head(self.signer, reason)


_registry: weakref.WeakKeyDictionary[SpanStore, Records] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def records_for(store: SpanStore, settings: Settings | None = None) -> Records:
    with _lock:
        found = _registry.get(store)
        if found is not None:
            return found
        s = settings or load(data_dir=store.path.parent)
        audit = AuditLog(store)
        signer, created = Signer.load_or_create(s.audit_key_file, s.audit_public_key_file)
        if created:
            audit.append(SYSTEM, "audit.key.create", f"key:{signer.key_id}",
                         {"key_id": signer.key_id, "public_key": str(s.audit_public_key_file)})
        changes = ChangeStore(store, audit)
        cases = CaseStore(store, audit, note_max_bytes=s.case_note_max_kib * 1024,
                          max_trace_ids=s.case_max_trace_ids,
                          change_lookback=timedelta(hours=s.case_change_lookback_hours))
        inference = ChangeInference(store, changes)
        store.on_insert(inference.observe)
        records = _registry[store] = Records(store, s, audit, signer, changes, inference, cases)
        return records


def sign_heads_loop(records: Records, stop: threading.Event) -> None:
    """The daemon's head signer: now, then every ``audit_sign_interval_hours``."""
    while not stop.is_set():
        try:
            records.sign_head_if_moved("daily")
        except Exception:  # keep the loop alive; the next round retries
            log.exception("signing the audit chain head failed")
        stop.wait(records.settings.audit_sign_interval_hours * 3600)


def start(store: SpanStore, settings: Settings, stop: threading.Event) -> Records:
    """Daemon start: build the records and start the head signer thread."""
    records = records_for(store, settings)
    threading.Thread(target=sign_heads_loop, args=(records, stop), daemon=True,
                     name="audit-head-signer").start()
    return records
