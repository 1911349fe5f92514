"""Rules over the evidence: a score per failure type, at most four ranked hypotheses
naming what to blame, and a confidence computed outside any model.

The detected type is a strong prior, not the answer: each type is scored from the
facts that tell it apart (docs/architecture.md), so a hallucination case whose
retrieval scores fell as well is retrieval drift. A hypothesis names an entity
(``kind``/``ref``): a change event, a prompt template version, an index, a model, a
provider, a tool or an agent, with the ids of the facts behind it. Scope matters: a
change in another service scores a fraction of one in the case's own service, and a
change whose new value the data shows healthy is cleared by it.

This answer is kept as the baseline and the fallback when a model runs later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.domain.taxonomy import FailureType
from appliance.rca.evidence import Evidence, Fact, FactKind
from appliance.rca.hypotheses import Hypothesis, candidates
from appliance.rca.scales import bad, clip, cohort_gap, loop_strength, provider_strength

T = FailureType
PRIOR = 0.15  # what the detector's verdict adds to its type's score
MAX_HYPOTHESES = 4
RULES_CAP = 0.9  # rules alone never claim certainty; agreement of a KB or model may add
DETERMINED = 0.5
TIE_MARGIN = 0.1  # top two hypotheses closer than this are a (near) tie
TIE_COST = 0.4


@dataclass
class TypeScore:
    failure_type: FailureType
    score: float
    evidence_ids: list[str]


@dataclass
class Diagnosis:
    failure_type: FailureType
    types: list[TypeScore]  # best first
    hypotheses: list[Hypothesis]  # best first, at most MAX_HYPOTHESES
    confidence: float
    determined: bool
    completeness: float
    margins: dict[str, float] = field(default_factory=dict)

    @property
    def secondary_types(self) -> list[FailureType]:
        return [t.failure_type for t in self.types[1:] if t.score >= DETERMINED]

    def as_dict(self) -> dict[str, Any]:
        return {"failure_type": str(self.failure_type), "confidence": self.confidence,
                "determined": self.determined, "completeness": self.completeness,
                "margins": self.margins,
                "type_scores": {str(t.failure_type): round(t.score, 3) for t in self.types},
                "type_evidence": {str(t.failure_type): t.evidence_ids for t in self.types},
                "hypotheses": [h.as_dict() for h in self.hypotheses]}


def _ids(*facts: Fact | None) -> list[str]:
    return [f.id for f in facts if f is not None]


def _signal(ev: Evidence, name: str) -> Fact | None:
    return ev.get(FactKind.signal, name)


def _new_bad_cohorts(ev: Evidence, signal: str) -> list[Fact]:
    return [f for f in ev.of(FactKind.cohort) if f.values["signal"] == signal
            and f.values["new"] and cohort_gap(f) > 0.25]


# ------------------------------------------------------------------ type rules

def _hallucination(ev: Evidence) -> tuple[float, list[str]]:
    g, r = _signal(ev, "groundedness"), _signal(ev, "retrieval_score")
    score = bad(g) * (1 - bad(r))  # retrieval fell too: drift, not the generator
    return score, _ids(g, r) + [f.id for f in _new_bad_cohorts(ev, "groundedness")]


def _retrieval_drift(ev: Evidence) -> tuple[float, list[str]]:
    r, m = _signal(ev, "retrieval_score"), _signal(ev, "embedding_mismatch_share")
    new = _new_bad_cohorts(ev, "retrieval_score")
    score = bad(r) + 0.1 * bool(new) + 0.1 * (bad(m) > 0.5)
    return clip(score) if bad(r) else 0.0, _ids(r, m) + [f.id for f in new]


def _coherence(ev: Evidence) -> tuple[float, list[str]]:
    c, rep, g = (_signal(ev, n) for n in ("coherence", "repetition", "groundedness"))
    worst = max(bad(c), bad(rep))
    score = worst * (1 - clip(bad(g) - worst))  # groundedness fell further: hallucination
    trend = ev.get(FactKind.turn_trend, "coherence_by_turn")
    if trend is not None and _turn_decay(trend) > 0.1:
        score = clip(score + 0.1)
    return score, _ids(c, rep, g, trend)


def _turn_decay(trend: Fact) -> float:
    """How much more late turns lost than early ones since the onset."""
    v = {k: (x if isinstance(x, float) else 0.0) for k, x in trend.values.items()}
    return (v["early_recent"] - v["late_recent"]) - (v["early_baseline"] - v["late_baseline"])


def _agent_loop(ev: Evidence) -> tuple[float, list[str]]:
    loops = [f for f in ev.of(FactKind.trace_shape) if f.about.startswith("repeated_tool:")]
    it = _signal(ev, "iteration_limit_share")
    strength = max((loop_strength(f) for f in loops), default=0.0)
    return max(strength, bad(it)), [f.id for f in loops] + _ids(it)


def _prompt_regression(ev: Evidence) -> tuple[float, list[str]]:
    p = _signal(ev, "refusal_or_format_error_share")
    templates = [f for f in _new_bad_cohorts(ev, "refusal_or_format_error_share")
                 if f.values["column"] == "prompt_template_version"]
    return bad(p) * (1.0 if templates else 0.6), _ids(p) + [f.id for f in templates]


def _context_overflow(ev: Evidence) -> tuple[float, list[str]]:
    o, size = _signal(ev, "overflow_share"), ev.get(FactKind.input_size, "context_window_fill")
    fill = 0.0
    if size is not None:
        v = size.values
        rise = float(v["near_window_share_recent"] or 0) - float(
            v["near_window_share_baseline"] or 0)
        fill = clip(rise / 0.2) if rise > 0 else 0.0
        fill = max(fill, 0.5 * (int(v["over_window_recent"] or 0) > 0))
    return max(bad(o), fill), _ids(o, size, _signal(ev, "input_tokens"))


def _provider_error(ev: Evidence) -> tuple[float, list[str]]:
    own = _signal(ev, "provider_error_share")
    providers = [f for f in ev.of(FactKind.provider)
                 if f.values["case_service_affected"] or f.about == ev.provider]
    best = max((provider_strength(f) for f in providers), default=0.0)
    return max(best, bad(own)), _ids(own) + [f.id for f in providers if provider_strength(f)]


def _latency(ev: Evidence) -> tuple[float, list[str]]:
    moved = [_signal(ev, n) for n in ("ttft_s", "duration_ms", "output_tokens")]
    err, size = _signal(ev, "error_share"), _signal(ev, "input_tokens")
    # More errors or bigger inputs explain slower calls: judged as their own types.
    score = max(bad(f) for f in moved) * (1 - bad(err)) * (1 - bad(size))
    return score, _ids(*moved, err, size)


TYPE_RULES: dict[FailureType, Callable[[Evidence], tuple[float, list[str]]]] = {
    T.hallucination: _hallucination,
    T.retrieval_drift: _retrieval_drift,
    T.coherence_degradation: _coherence,
    T.agent_loop: _agent_loop,
    T.prompt_regression: _prompt_regression,
    T.context_overflow: _context_overflow,
    T.provider_error: _provider_error,
    T.latency_cost_regression: _latency,
}

# Which signals a type needs the service to send at all (telemetry completeness).
NEEDS: dict[FailureType, tuple[str, ...]] = {
    T.hallucination: ("evaluated", "retrievals"),
    T.retrieval_drift: ("retrievals",),
    T.coherence_degradation: ("evaluated",),
    T.agent_loop: (),
    T.prompt_regression: ("templated",),
    T.context_overflow: ("with_tokens",),
    T.provider_error: (),
    T.latency_cost_regression: ("with_tokens",),
}


def completeness(ev: Evidence, failure_type: FailureType) -> float:
    """0..1: enough model calls before and after the onset, the model that answered on
    each (cohorts and change matching need versions), the signals the type is judged on."""
    t = ev.get(FactKind.telemetry, ev.service)
    if t is None:
        return 0.0
    v = {k: int(x or 0) for k, x in t.values.items()}
    calls = v["model_calls_recent"] + v["model_calls_baseline"]
    parts = [clip(v["model_calls_recent"] / max(v["min_recent"], 1)),
             clip(v["model_calls_baseline"] / max(v["min_baseline"], 1)),
             clip(v["with_model"] / calls) if calls else 0.0]  # which model answered
    parts += [1.0 if v[need] else 0.0 for need in NEEDS[failure_type]]
    return round(sum(parts) / len(parts), 3)


def _agreement(conf: float, agreement: float | None) -> float:
    """A knowledge base's or a model's agreement (0..1) moves the confidence by up to a
    quarter of the way toward 1 (agrees) or 0 (disagrees); absent, nothing."""
    if agreement is None:
        return conf
    pull = 0.5 * (clip(agreement) - 0.5)
    return conf + pull * ((1 - conf) if pull > 0 else conf)


def diagnose(ev: Evidence, kb_agreement: float | None = None,
             model_agreement: float | None = None) -> Diagnosis:
    """Score every type, rank the top type's candidates, and say how sure that is:
    the mean of the top type's and the top hypothesis' scores, discounted when the
    runner-up type or hypothesis is close (the rule margin) and when telemetry is
    incomplete, capped at ``RULES_CAP``; then a knowledge base's and a model's
    agreement (0..1, None: absent) move it. Determined at 0.5 or more."""
    types = []
    for failure_type, rule in TYPE_RULES.items():
        score, ids = rule(ev)
        if failure_type == ev.detected_type:
            score = clip(score + PRIOR)
        types.append(TypeScore(failure_type, round(score, 3), list(dict.fromkeys(ids))))
    # At equal scores the detector's verdict decides (two faults in one service both
    # score full marks: the case is about the one its detector saw).
    types.sort(key=lambda t: (-t.score, t.failure_type != ev.detected_type))
    top = types[0]
    hyps = candidates(ev, top.failure_type, top.score, top.evidence_ids)[:MAX_HYPOTHESES]
    s1, s2 = top.score, types[1].score
    h1 = hyps[0].score if hyps else 0.0
    h2 = hyps[1].score if len(hyps) > 1 else 0.0
    type_margin, hyp_margin = clip((s1 - s2) / 0.4), clip((h1 - h2) / 0.3)
    full = completeness(ev, top.failure_type)
    conf = (s1 + h1) / 2 * (0.55 + 0.25 * type_margin + 0.2 * hyp_margin)
    # Two candidates that the evidence scores alike cannot be told apart: naming either
    # would be a guess, so a near tie costs up to TIE_COST of the confidence.
    conf *= 1 - TIE_COST * (1 - clip((h1 - h2) / TIE_MARGIN)) if len(hyps) > 1 else 1
    conf = RULES_CAP * conf * (0.5 + 0.5 * full)
    conf = round(_agreement(_agreement(conf, kb_agreement), model_agreement), 3)
    return Diagnosis(top.failure_type, types, hyps, conf, conf >= DETERMINED, full,
                     {"type": round(s1 - s2, 3), "hypothesis": round(h1 - h2, 3)})


