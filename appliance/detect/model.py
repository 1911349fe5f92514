"""What a detector reports: a finding, with the signals that distinguish its type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from appliance.domain.taxonomy import FailureType


@dataclass(frozen=True)
class Signal:
    name: str
    value: float | str | None
    baseline: float | str | None
    window: str  # e.g. "recent 90s vs baseline 1800s"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Finding:
    failure_type: FailureType
    service: str
    signature: str  # one incident, one case: dedup key together with the service
    signals: list[Signal]
    trace_ids: list[str] = field(default_factory=list)
    onset_at: datetime | None = None
    detector: str = ""  # who found it: the detector of its failure type unless named
    context: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.detector = self.detector or str(self.failure_type)

    def as_case_request(self) -> dict[str, Any]:
        """The body a case store takes to open (or add evidence to) a case."""
        return {
            "service": self.service, "failure_type": str(self.failure_type),
            "signature": self.signature, "signals": [s.as_dict() for s in self.signals],
            "trace_ids": self.trace_ids,
            "onset_at": self.onset_at.isoformat() if self.onset_at else None,
            "detected_by": f"detector:{self.detector}",
            "context": self.context,
        }
