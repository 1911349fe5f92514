"""The local model's answer, parsed and checked before anyone reads it.

llama.cpp constrains the output to the case's JSON schema (``prompt.schema_of``), but
the output is still checked here, as if no grammar had run: a cut-off answer
(``max_tokens``), another runtime, or a grammar bug must not let an invented id
through. ``parse`` raises ``ModelAnswerInvalid`` when:

* the text is not one JSON object, or has missing, extra or mistyped fields;
* ``failure_type`` is not one of the eight types;
* ``hypothesis_id`` is not one of this case's hypothesis ids (or ``"none"``/null:
  unable to determine);
* an ``evidence_ids`` entry is not one of this case's fact ids;
* the ``explanation`` is empty or too long, or **quotes anything the evidence table does
  not hold**: every word in it that has a digit (a number, a fact or hypothesis id, a
  version such as ``v2`` or ``1.5.0``, a model such as ``gpt-4o``) must appear in the
  evidence table (``prompt.evidence_table``: type scores, facts, hypotheses), either
  literally or, for a number, as the same value at the precision quoted (``0.41`` for
  ``0.412``) or as a percentage (``41%`` for ``0.412``).

Choice made (issue 10): the model's explanation is kept only when every such word checks
out; otherwise the whole answer is rejected, the caller keeps the rules-only answer, and
the rejection says which word was not found. We do not template the explanation and let
the model paraphrase: a paraphrase can invent just the same, and a checked rejection is
simpler to trust. The check cannot see an invented claim made without a digit ("the
index changed"); the answer's ``hypothesis_id`` and ``evidence_ids`` are what the
pipeline acts on, never the prose alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from appliance.domain.taxonomy import FAILURE_TYPES
from appliance.errors import ModelAnswerInvalid
from appliance.rca.prompt import EXPLANATION_CHARS, NONE, ModelQuestion, evidence_table

FIELDS = {"failure_type", "hypothesis_id", "evidence_ids", "explanation"}
# A word: letters, digits and the joiners found inside ids, versions and numbers.
_WORD = re.compile(r"[A-Za-z0-9_%+\-.:=/]+")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?%?")


@dataclass
class ModelAnswer:
    failure_type: str
    hypothesis_id: str | None  # None: unable to determine
    evidence_ids: list[str]
    explanation: str
    raw: str
    seconds: float
    tokens: int


def _words(text: str) -> list[str]:
    # Sentence punctuation around a word is not part of it ("f3," "0.41." "(H1)").
    return [w.strip(".:,;=/-+") or w for w in _WORD.findall(text)]


def _numbers(words: set[str]) -> list[float]:
    return [float(w) for w in words if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", w)]


def _same_number(word: str, table: list[float]) -> bool:
    """``word`` is a table value written at its own precision, or as a percentage."""
    percent = word.endswith("%")
    digits = word.rstrip("%")
    x = float(digits)
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    tol = 0.5 * 10 ** -decimals + 1e-9
    for y in table:
        for v in ((y * 100, y) if percent else (y,)):
            if abs(x - v) <= tol:
                return True
    return False


def unsupported_words(explanation: str, question: ModelQuestion) -> list[str]:
    """The words of ``explanation`` with a digit that the evidence table does not hold."""
    table_words = set(_words(evidence_table(question)))
    table_numbers = _numbers(table_words)
    out = []
    for w in _words(explanation):
        if not any(c.isdigit() for c in w) or w in table_words:
            continue
        if _NUMBER.fullmatch(w) and _same_number(w, table_numbers):
            continue
        out.append(w)
    return list(dict.fromkeys(out))


def parse(raw: str, question: ModelQuestion, seconds: float = 0.0,
          tokens: int = 0) -> ModelAnswer:
    """The checked answer in ``raw``; ``ModelAnswerInvalid`` saying what is wrong."""
    try:
        # strict=False: llama-cpp-python's schema grammar lets a raw newline or tab into a
        # string (its `char` rule excludes only `"` and `\\`); that is whitespace to us,
        # folded below, not a reason to throw the answer away.
        data = json.loads(raw, strict=False)
    except json.JSONDecodeError as e:
        raise ModelAnswerInvalid(f"the model's answer is not valid JSON ({e.msg} at "
                                 f"character {e.pos}): {raw[:200]!r}") from None
    if not isinstance(data, dict):
        raise ModelAnswerInvalid(f"the model's answer is not a JSON object: {raw[:200]!r}")
    if set(data) != FIELDS:
        raise ModelAnswerInvalid(f"the model's answer has fields {sorted(data)}, "
                                 f"expected {sorted(FIELDS)}")
    failure_type, hyp, ids, text = (data["failure_type"], data["hypothesis_id"],
                                    data["evidence_ids"], data["explanation"])
    if failure_type not in FAILURE_TYPES:
        raise ModelAnswerInvalid(f"failure_type {failure_type!r} is not one of the eight types")
    if hyp is not None and hyp != NONE and hyp not in question.hypothesis_ids:
        raise ModelAnswerInvalid(f"hypothesis_id {hyp!r} is not one of this case's "
                                 f"{question.hypothesis_ids + [NONE]}")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ModelAnswerInvalid("evidence_ids is not a list of fact ids")
    invented = [i for i in ids if i not in question.fact_ids]
    if invented:
        raise ModelAnswerInvalid(f"evidence_ids {invented} are not facts of this case")
    if isinstance(text, str):
        text = " ".join(text.split())
    if not isinstance(text, str) or not text:
        raise ModelAnswerInvalid("the explanation is empty")
    if len(text) > EXPLANATION_CHARS:
        raise ModelAnswerInvalid(f"the explanation is {len(text)} characters, more than "
                                 f"{EXPLANATION_CHARS}")
    unsupported = unsupported_words(text, question)
    if unsupported:
        raise ModelAnswerInvalid(f"the explanation quotes {', '.join(unsupported)}, not in "
                                 f"the evidence table: {text[:200]!r}")
    return ModelAnswer(failure_type, None if hyp in (None, NONE) else str(hyp),
                       list(dict.fromkeys(ids)), text, raw, seconds, tokens)
