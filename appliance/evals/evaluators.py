"""The built-in evaluators. Each turns one model call (question, retrieved context,
answer) into a score in 0..1 or a "not scored" with the reason.

Scores go under the names the detectors and the collector's metrics already use
(``groundedness``, ``relevance``, ``retrieval_relevance``, ``coherence``,
``repetition``), plus ``refusal`` and ``format_validity``. The embedder's cosines are
mapped to 0..1 between a floor and a ceiling measured on the labelled set
(``tests/evals_set.py``, ``bench/evals_bench.py``), so a score means the same across
evaluators: near 1 good, near 0 bad (``repetition`` and ``refusal``: near 1 is more of it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from appliance.evals import text

SOURCE = "tracehold"
MAX_OUTPUT_BYTES = 64 * 1024  # longer answers are not scored (the embedder reads 256 tokens)
MAX_SENTENCES = 24  # sentences of an answer judged (the rest would cost without changing much)
MAX_CHUNKS = 12
# Cosine floors and ceilings (all-MiniLM-L6-v2), from the labelled set.
SUPPORT = (0.45, 0.80)  # answer sentence vs its best context sentence
RELEVANCE = (0.15, 0.60)  # answer vs question
RETRIEVAL = (0.10, 0.55)  # question vs chunk
UNSUPPORTED_FACT_CAP = 0.15  # a sentence with a number or name absent from the context


class Encoder(Protocol):
    """What the evaluators need of ``appliance.rca.embed.Embedder``."""

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class Call:
    """One model call's content as the evaluators read it."""

    question: str
    answer: str
    context: Sequence[str] = ()
    prompt: str = ""  # every input message: tells whether JSON was asked for


@dataclass(frozen=True)
class Score:
    name: str
    score: float | None  # None: not scored, see reason
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.score is not None


class CachedEncoder:
    """The embedder with an LRU cache by text: RAG chunks and system prompts repeat."""

    def __init__(self, encoder: Encoder, size: int = 4096) -> None:
        self.encoder, self.size = encoder, size
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self.embedded = 0  # texts sent to the model (cache misses)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            self.embedded += len(missing)
            for t, v in zip(missing, self.encoder.embed(missing), strict=True):
                self._cache[t] = v
        out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384),
                                                                               np.float32)
        for t in texts:
            self._cache.move_to_end(t)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return out


