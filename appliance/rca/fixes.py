"""Suggested fixes for a case, from the knowledge base's nearest entries.

Each match (a playbook or a resolved case) proposes its fix with how to verify it. The
confidence of a suggestion is computed here, never by a model:

* **closeness**: 1 at distance 0, falling linearly to 0 at ``FAR`` (MiniLM cosine
  distances: the same failure shape sits below ~0.2, another type above ~0.45);
* **source**: a resolved case whose fix a verification check confirmed counts fully, a
  resolved case not yet verified less, a playbook (a known pattern, never seen here)
  less again, so a verified case as close as a playbook ranks above it;
* **agreement** with the diagnosis: a match of another failure type than the one
  diagnosed is discounted, and one whose blamed entity kind differs from the top
  hypothesis' a little.

The same fix from several sources is one suggestion with the best confidence, listing
every source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from appliance.cases.model import SuggestedFix
from appliance.rca.kb import Match

FAR = 0.6
SOURCE_WEIGHT = {"verified_case": 1.0, "case": 0.85, "playbook": 0.75}
OTHER_TYPE = 0.5
OTHER_ENTITY = 0.85
TITLE_CHARS = 160


class _Hypothesis(Protocol):
    @property
    def kind(self) -> str: ...


class Diagnosed(Protocol):
    """What ``suggest`` reads of a diagnosis (``appliance.rca.rules.Diagnosis`` has it)."""

    @property
    def failure_type(self) -> str: ...
    @property
    def hypotheses(self) -> Sequence[_Hypothesis]: ...


@dataclass
class Fix:
    title: str
    detail: str
    verify: str
    source: str  # "playbook:<id>" or "case:<id>": the best source
    confidence: float
    distance: float
    verified: bool
    sources: list[str] = field(default_factory=list)  # every source proposing it

    def as_suggested_fix(self) -> SuggestedFix:
        """The case model's form: how to verify and the confidence go into the detail."""
        detail = (f"{self.detail}\nHow to verify: {self.verify}\n"
                  f"Confidence {self.confidence:.2f} (distance {self.distance:.3f}"
                  f"{', verified fix' if self.verified else ''}).")
        return SuggestedFix(title=self.title[:500], detail=detail[:8000],
                            source=", ".join(self.sources)[:500])


def title_of(fix: str) -> str:
    """A fix's first sentence, as its title (a fix written as one line stays whole)."""
    text = " ".join(fix.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first if len(first) <= TITLE_CHARS else first[:TITLE_CHARS - 1].rstrip() + "…"


def _same(a: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", a.lower()).strip()


def confidence(match: Match, diagnosis: Diagnosed | None = None) -> float:
    closeness = max(0.0, 1.0 - match.distance / FAR)
    weight = SOURCE_WEIGHT["verified_case" if match.source == "case" and match.verified
                           else match.source]
    agreement = 1.0
    if diagnosis is not None:
        if match.failure_type != str(diagnosis.failure_type):
            agreement *= OTHER_TYPE
        top = diagnosis.hypotheses[0].kind if diagnosis.hypotheses else None
        if match.blames and top and match.blames != top:
            agreement *= OTHER_ENTITY
    return round(closeness * weight * agreement, 3)


def suggest(matches: Sequence[Match], diagnosis: Diagnosed | None = None,
            limit: int = 5) -> list[Fix]:
    """The fixes the matches propose, best first, one per distinct fix, those with a
    confidence of 0 left out."""
    best: dict[str, Fix] = {}
    for m in matches:
        if not m.fix.strip():
            continue
        fix = Fix(title=title_of(m.fix), detail=" ".join(m.fix.split()), verify=m.verify,
                  source=f"{m.source}:{m.id}", confidence=confidence(m, diagnosis),
                  distance=m.distance, verified=m.source == "case" and m.verified)
        if fix.confidence <= 0:
            continue
        key = _same(fix.title)
        known = best.get(key)
        sources = (known.sources if known else []) + [fix.source]
        if known is None or fix.confidence > known.confidence:
            best[key] = fix
        best[key].sources = sorted(set(sources), key=sources.index)
    ranked = sorted(best.values(), key=lambda f: (-f.confidence, f.distance))
    for f in ranked:  # the best source first in the list
        f.sources = [f.source] + [s for s in f.sources if s != f.source]
    return ranked[:limit]
