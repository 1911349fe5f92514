"""One RCA run: evidence, the rules' diagnosis, similar past cases from the knowledge
base, the local model's answer, combined into the ``Rca`` body a case stores.

How the parts combine:

* the **rules** decide the failure type and rank the candidates (``rules.diagnose``);
  they are the baseline and the fallback;
* the **knowledge base** retrieves the most similar playbooks and resolved cases (with
  their distance), votes on the type (``confidence.kb_agreement``) and supplies the
  suggested fixes (``fixes.suggest``);
* the **model** picks among the rules' candidates and words the explanation. It never
  overrides strong rule evidence: the type stays the rules' (their hypotheses exist for
  that type only, and a 135M model picks the wrong type on clear tables), and its pick of
  another hypothesis is taken only when the rules' top two lie within
  ``STRONG_HYPOTHESIS_MARGIN``. Its explanation is shown, marked as the model's, only
  when it argues for the final answer; otherwise the rules' templated one is.

Any failure of the knowledge base or the model leaves the rules-only answer for that
part, with a status in ``details.status`` (``ok`` when every part ran):
``kb_unavailable: …``, ``kb_empty``, ``model_unavailable: …``, ``model_invalid_json: …``
(or ``model_invalid_answer: …``: off-schema, invented ids or numbers), ``model_timeout: …``,
``error: …`` (anything else), ``no_traces`` (the service sent nothing in the
window: the model is not asked). Every run records the model's name and sha256, the
evidence ids, the similar cases with distances and the suggested fixes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from appliance.cases.model import Case, Rca
from appliance.errors import TraceholdError
from appliance.rca.confidence import confidence, kb_agreement, model_agreement
from appliance.rca.evidence import Evidence, FactKind, collect
from appliance.rca.rules import Diagnosis, diagnose
from appliance.rca.run import Sources, as_rca

if TYPE_CHECKING:  # numpy, yaml and chromadb load only when a knowledge base is used
    from appliance.rca.fixes import Fix
    from appliance.rca.kb import Match
    from appliance.rca.prompt import ModelQuestion

log = logging.getLogger("tracehold.rca")
# The rules' best hypothesis must lead the runner-up by less than this (in score) for
# the model's pick of another candidate to be taken.
STRONG_HYPOTHESIS_MARGIN = 0.1
SIMILAR_K = 5
__all__ = ["STRONG_HYPOTHESIS_MARGIN", "Unavailable", "diagnose_case", "run_case"]


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """A part that could not be loaded (a missing GGUF, a corrupt Chroma folder): its
    status goes on the case and the run goes on without it."""

    status: str


class ModelInfoLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def sha256(self) -> str: ...
    @property
    def source(self) -> str: ...


class AnswerLike(Protocol):
    @property
    def failure_type(self) -> str: ...
    @property
    def hypothesis_id(self) -> str | None: ...
    @property
    def evidence_ids(self) -> list[str]: ...
    @property
    def explanation(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def tokens(self) -> int: ...


class ModelLike(Protocol):
    """``appliance.rca.model.LocalModel``, by shape (tests and benches pass their own)."""

    @property
    def info(self) -> ModelInfoLike: ...
    def answer(self, question: ModelQuestion,
               timeout_s: float | None = None) -> AnswerLike: ...


class KnowledgeBaseLike(Protocol):
    """``appliance.rca.kb.KnowledgeBase``, by shape."""

    def similar(self, case_text: str, failure_type: str | None,
                k: int = SIMILAR_K) -> Sequence[Match]: ...
    def learn(self, case: Case) -> bool: ...


def _status(exc: Exception) -> str:
    """The status a failed part leaves on the case, named by the error's class."""
    prefix = {"ModelUnavailable": "model_unavailable",
              "ModelAnswerInvalid": "model_invalid_answer", "ModelTimeout": "model_timeout",
              "KnowledgeBaseUnavailable": "kb_unavailable"}.get(type(exc).__name__)
    message = exc.message if isinstance(exc, TraceholdError) else f"{type(exc).__name__}: {exc}"
    if prefix == "model_invalid_answer" and "not valid JSON" in message:
        prefix = "model_invalid_json"
    return f"{prefix or 'error'}: {message}"[:500]


