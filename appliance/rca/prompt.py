"""What the local model is asked, and the JSON schema its answer must fit.

``question_of(evidence, diagnosis, similar)`` turns the rules' answer into a
``ModelQuestion``: the type scores, the rules' hypotheses (``H1``.. in rank order), the
facts they rest on (the compact evidence table: one line of text per fact, never raw
spans) and the most similar resolved cases the knowledge base found. ``render`` lays it
out as the prompt text; ``schema_of`` builds the JSON schema llama.cpp constrains the
answer to, per case: ``failure_type`` is one of the eight types, ``hypothesis_id`` one
of this case's hypothesis ids or ``"none"`` (unable to determine), ``evidence_ids``
this case's fact ids, ``explanation`` a bounded string. So the model picks among the
rules' candidates; it cannot name a hypothesis or a fact that is not in the table.
What it writes in ``explanation`` is checked in ``appliance/rca/answer.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from appliance.domain.taxonomy import FAILURE_TYPES
from appliance.rca.facts import Evidence, Fact, Value
from appliance.rca.rules import Diagnosis

NONE = "none"  # hypothesis_id for "unable to determine root cause"
MAX_FACTS = 16
MAX_SIMILAR = 3
EXPLANATION_CHARS = 160
MAX_EVIDENCE_IDS = 4
TEXT_CHARS = 220  # one fact's line, one similar case's root cause or fix
# Values that say how a fact was computed, not what it found: left out of the table.
_NOISE = {"threshold", "measure", "worse", "enough", "first_seen", "min_recent",
          "min_baseline", "n_recent", "n_baseline", "loop_repeats", "at", "source", "cohort",
          "entity", "column", "value", "signal", "new", "same_service", "context_fill",
          "first_loop_seen"}


class HypothesisRow(TypedDict):
    id: str
    kind: str
    ref: str
    score: float
    evidence_ids: list[str]
    summary: str


class FactRow(TypedDict):
    id: str
    kind: str
    about: str
    text: str


class SimilarRow(TypedDict):
    source: str
    failure_type: str
    root_cause: str
    fix: str
    distance: float


@dataclass
class ModelQuestion:
    failure_type: str  # the detected (and rules') type
    type_scores: dict[str, float]
    hypotheses: list[HypothesisRow]
    facts: list[FactRow]
    similar: list[SimilarRow] = field(default_factory=list)

    @property
    def hypothesis_ids(self) -> list[str]:
        return [h["id"] for h in self.hypotheses]

    @property
    def fact_ids(self) -> list[str]:
        return [f["id"] for f in self.facts]

    def smaller(self) -> ModelQuestion | None:
        """The same question with one item less (a similar case first, then the last
        fact no hypothesis names, then the last fact), for a prompt over the context;
        None when nothing is left to drop."""
        if self.similar:
            return replace(self, similar=self.similar[:-1])
        named = {i for h in self.hypotheses for i in h["evidence_ids"]}
        spare = [f for f in self.facts if f["id"] not in named]
        drop = spare[-1] if spare else (self.facts[-1] if len(self.facts) > 1 else None)
        if drop is None:
            return None
        facts = [f for f in self.facts if f is not drop]
        kept = {f["id"] for f in facts}
        hyps: list[HypothesisRow] = [
            {**h, "evidence_ids": [i for i in h["evidence_ids"] if i in kept]}
            for h in self.hypotheses]
        return replace(self, facts=facts, hypotheses=hyps)


def number(v: float | int) -> str:
    """How a number is written in the table (and so how the model may quote it)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    s = f"{v:.3g}"
    if "e" in s:
        s = f"{v:.4f}".rstrip("0").rstrip(".") or "0"
    return s


def _value(v: Value) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, int | float):
        return number(v)
    return v if len(v) <= 48 else v[:45] + "..."


def fact_text(f: Fact) -> str:
    """One line: what the fact is about and what it found, without how it was computed."""
    shown = ", ".join(f"{k} {_value(v)}" for k, v in f.values.items()
                      if k not in _NOISE and v not in (None, ""))
    return f"{f.kind} {f.about}: {shown}"[:TEXT_CHARS]


def _referenced(d: Diagnosis) -> list[str]:
    ids = [i for h in d.hypotheses for i in h.evidence_ids]
    ids += [i for t in d.types[:3] if t.score > 0 for i in t.evidence_ids]
    return list(dict.fromkeys(ids))


