"""The case model. Detectors open cases (``CaseOpen``), the RCA worker fills ``Rca``,
people assign, annotate, resolve; a verification check closes the loop.

Stored as one JSON document per case (plus columns to filter on); the timeline is
the case's audit entries, so the two cannot disagree.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FailureType = Literal["hallucination", "retrieval_drift", "coherence_degradation", "agent_loop",
                      "prompt_regression", "context_overflow", "provider_error",
                      "latency_cost_regression"]
FAILURE_TYPES: tuple[str, ...] = FailureType.__args__  # type: ignore[attr-defined]
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
