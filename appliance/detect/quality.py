"""Quality detectors: hallucination, retrieval drift, coherence degradation.

They read evaluation scores (events gen_ai.evaluation.result, kept in
eval_scores) and retrieval scores. What tells them apart (docs/architecture.md):
groundedness falls while retrieval holds (hallucination); retrieval falls
(drift); coherence/relevance falls or repetition rises (coherence).
"""

from __future__ import annotations

from appliance.detect.model import Finding, Signal
from appliance.detect.windows import (
    SEEN,
    Comparison,
    Windows,
    attribute,
    compare,
    evidence,
    new_values,
)
from appliance.domain.taxonomy import FailureType
from appliance.evals.store import builtin_score, ensure
from appliance.ingest.conventions import INDEX_EMBEDDING_MODEL
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

# The app's own scores first, then the built-in evaluators' (appliance/evals/): an app
# that scores its calls is never overruled.
GROUNDED = ("coalesce(eval_scores['groundedness'], eval_scores['faithfulness'], "
            f"{builtin_score('groundedness')})")
# The best three chunks: a larger top_k adds weak chunks without the index getting worse.
RETRIEVAL = ("coalesce(list_avg(list_slice(list_reverse_sort(retrieval_scores), 1, 3)), "
             f"eval_scores['retrieval_relevance'], {builtin_score('retrieval_relevance')})")
COHERENCE = ("coalesce(eval_scores['coherence'], eval_scores['relevance'], "
             f"{builtin_score('coherence')}, {builtin_score('relevance')})")
REPETITION = f"coalesce(eval_scores['repetition'], {builtin_score('repetition')})"


def _scores(store: SpanStore, w: Windows, expr: str) -> dict[str, Comparison]:
    ensure(store.db)  # the built-in scores' table, which the expressions read
    return compare(store, w, expr, f"{expr} IS NOT NULL")


def _drop(c: Comparison | None, cfg: DetectConfig) -> float:
    """How far the mean fell (0 when not judged)."""
    if c is None or not c.enough(cfg):
        return 0.0
    return float(c.baseline - c.recent)  # type: ignore[operator]


def _base(c: Comparison | None) -> float:
    """The baseline of a comparison that was judged (``_drop`` > 0 means it had one)."""
    return c.baseline if c is not None and c.baseline is not None else 0.0


def _sig(name: str, c: Comparison, w: Windows) -> Signal:
    return Signal(name, round(c.recent or 0, 3), round(c.baseline or 0, 3), w.label)


def hallucination(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    grounded, retrieval = _scores(store, w, GROUNDED), _scores(store, w, RETRIEVAL)
    out = []
    for service, g in grounded.items():
        r = retrieval.get(service)
        if _drop(g, cfg) < cfg.score_drop or abs(_drop(r, cfg)) > cfg.score_stable:
            continue
        signals = [_sig("groundedness", g, w)]
        if r is not None and r.enough(cfg):
            signals.append(_sig("retrieval_score", r, w))
        models = new_values(store, w, service, "response_model")
        if models:
            signals.append(Signal("new_response_model", ", ".join(models), None, w.label))
        traces, onset = evidence(store, w, service, f"{GROUNDED} < {_base(g) - cfg.score_drop}")
        out.append(Finding(FailureType.hallucination, service, f"hallucination:{service}", signals,
                           traces, onset))
    return out


def retrieval_drift(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    out = []
    for service, r in _scores(store, w, RETRIEVAL).items():
        if _drop(r, cfg) < cfg.score_drop:
            continue
        signals = [_sig("retrieval_score", r, w)]
        for column in ("index_version", "embedding_model"):
            new = new_values(store, w, service, column)
            if new:
                signals.append(Signal(f"new_{column}", ", ".join(new), None, w.label))
        mismatch = store.read(
            f"SELECT count(*) AS n FROM spans WHERE service_name = ? AND {SEEN} >= ? "
            "AND embedding_model IS NOT NULL AND embedding_model <> "
            f"{attribute(INDEX_EMBEDDING_MODEL)}",
            [service, w.recent_start])[0]["n"]
        if mismatch:
            signals.append(Signal("query_vs_index_embedding_mismatch", int(mismatch), 0, w.label))
        traces, onset = evidence(store, w, service,
                                 f"{RETRIEVAL} < {_base(r) - cfg.score_drop}")
        out.append(Finding(FailureType.retrieval_drift, service, f"retrieval_drift:{service}",
                           signals, traces, onset))
    return out


def coherence_degradation(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    coherence, repetition = _scores(store, w, COHERENCE), _scores(store, w, REPETITION)
    grounded = _scores(store, w, GROUNDED)
    out = []
    for service in set(coherence) | set(repetition):
        c, rep = coherence.get(service), repetition.get(service)
        fell, rose = _drop(c, cfg), -_drop(rep, cfg)
        if max(fell, rose) < cfg.score_drop:
            continue
        if _drop(grounded.get(service), cfg) > max(fell, rose):
            continue  # groundedness fell further: a hallucination, not a coherence problem
        signals = []
        if c is not None and c.enough(cfg):
            signals.append(_sig("coherence", c, w))
        if rep is not None and rep.enough(cfg):
            signals.append(_sig("repetition", rep, w))
        where = (f"{COHERENCE} < {_base(c) - cfg.score_drop}" if fell >= rose
                 else f"{REPETITION} > {_base(rep) + cfg.score_drop}")
        traces, onset = evidence(store, w, service, where)
        out.append(Finding(FailureType.coherence_degradation, service,
                           f"coherence_degradation:{service}", signals, traces, onset))
    return out
