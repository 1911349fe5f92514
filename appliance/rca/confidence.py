"""How sure the RCA is, computed outside any model.

The rules' confidence already holds the rule margin (how far the best type and the best
hypothesis lie ahead of the runner-up) and how complete the telemetry is
(``rules.diagnose``). Two votes then move it: the knowledge base (do the most similar
past cases and playbooks have this failure type?) and the local model (did it pick the
rules' answer?). A vote of 1 pulls the confidence a share of the way toward 1, a vote of
0 the same share toward 0; an absent vote moves nothing. The model's vote weighs half
the knowledge base's: a 135M-parameter model picks the wrong type on clear evidence
(issue 10's measurement), so it may nudge, never decide.

Below ``DETERMINED`` the answer is "unable to determine root cause" and the hypotheses
are listed as unconfirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.rca.rules import DETERMINED, Diagnosis
from appliance.rca.scales import clip

KB_WEIGHT = 1.0
MODEL_WEIGHT = 0.5
PULL = 0.5  # a full vote (weight 1) moves the confidence a quarter of the way: 0.5 * 0.5
__all__ = ["DETERMINED", "Confidence", "confidence", "kb_agreement", "model_agreement"]


class Similar(Protocol):
    """A retrieved past case or playbook (``appliance.rca.kb.Match`` has these)."""

    @property
    def failure_type(self) -> str: ...
    @property
    def distance(self) -> float: ...


@dataclass(frozen=True)
class Confidence:
    value: float
    rules: float  # the rules' own: margin and completeness
    margin: dict[str, float]
    completeness: float
    kb_agreement: float | None
    model_agreement: float | None

    @property
    def determined(self) -> bool:
        return self.value >= DETERMINED

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rules": self.rules, "margin": self.margin,
                "completeness": self.completeness, "kb_agreement": self.kb_agreement,
                "model_agreement": self.model_agreement,
                "weights": {"kb": KB_WEIGHT, "model": MODEL_WEIGHT}}


def kb_agreement(matches: Sequence[Similar], failure_type: str) -> float | None:
    """The similarity-weighted share of the retrieved entries filed under
    ``failure_type`` (None without any: an empty knowledge base says nothing)."""
    if not matches:
        return None
    weights = [(m.failure_type == failure_type, 1.0 / (1.0 + max(m.distance, 0.0)))
                for m in matches]
    total = sum(w for _, w in weights)
    return round(sum(w for same, w in weights if same) / total, 3) if total else None


def model_agreement(rules_type: str, rules_top: int | None, model_type: str,
                    model_pick: int | None) -> float:
    """1: the model picked the rules' type and top hypothesis; 0.5 (no vote): the type
    and another of the rules' candidates; 0.25: the type but no hypothesis (it found
    none supported); 0: another type."""
    if model_type != rules_type:
        return 0.0
    if model_pick is None:
        return 0.25
    return 1.0 if model_pick == rules_top else 0.5


def _vote(conf: float, agreement: float | None, weight: float) -> float:
    if agreement is None:
        return conf
    pull = weight * PULL * (clip(agreement) - 0.5)
    return conf + pull * ((1 - conf) if pull > 0 else conf)


def confidence(d: Diagnosis, kb: float | None = None,
               model: float | None = None) -> Confidence:
    """The final confidence of diagnosis ``d`` given the two votes (0..1 or None)."""
    value = round(_vote(_vote(d.confidence, kb, KB_WEIGHT), model, MODEL_WEIGHT), 3)
    return Confidence(value, d.confidence, dict(d.margins), d.completeness, kb, model)