def _scale(cos: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(min(max((cos - lo) / (hi - lo), 0.0), 1.0))


def problem(call: Call) -> str | None:
    """Why this call's answer cannot be judged at all, else None."""
    if not call.answer.strip():
        return "empty output"
    if len(call.answer.encode("utf-8", "surrogatepass")) > MAX_OUTPUT_BYTES:
        return f"output over {MAX_OUTPUT_BYTES // 1024} KiB"
    if "\ufffd" in call.answer or any(0xD800 <= ord(c) <= 0xDFFF for c in call.answer):
        return "output is not valid UTF-8 text"
    return None


def language_problem(*texts: str) -> str | None:
    """Embedding-based evaluators read English only (the model is English)."""
    for t in texts:
        if t and text.english(t) is False:
            return "not English"
    return None


class Evaluators:
    """Every built-in evaluator over one encoder. ``VERSIONS``: bump one when its
    scoring changes, so old and new scores are told apart."""

    VERSIONS = {"groundedness": 1, "relevance": 1, "retrieval_relevance": 1,
                "coherence": 1, "repetition": 1, "refusal": 1, "format_validity": 1}
    # The score at or above which a call counts as grounded, relevant, coherent... (for
    # repetition and refusal: as repetitive, as a refusal); chosen on the labelled set.
    THRESHOLDS = {"groundedness": 0.5, "relevance": 0.5, "retrieval_relevance": 0.5,
                  "coherence": 0.8, "repetition": 0.2, "refusal": 0.5, "format_validity": 0.5}
    # Names an app may send for the same thing: its score wins over ours.
    ALIASES = {"groundedness": ("groundedness", "faithfulness")}

    def __init__(self, encoder: Encoder, enabled: Sequence[str] | None = None) -> None:
        self.encoder = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
        self.enabled = list(enabled) if enabled is not None else list(self.VERSIONS)
        self._run: dict[str, Callable[[Call], Score]] = {
            "groundedness": self.groundedness, "relevance": self.relevance,
            "retrieval_relevance": self.retrieval_relevance, "coherence": self.coherence,
            "repetition": self.repetition, "refusal": self.refusal,
            "format_validity": self.format_validity}

    @classmethod
    def version(cls, name: str) -> str:
        return f"{SOURCE}/{name}-{cls.VERSIONS[name]}"

    def evaluate(self, call: Call, names: Sequence[str] | None = None) -> list[Score]:
        """The enabled evaluators (or ``names`` of them) on one call; never raises for
        bad content, which becomes a "not scored" with the reason."""
        wanted = [n for n in (names if names is not None else self.enabled) if n in self._run]
        bad = problem(call)
        if bad is not None:
            return [Score(n, None, bad) for n in wanted]
        return [self._run[n](call) for n in wanted]

    # ------------------------------------------------------------ embedding-based

    def groundedness(self, call: Call) -> Score:
        """Each answer sentence against its best-matching context sentence; a sentence
        naming a number or a name the context does not have is capped low. The score
        is the mean of the sentences' support and its worst one, so one invented claim
        among true ones still costs."""
        name = "groundedness"
        context = [c for c in call.context if c.strip()][:MAX_CHUNKS]
        if not context:
            return Score(name, None, "no retrieved context")
        if text.refused(call.answer):
            return Score(name, None, "a refusal makes no claim")
        if (why := language_problem(call.answer)) is not None:
            return Score(name, None, why)
        claims = text.sentences(call.answer)[:MAX_SENTENCES]
        joined = "\n".join(context)
        # Whole chunks, their sentences, and all of it: an answer sentence may sum up several.
        units = list(dict.fromkeys([*context, *(s for c in context for s in text.sentences(c)),
                                    joined]))
        known_numbers, known_names = text.numbers(joined), {n.lower() for n in text.names(joined)}
        known_words = set(text.words(joined)) | set(text.words(call.question))
        vectors = self.encoder.embed([*claims, *units])
        sims = vectors[:len(claims)] @ vectors[len(claims):].T
        support = []
        for i, claim in enumerate(claims):
            s = _scale(float(sims[i].max()), SUPPORT)
            unknown = (text.numbers(claim) - known_numbers) | {
                n for n in text.names(claim)
                if n.lower() not in known_names and n.lower() not in known_words}
            if unknown:
                s = min(s, UNSUPPORTED_FACT_CAP)
            support.append(round(s, 3))
        value = (sum(support) / len(support) + min(support)) / 2
        return Score(name, round(value, 4), "", {"sentences": support})

    def relevance(self, call: Call) -> Score:
        name = "relevance"
        if not call.question.strip():
            return Score(name, None, "no question")
        if (why := language_problem(call.question, call.answer)) is not None:
            return Score(name, None, why)
        if text.refused(call.answer):
            return Score(name, 0.0, "refusal")
        q, a = self.encoder.embed([call.question, call.answer[:2000]])
        return Score(name, round(_scale(float(q @ a), RELEVANCE), 4))

    def retrieval_relevance(self, call: Call) -> Score:
        """The question against each chunk; the score is the mean of the best three."""
        name = "retrieval_relevance"
        context = [c for c in call.context if c.strip()][:MAX_CHUNKS]
        if not context:
            return Score(name, None, "no retrieved context")
        if not call.question.strip():
            return Score(name, None, "no question")
        if (why := language_problem(call.question)) is not None:
            return Score(name, None, why)
        vectors = self.encoder.embed([call.question, *context])
        per_chunk = [round(_scale(float(c), RETRIEVAL), 4) for c in vectors[1:] @ vectors[0]]
        top = sorted(per_chunk, reverse=True)[:3]
        return Score(name, round(sum(top) / len(top), 4), "", {"chunks": per_chunk})

    # ------------------------------------------------------------ text-based

    def repetition(self, call: Call) -> Score:
        return Score("repetition", round(text.repetition(call.answer), 4))

    def coherence(self, call: Call) -> Score:
        """Falls with repeats and a degenerate ending (token loops, cut-off prose)."""
        rep = text.repetition(call.answer)
        end = text.degenerate_ending(call.answer)
        value = max(0.0, 1.0 - 0.9 * rep - 0.5 * end)
        return Score("coherence", round(value, 4), "", {"repetition": round(rep, 4),
                                                        "ending": end})

    def refusal(self, call: Call) -> Score:
        return Score("refusal", 1.0 if text.refused(call.answer) else 0.0)

    def format_validity(self, call: Call) -> Score:
        if not text.json_asked(call.prompt):
            return Score("format_validity", None, "no JSON asked for")
        return Score("format_validity", 1.0 if text.valid_json(call.answer) else 0.0)
