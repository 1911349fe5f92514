"""How a diagnosis of the scenario suite (``tests/rca_incidents.py``) is scored, shared by
``tests/unit/test_rca_scenarios.py`` and ``bench/rca_bench.py``.

Per case: the type, whether it was determined, and the ranked ``(kind, ref)`` of its
hypotheses, against the case's ground truth. Over a set of cases:

* **type accuracy** over the cases whose truth has a type, and the confusion matrix
  (truth -> answer); truths no case opened for are counted apart (``missed``: the
  detectors', not the RCA's);
* **root cause at 1 / at 3**: the truth's entity (or another name of it) is the first /
  among the first three hypotheses, over the cases whose truth names one, whether or not
  the answer was determined; **answered right**: determined *and* first is the truth;
* **harmless change blamed**: over the cases with a harmless change near them, how
  often the determined answer's first hypothesis is one of them;
* **abstention precision**: of the cases answered "unable to determine", the share
  whose truth is undetermined (ambiguous cases, and cases opened on normal traffic,
  where nothing is to blame); **over-abstention**: of the cases whose truth names an
  entity, the share answered "unable to determine";
* **false cases on normal traffic**: cases opened on incidents with no fault, per hour
  of traffic the detectors watched;
* **time to diagnosis**: p50 / p95 seconds of the diagnosis call on this machine.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from appliance.cases.model import UNDETERMINED, Rca

NONE = "undetermined"  # how an undetermined truth or answer shows in the confusion matrix


@dataclass
class Outcome:
    incident: str
    group: str
    role: str  # primary, secondary, filed, false (a case no truth asked for)
    tags: list[str]
    detected_type: str
    truth_type: str | None
    truth_entity: list[str] | None
    also: list[list[str]]
    harmless: list[str]
    failure_type: str
    determined: bool
    confidence: float
    ranked: list[list[str]]  # [kind, ref] of each hypothesis, best first
    seconds: float
    status: str | None = None  # what the engine said about its own run (model errors, ...)

    @property
    def accepted(self) -> list[list[str]]:
        return ([self.truth_entity] if self.truth_entity else []) + [a for a in self.also if a]

    def hit(self, k: int) -> bool:
        return any(list(r) in self.accepted for r in self.ranked[:k])

    @property
    def blamed_harmless(self) -> bool:
        return (self.determined and bool(self.ranked) and self.ranked[0][0] == "change"
                and self.ranked[0][1] in self.harmless)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ranked_of(rca: Rca) -> list[list[str]]:
    """The ranked (kind, ref) of a diagnosis: the rules and the pipeline keep them in
    ``details["hypotheses"]``."""
    return [[str(h.get("kind")), str(h.get("ref"))]
            for h in (rca.details or {}).get("hypotheses", []) if isinstance(h, dict)]


def determined_of(rca: Rca) -> bool:
    d = (rca.details or {}).get("determined")
    return bool(d) if isinstance(d, bool) else rca.root_cause != UNDETERMINED


def outcome(case: Any, rca: Rca, seconds: float) -> Outcome:
    """``case``: a ``tests.rca_incidents.Case``."""
    truth = case.truth
    details = rca.details or {}
    return Outcome(
        incident=case.incident, group=case.group,
        role=truth["role"] if truth else "false", tags=case.tags,
        detected_type=case.detected_type,
        truth_type=truth["failure_type"] if truth else None,
        truth_entity=truth["entity"] if truth else None,
        also=truth["also"] if truth else [], harmless=case.harmless,
        failure_type=str(rca.failure_type) if rca.failure_type else NONE,
        determined=determined_of(rca), confidence=float(rca.confidence or 0.0),
        ranked=ranked_of(rca), seconds=round(seconds, 4),
        status=str(details["status"]) if details.get("status") else None)


def _share(hits: int, n: int) -> float | None:
    return round(hits / n, 3) if n else None


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    if len(xs) == 1:
        return round(xs[0], 3)
    return round(statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1], 3)


def metrics(outcomes: list[Outcome], missed: list[dict[str, Any]],
            normal_hours: float) -> dict[str, Any]:
    typed = [o for o in outcomes if o.truth_type]
    confusion: dict[str, Counter[str]] = {}
    for o in typed:
        confusion.setdefault(o.truth_type or NONE, Counter())[o.failure_type] += 1
    for m in missed:
        if m["failure_type"]:
            confusion.setdefault(m["failure_type"], Counter())["(no case)"] += 1
    named = [o for o in outcomes if o.truth_entity]
    # A case opened on normal traffic has nothing to blame: its right answer is undetermined.
    unnamed = [o for o in outcomes if not o.truth_entity]
    exposed = [o for o in outcomes if o.harmless]
    abstained = [o for o in outcomes if not o.determined]
    false_cases = [o for o in outcomes if o.group == "normal"]
    times = [o.seconds for o in outcomes]
    return {
        "cases": len(outcomes),
        "cases_by_role": dict(Counter(o.role for o in outcomes)),
        "missed_truths": len(missed),
        "type_accuracy": _share(sum(o.failure_type == o.truth_type for o in typed), len(typed)),
        "type_judged": len(typed),
        "confusion": {t: dict(c) for t, c in sorted(confusion.items())},
        "root_cause_at_1": _share(sum(o.hit(1) for o in named), len(named)),
        "root_cause_at_3": _share(sum(o.hit(3) for o in named), len(named)),
        "answered_right": _share(sum(o.determined and o.hit(1) for o in named), len(named)),
        "root_cause_judged": len(named),
        "harmless_change_blamed": _share(sum(o.blamed_harmless for o in exposed), len(exposed)),
        "harmless_exposed": len(exposed),
        "abstention_precision": _share(sum(not o.truth_entity for o in abstained),
                                       len(abstained)),
        "abstained": len(abstained),
        "over_abstention": _share(sum(not o.determined for o in named), len(named)),
        "undetermined_truths_abstained": _share(sum(not o.determined for o in unnamed),
                                                len(unnamed)),
        "false_cases_on_normal": len(false_cases),
        "false_cases_per_hour": round(len(false_cases) / normal_hours, 2) if normal_hours
        else None,
        "seconds_p50": _pct(times, 50), "seconds_p95": _pct(times, 95),
        # by kind (model_timeout, model_invalid_answer, kb_empty, ok, ...), details per case
        "statuses": dict(Counter(part.split(":")[0].strip() for o in outcomes if o.status
                                 for part in o.status.split(";"))),
    }