def diagnose_case(sources: Sources, case_id: str,
                  kb: KnowledgeBaseLike | Unavailable | None,
                  model: ModelLike | Unavailable | None, now: datetime | None = None,
                  timeout_s: float | None = None) -> Rca:
    """The full RCA of stored case ``case_id``. ``kb``/``model``: None leaves the part
    out (a rules-only or KB-only run); ``Unavailable`` records why it is missing."""
    return run_case(sources, sources.cases.get(case_id), kb, model, now, timeout_s)


def run_case(sources: Sources, case: Case, kb: KnowledgeBaseLike | Unavailable | None,
             model: ModelLike | Unavailable | None, now: datetime | None = None,
             timeout_s: float | None = None) -> Rca:
    """``diagnose_case`` for a case held in memory (``investigate`` diagnoses cases it
    never stores)."""
    t0 = time.monotonic()
    statuses: list[str] = []
    ev = collect(sources.store, sources.changes, case, sources.settings.detect, now)
    d = diagnose(ev)
    timings = {"rules_s": round(time.monotonic() - t0, 3)}
    no_traces = _no_traces(ev)
    if no_traces:
        statuses.append("no_traces")
    t = time.monotonic()
    matches = _similar(kb, case, ev, d, statuses)
    timings["kb_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    if no_traces and not isinstance(model, Unavailable):
        model = None  # nothing to ask it about; a missing model is still reported
    answer, info = _ask(model, ev, d, matches, statuses, timeout_s)
    timings["model_s"] = round(time.monotonic() - t, 3)
    rca = _combine(ev, d, matches, answer, info, statuses)
    timings["total_s"] = round(time.monotonic() - t0, 3)
    rca.details["timings"] = timings
    return rca


def _no_traces(ev: Evidence) -> bool:
    t = ev.get(FactKind.telemetry, ev.service)
    return t is None or not int(t.values.get("traces") or 0)


def _similar(kb: KnowledgeBaseLike | Unavailable | None, case: Case, ev: Evidence,
             d: Diagnosis, statuses: list[str]) -> list[Match] | None:
    if kb is None:
        return None
    if isinstance(kb, Unavailable):
        statuses.append(kb.status)
        return None
    from appliance.rca.case_text import case_text

    try:
        # Every type, not only the rules': the knowledge base votes on the type too.
        text = case_text(case, str(d.failure_type),
                         d.hypotheses[0].kind if d.hypotheses else None)
        found = list(kb.similar(text, None, SIMILAR_K))
    except Exception as exc:  # a broken store must not cost the case its answer
        log.warning("knowledge base lookup failed for %s: %s", ev.case_id, exc)
        statuses.append(_status(exc))
        return None
    if not found:
        statuses.append("kb_empty")
    return found


def _ask(model: ModelLike | Unavailable | None, ev: Evidence, d: Diagnosis,
         matches: list[Match] | None, statuses: list[str],
         timeout_s: float | None) -> tuple[AnswerLike | None, ModelInfoLike | None]:
    if model is None:
        return None, None
    if isinstance(model, Unavailable):
        statuses.append(model.status)
        return None, None
    from appliance.rca.prompt import question_of

    try:
        similar = [dataclasses.asdict(m) for m in matches or []]
        answer = model.answer(question_of(ev, d, similar), timeout_s)
    except Exception as exc:  # invalid JSON, a timeout, llama.cpp failing: rules answer
        log.warning("model answer failed for %s: %s", ev.case_id, exc)
        statuses.append(_status(exc))
        return None, model.info
    return answer, model.info


def _pick(d: Diagnosis, answer: AnswerLike) -> int | None:
    """The index of the hypothesis the model chose ("H1".. in rank order), if valid."""
    hid = answer.hypothesis_id
    if hid is None or not hid.startswith("H") or not hid[1:].isdigit():
        return None
    i = int(hid[1:]) - 1
    return i if 0 <= i < len(d.hypotheses) else None


def _combine(ev: Evidence, d: Diagnosis, matches: list[Match] | None,
             answer: AnswerLike | None, info: ModelInfoLike | None,
             statuses: list[str]) -> Rca:
    kb_vote = kb_agreement(matches or [], str(d.failure_type))
    model_vote, pick, adopted, why = None, None, False, ""
    final = d
    if answer is not None:
        pick = _pick(d, answer)
        model_vote = model_agreement(str(d.failure_type), 0 if d.hypotheses else None,
                                     answer.failure_type, pick)
        if answer.failure_type != d.failure_type:
            why = "the failure type stays the rules' (the model votes on it, never sets it)"
        elif pick is None:
            why = "the model found no candidate supported; the rules' ranking stands"
        elif pick != 0:
            if d.margins.get("hypothesis", 0.0) < STRONG_HYPOTHESIS_MARGIN:
                adopted = True
                order = [d.hypotheses[pick]] + [h for i, h in enumerate(d.hypotheses)
                                                if i != pick]
                final = dataclasses.replace(d, hypotheses=order)
            else:
                why = (f"the rules' top hypothesis leads by {d.margins['hypothesis']:.2f} "
                       f"(strong at {STRONG_HYPOTHESIS_MARGIN}); kept")
    conf = confidence(d, kb_vote, model_vote)
    final = dataclasses.replace(final, confidence=conf.value, determined=conf.determined)
    rca = as_rca(ev, final)
    fixes = _fixes(matches, final)
    rca.suggested_fixes = [f.as_suggested_fix() for f in fixes]
    # The model's words are shown only where they argue for the answer given: its pick
    # is the final top hypothesis, or it found none and the answer is undetermined.
    agrees = answer is not None and answer.failure_type == d.failure_type and (
        final.hypotheses[0] is d.hypotheses[pick] if pick is not None
        else not final.determined)
    parts = ["rules"] + (["kb"] if matches is not None else []) + (
        ["model"] if answer is not None else [])
    cited = list(dict.fromkeys(i for h in final.hypotheses for i in h.evidence_ids))
    rca.model = info.name[:200] if info is not None and answer is not None else None
    rca.details.update({
        "engine": "+".join(parts), "status": "; ".join(statuses) or "ok",
        "statuses": statuses or ["ok"],
        "confidence_parts": conf.as_dict(),
        "evidence_ids": cited,
        "model_name": info.name if info is not None else None,
        "model_sha256": info.sha256 if info is not None else None,
        "model_answer": None if answer is None else {
            "failure_type": answer.failure_type, "hypothesis_id": answer.hypothesis_id,
            "evidence_ids": list(answer.evidence_ids), "explanation": answer.explanation,
            "seconds": answer.seconds, "tokens": answer.tokens, "agreement": model_vote,
            "adopted": adopted, "overruled": why or None,
            "source": info.source if info is not None else None},
        "rules_top": d.hypotheses[0].as_dict() if d.hypotheses else None,
        "similar": None if matches is None else [
            {"id": m.id, "source": m.source, "failure_type": m.failure_type,
             "root_cause": m.root_cause, "fix": m.fix, "verify": m.verify,
             "verified": m.verified, "distance": round(float(m.distance), 4)}
            for m in matches],
        "suggested_fixes": [dataclasses.asdict(f) for f in fixes],
        "explanation": _explanation(final, answer, info, agrees),
    })
    return rca


def _explanation(d: Diagnosis, answer: AnswerLike | None, info: ModelInfoLike | None,
                 agrees: bool) -> dict[str, Any]:
    """The model's words when it argues for the final answer (marked as the model's);
    else the rules' own, templated from the evidence."""
    if answer is not None and agrees and answer.explanation.strip():
        return {"by": "model", "model": info.name if info else None,
                "text": answer.explanation.strip()[:4000],
                "note": "written by the local model; ids and numbers checked against the "
                        "evidence table"}
    if not d.hypotheses:
        text = "No candidate explains the symptom."
    else:
        top = d.hypotheses[0]
        lead = ("Most likely" if d.determined else "Unconfirmed (confidence below 0.5)")
        text = (f"{lead}: {str(d.failure_type).replace('_', ' ')} caused by {top.kind} "
                f"{top.ref}. {top.summary}. Evidence: {', '.join(top.evidence_ids)}.")
    return {"by": "rules", "text": text}


def _fixes(matches: list[Match] | None, d: Diagnosis) -> list[Fix]:
    """Suggested fixes from the matched playbooks and resolved cases, each with how to
    verify it and a confidence (``fixes.suggest``)."""
    if not matches:
        return []
    from appliance.rca.fixes import suggest

    return suggest(matches, d)
