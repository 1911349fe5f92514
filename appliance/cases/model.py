"""The case model. Detectors open cases (``CaseOpen``), the RCA worker fills ``Rca``,
people assign, annotate, resolve; a verification check closes the loop.

``Case`` is the case itself: stored as one JSON document per case (plus columns to
filter on), answered by the API as the same JSON, and parsed back into ``Case`` by
every reader (CLI, console, export, report). The timeline is the case's audit
entries, so the two cannot disagree.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from appliance.domain.taxonomy import FailureType

Status = Literal["open", "investigating", "mitigated", "resolved", "verified"]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]
UNDETERMINED = "unable to determine root cause"
_TRACE_ID = r"^[0-9a-fA-F]{32}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Signal(_Strict):
    name: str = Field(min_length=1, max_length=200)
    value: float | str | None  # a detector may report a category (e.g. a model name)
    baseline: float | str | None = None
    window: str | None = Field(None, max_length=200, description="e.g. '15m' or an interval")


class MetricWindow(_Strict):
    """A metric around the onset: the PromQL, its range, and [unix seconds, value] points."""

    name: str | None = Field(None, max_length=100)
    query: str = Field(min_length=1, max_length=4000)
    start: str
    end: str
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=20_000)


class Hypothesis(_Strict):
    rank: int = Field(ge=1)
    cause: str = Field(min_length=1, max_length=4000)
    failure_type: FailureType | None = None
    confidence: float = Field(ge=0, le=1)
    evidence_ids: list[str] = Field(default_factory=list, max_length=500)


class SuggestedFix(_Strict):
    title: str = Field(min_length=1, max_length=500)
    detail: str = Field("", max_length=8000)
    source: str | None = Field(None, max_length=500, description="e.g. a knowledge base entry")


class CaseOpen(_Strict):
    """Body of POST /api/v1/cases."""

    service: str = Field(min_length=1, max_length=200)
    failure_type: FailureType
    signature: str | None = Field(None, max_length=500,
                                  description="the detector's failure signature (dedup key)")
    title: str | None = Field(None, max_length=500)
    trace_ids: list[str] = Field(default_factory=list, max_length=1000)
    signals: list[Signal] = Field(default_factory=list, max_length=200)
    metric_windows: list[MetricWindow] = Field(default_factory=list, max_length=20)
    onset_at: str | None = None
    detected_by: str | None = Field(None, max_length=128,
                                    description="detector name (with or without `detector:`); "
                                                "absent when a person opens it")
    secondary_types: list[FailureType] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict,
                                    description="the detector's own context, kept as given")

    @property
    def detector_actor(self) -> str | None:
        if not self.detected_by:
            return None
        name = self.detected_by.removeprefix("detector:")
        return f"detector:{name}"

    @field_validator("trace_ids")
    @classmethod
    def _hex_ids(cls, ids: list[str]) -> list[str]:
        bad = [t for t in ids if not re.match(_TRACE_ID, t)]
        if bad:
            raise ValueError(f"not a 32-hex-digit trace id: {bad[0]!r}")
        return [t.lower() for t in ids]


class StatusChange(_Strict):
    status: Status
    reason: str | None = Field(None, max_length=4000)


class Assign(_Strict):
    assignee: str | None = Field(max_length=200, description="null to unassign")


class Note(_Strict):
    text: str = Field(min_length=1)


class Resolve(_Strict):
    root_cause: str = Field(min_length=1, max_length=8000)
    fix_applied: str = Field(min_length=1, max_length=8000)


class Check(_Strict):
    signal: str = Field(min_length=1, max_length=200)
    value: float
    baseline: float | None = None


class Verify(_Strict):
    """A verification check: is the signal back to its baseline?"""

    back_to_baseline: bool
    checks: list[Check] = Field(default_factory=list, max_length=200)
    detail: str | None = Field(None, max_length=4000)


class Rca(_Strict):
    """Body of PUT /api/v1/cases/{id}/rca: one RCA run's result."""

    root_cause: str | None = Field(None, max_length=8000)
    confidence: float = Field(ge=0, le=1)
    hypotheses: list[Hypothesis] = Field(default_factory=list, max_length=50)
    suggested_fixes: list[SuggestedFix] = Field(default_factory=list, max_length=50)
    failure_type: FailureType | None = None
    secondary_types: list[FailureType] = Field(default_factory=list)
    model: str | None = Field(None, max_length=200)
    details: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- the case

