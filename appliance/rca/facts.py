"""The typed facts of a case (``evidence.collect`` gathers them; ``rules`` reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from appliance.domain.taxonomy import FailureType


class FactKind(StrEnum):
    signal = "signal"
    cohort = "cohort"
    change = "change"
    provider = "provider"
    trace_shape = "trace_shape"
    input_size = "input_size"
    turn_trend = "turn_trend"
    telemetry = "telemetry"


Value = float | int | str | bool | None


@dataclass(frozen=True)
class Fact:
    id: str
    kind: FactKind
    about: str  # the signal, the column=value, the change id, the provider, ...
    values: dict[str, Value]
    trace_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = str(self.kind)
        out["trace_ids"] = list(self.trace_ids)
        return out


@dataclass
class Evidence:
    case_id: str
    service: str
    detected_type: FailureType
    provider: str | None  # the provider a provider-scoped detection named
    onset: datetime
    baseline_start: datetime
    end: datetime
    detected_onset: datetime  # the case's; ``onset`` is where the main signal shifted
    facts: list[Fact] = field(default_factory=list)

    def add(self, kind: FactKind, about: str, values: Mapping[str, Value],
            trace_ids: list[str] | tuple[str, ...] = ()) -> Fact:
        fact = Fact(f"f{len(self.facts) + 1}", kind, about, dict(values), tuple(trace_ids[:10]))
        self.facts.append(fact)
        return fact

    def of(self, kind: FactKind) -> list[Fact]:
        return [f for f in self.facts if f.kind == kind]

    def get(self, kind: FactKind, about: str) -> Fact | None:
        return next((f for f in self.facts if f.kind == kind and f.about == about), None)

    def as_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "service": self.service,
                "detected_type": str(self.detected_type), "provider": self.provider,
                "onset": self.onset.isoformat(),
                "detected_onset": self.detected_onset.isoformat(),
                "baseline_start": self.baseline_start.isoformat(),
                "end": self.end.isoformat(), "facts": [f.as_dict() for f in self.facts]}
