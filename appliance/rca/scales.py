"""One 0..1 scale for how bad a fact is, shared by the type rules and the hypotheses:
0.5 at the detectors' own threshold (``DetectConfig``), 1 at twice it."""

from __future__ import annotations

from appliance.rca.facts import Fact


def clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def _move(recent: float, reference: float, threshold: float, worse: int, measure: str) -> float:
    if measure == "ratio":
        return clip((recent / reference - 1) / (2 * (threshold - 1))) if reference > 0 else 0.0
    return clip((recent - reference) * worse / (2 * threshold))


def bad(fact: Fact | None, z_needed: float = 2.0) -> float:
    """How far a signal moved the bad way since the onset; damped when its robust score
    says the move is within the baseline's own minute-to-minute noise."""
    if fact is None or not fact.values.get("enough"):
        return 0.0
    v = fact.values
    recent, baseline = v["recent"], v["baseline"]
    if not isinstance(recent, float) or not isinstance(baseline, float):
        return 0.0
    worse = int(v["worse"] or 1)
    s = _move(recent, baseline, float(v["threshold"] or 0), worse, str(v["measure"]))
    z = v.get("robust_z")
    if isinstance(z, float) and z * worse < z_needed:
        s *= clip(z * worse / z_needed)
    return s


def cohort_gap(fact: Fact) -> float:
    """How much worse a cohort's signal is than the other values' since the onset, or,
    when it carries all the recent traffic, than theirs before it (else its own)."""
    v = fact.values
    recent = v["recent"]
    other = next((v[k] for k in ("others_recent", "others_baseline", "baseline")
                  if v.get(k) is not None), None)
    if not isinstance(recent, float) or not isinstance(other, float):
        return 0.0
    return _move(recent, other, float(v["threshold"] or 0), int(v["worse"] or 1),
                 str(v["measure"]))


def provider_strength(fact: Fact) -> float:
    """A provider's failed-call share, risen since the onset, on the same scale."""
    v = fact.values
    return _move(float(v["recent"] or 0), float(v["baseline"] or 0),
                 float(v["threshold"] or 0.1), 1, "difference")


def loop_strength(fact: Fact) -> float:
    """A tool called with the same arguments at least ``loop_repeats`` times in a trace:
    0.7 for one such trace, more for more."""
    return clip(0.6 + 0.1 * int(fact.values["looping_traces"] or 0))