# Times in a case are ISO 8601 UTC text with a Z (appliance.times.iso), kept as text so a
# case read back serialises to exactly the JSON it was stored and answered as.
Timestamp = str


class ChangeRef(_Strict):
    """A change event of the service near the onset, copied into the case when it opened."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)
    id: str
    kind: str
    service: str
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    at: Timestamp | None = None
    source: str


class CaseContext(_Strict):
    trace_ids: list[str] = Field(default_factory=list)
    metric_windows: list[MetricWindow] = Field(default_factory=list)
    detector: dict[str, Any] = Field(default_factory=dict,
                                     description="the detector's own context, kept as given")
    changes: list[ChangeRef] = Field(default_factory=list)


class NoteEntry(_Strict):
    id: str
    at: Timestamp
    author: str
    text: str


class RcaRun(_Strict):
    """The latest RCA run: who ran it, when, how many runs so far."""

    ran_at: Timestamp
    ran_by: str
    runs: int = Field(ge=1)
    model: str | None = None
    failure_type: FailureType | None = None
    secondary_types: list[FailureType] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class Resolution(_Strict):
    root_cause: str | None = None
    fix_applied: str | None = None
    resolved_at: Timestamp | None = None
    resolved_by: str | None = None
    verified_at: Timestamp | None = None


class Verification(_Strict):
    """One recorded verification check (the ``Verify`` body, with who and when)."""

    at: Timestamp
    actor: str
    back_to_baseline: bool
    checks: list[Check] = Field(default_factory=list)
    detail: str | None = None


class TimelineEntry(_Strict):
    """One audit entry of the case."""

    seq: int
    at: Timestamp
    actor: str
    action: str
    details: dict[str, Any] = Field(default_factory=dict)


def _absent(value: object) -> bool:
    return value is None


class Case(_Strict):
    """One case, as stored and as the API answers it (field order is the JSON's order).

    ``context`` and ``notes`` are None in list answers (left out to keep lists small);
    ``timeline`` is filled when a case is read, never stored; ``deduplicated`` only on
    the answer to an open. A None there leaves the key out of the JSON.
    """

    id: str
    title: str
    service: str
    failure_type: FailureType
    secondary_types: list[FailureType] = Field(default_factory=list)
    signature: str
    status: Status = "open"
    assignee: str | None = None
    opened_at: Timestamp
    onset_at: Timestamp
    updated_at: Timestamp
    occurrences: int = Field(1, ge=1)
    detected_by: str | None = None
    signals: list[Signal] = Field(default_factory=list)
    trace_ids: list[str] = Field(default_factory=list)
    trace_ids_total: int = Field(0, ge=0)
    context: CaseContext | None = Field(None, exclude_if=_absent)
    notes: list[NoteEntry] | None = Field(None, exclude_if=_absent)
    root_cause: str | None = None
    confidence: float | None = None
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    suggested_fixes: list[SuggestedFix] = Field(default_factory=list)
    rca: RcaRun | None = None
    resolution: Resolution = Field(default_factory=Resolution)
    verifications: list[Verification] = Field(default_factory=list)
    timeline: list[TimelineEntry] | None = Field(None, exclude_if=_absent)
    deduplicated: bool | None = Field(None, exclude_if=_absent)

    @property
    def provider(self) -> str | None:
        """The provider a provider-scoped detection named (its blast radius), if any."""
        value = (self.context.detector if self.context else {}).get("provider")
        return value if isinstance(value, str) else None

    @property
    def closed_at(self) -> Timestamp | None:
        """When it was resolved, while it stays resolved or verified (None once reopened:
        ``resolution`` keeps the last resolution either way)."""
        return self.resolution.resolved_at if self.status in ("resolved", "verified") else None