def question_of(evidence: Evidence, diagnosis: Diagnosis,
                similar: Sequence[Mapping[str, Any]] = ()) -> ModelQuestion:
    """The model's question for a case: the rules' types and hypotheses, the facts they
    name (at most ``MAX_FACTS``, in fact order), and the closest ``MAX_SIMILAR`` resolved
    cases (rows with source, failure_type, root_cause, fix, distance)."""
    wanted = set(_referenced(diagnosis)[:MAX_FACTS])
    facts: list[FactRow] = [{"id": f.id, "kind": str(f.kind), "about": f.about,
                             "text": fact_text(f)}
                            for f in evidence.facts if f.id in wanted]
    kept = {f["id"] for f in facts}
    hyps: list[HypothesisRow] = [
        {"id": f"H{i}", "kind": h.kind, "ref": h.ref, "score": round(h.score, 3),
         "evidence_ids": [e for e in h.evidence_ids if e in kept], "summary": h.summary}
        for i, h in enumerate(diagnosis.hypotheses, 1)]
    close = sorted(similar, key=lambda s: float(s.get("distance", 1.0)))[:MAX_SIMILAR]
    rows: list[SimilarRow] = [
        {"source": str(s.get("source", "")), "failure_type": str(s.get("failure_type", "")),
         "root_cause": str(s.get("root_cause", ""))[:TEXT_CHARS],
         "fix": str(s.get("fix", ""))[:TEXT_CHARS],
         "distance": round(float(s.get("distance", 1.0)), 3)} for s in close]
    return ModelQuestion(str(diagnosis.failure_type),
                         {str(t.failure_type): round(t.score, 3) for t in diagnosis.types},
                         hyps, facts, rows)


INSTRUCTIONS = (
    "Diagnose this incident in a GenAI application. Choose the failure type and the "
    "hypothesis the evidence supports best (\"none\" if none is supported), list the "
    "ids of the facts behind it, and explain in one short sentence quoting only ids and "
    "numbers from the evidence.")


def evidence_table(q: ModelQuestion) -> str:
    """The part of the prompt an explanation may quote from: type scores, facts and
    hypotheses (not the similar cases, which are other incidents)."""
    # Types the rules scored 0 are left out: tokens the model must read for nothing.
    types = ", ".join(f"{t} {number(s)}" for t, s in q.type_scores.items() if s > 0)
    facts = "\n".join(f"{f['id']} {f['text']}" for f in q.facts)
    hyps = "\n".join(
        f"{h['id']} {h['kind']} {h['ref']} (score {number(h['score'])}; facts "
        f"{', '.join(h['evidence_ids']) or 'none'}): {h['summary']}" for h in q.hypotheses)
    return (f"Detected failure type: {q.failure_type}\n"
            f"Failure type scores (0 to 1): {types}\n\n"
            f"Evidence:\n{facts or '(no facts)'}\n\n"
            f"Hypotheses:\n{hyps or '(none found)'}")


def render(q: ModelQuestion) -> str:
    """The whole prompt: instructions, the evidence table, the similar resolved cases
    (lower distance is closer) and the answer's fields."""
    similar = "\n".join(
        f"- {s['failure_type']} (distance {number(s['distance'])}): root cause "
        f"{s['root_cause']}; fix {s['fix']}" for s in q.similar)
    return (f"{INSTRUCTIONS}\n\n{evidence_table(q)}\n\n"
            f"Similar resolved incidents:\n{similar or '(none)'}\n\n"
            "Answer in JSON: failure_type, hypothesis_id, evidence_ids, explanation.")


def schema_of(q: ModelQuestion) -> dict[str, Any]:
    """The JSON schema the answer is constrained to, for this case only."""
    facts = q.fact_ids
    evidence: dict[str, Any] = ({"type": "array", "items": {"type": "string", "enum": facts},
                                 "maxItems": MAX_EVIDENCE_IDS}
                                if facts else {"type": "array", "maxItems": 0})
    return {
        "type": "object",
        "properties": {
            "failure_type": {"type": "string", "enum": list(FAILURE_TYPES)},
            "hypothesis_id": {"type": "string", "enum": q.hypothesis_ids + [NONE]},
            "evidence_ids": evidence,
            "explanation": {"type": "string", "minLength": 1,
                            "maxLength": EXPLANATION_CHARS},
        },
        "required": ["failure_type", "hypothesis_id", "evidence_ids", "explanation"],
        "additionalProperties": False,
    }
