"""The rules-only RCA of one case, as the ``Rca`` body ``CaseStore.set_rca`` takes:
the baseline answer, and the fallback when no model runs. Not wired into the daemon
here; the worker that runs it comes later."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from appliance.cases.model import UNDETERMINED, Hypothesis, Rca
from appliance.cases.store import CaseStore
from appliance.changes.store import ChangeStore
from appliance.rca.evidence import Evidence, collect
from appliance.rca.rules import Diagnosis, diagnose
from appliance.settings import Settings
from appliance.store.spans import SpanStore

ENGINE = "rules"


class Sources(Protocol):
    """What the RCA reads: ``appliance.records.Records`` has these (it sits above this
    package, so it is named by shape, not imported)."""

    @property
    def store(self) -> SpanStore: ...
    @property
    def changes(self) -> ChangeStore: ...
    @property
    def cases(self) -> CaseStore: ...
    @property
    def settings(self) -> Settings: ...


def rules_rca(sources: Sources, case_id: str, now: datetime | None = None) -> Rca:
    """Collect the case's evidence and diagnose it with the rules alone."""
    case = sources.cases.get(case_id)
    ev = collect(sources.store, sources.changes, case, sources.settings.detect, now)
    return as_rca(ev, diagnose(ev))


def as_rca(ev: Evidence, d: Diagnosis) -> Rca:
    """Below a confidence of 0.5 the root cause is 'unable to determine root cause' and
    the hypotheses are listed as unconfirmed, never as the answer."""
    prefix = "" if d.determined else "unconfirmed: "
    hypotheses = [Hypothesis(rank=i, cause=f"{prefix}{h.summary}"[:4000],
                             failure_type=d.failure_type, confidence=h.score,
                             evidence_ids=h.evidence_ids[:500])
                  for i, h in enumerate(d.hypotheses, 1)]
    root = UNDETERMINED
    if d.determined and d.hypotheses:
        root = f"{d.failure_type.replace('_', ' ')}: {d.hypotheses[0].summary}"[:8000]
    return Rca(root_cause=root, confidence=d.confidence, hypotheses=hypotheses,
               failure_type=d.failure_type, secondary_types=d.secondary_types, model=None,
               details={"engine": ENGINE, **d.as_dict(), "evidence": ev.as_dict()})
