"""Candidate root causes for a failure type, each naming one entity to blame with the
facts behind it, scored 0..1.

* a **change** event: how well its kind fits the type, its lag before the onset, its
  scope (the case's service; another service whose new model, template or index the
  case's service uses; or an unrelated one), and what the data says about its new
  value (the cohort carrying it is bad: blamed; healthy: cleared);
* a new **template** version, **index** (version, embedding model, top_k) or **model**
  (response model, temperature) whose cohort is worse than the rest, when no change
  event claims it. Values that appeared together (one rollout) are one candidate;
* a **provider** failing across services (blast radius);
* a **tool** called over and over with the same arguments, and the **agent** calling it;
* the service itself (kind ``agent``) when nothing narrower explains the symptom.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.domain.change_kinds import ChangeKind
from appliance.domain.taxonomy import FailureType
from appliance.rca.facts import Evidence, Fact, FactKind
from appliance.rca.scales import cohort_gap, loop_strength, provider_strength
from appliance.rca.signals import COHORTS

T, K = FailureType, ChangeKind

# The signals whose cohorts speak for each type.
SIGNALS_FOR: dict[FailureType, tuple[str, ...]] = {
    T.hallucination: ("groundedness",),
    T.retrieval_drift: ("retrieval_score",),
    T.coherence_degradation: ("coherence", "repetition"),
    T.agent_loop: ("iteration_limit_share",),
    T.prompt_regression: ("refusal_or_format_error_share",),
    T.context_overflow: ("overflow_share", "input_tokens"),
    T.provider_error: ("provider_error_share",),
    T.latency_cost_regression: ("ttft_s", "duration_ms", "output_tokens"),
}
# How well a change of each kind can explain each type (anything unlisted: 0.3).
CHANGE_FIT: dict[FailureType, dict[ChangeKind, float]] = {
    T.hallucination: {K.model_swap: 1.0, K.config: 0.8, K.deploy: 0.5, K.prompt_template: 0.5,
                      K.documents: 0.4},
    T.retrieval_drift: {K.index_refresh: 1.0, K.documents: 1.0, K.config: 0.6, K.deploy: 0.5},
    T.coherence_degradation: {K.model_swap: 0.9, K.config: 0.8, K.prompt_template: 0.8,
                              K.deploy: 0.7},
    T.agent_loop: {K.deploy: 0.7, K.prompt_template: 0.7, K.config: 0.7, K.model_swap: 0.6},
    T.prompt_regression: {K.prompt_template: 1.0, K.model_swap: 0.5, K.deploy: 0.5,
                          K.config: 0.4},
    T.context_overflow: {K.config: 1.0, K.documents: 0.7, K.index_refresh: 0.6,
                         K.prompt_template: 0.6, K.deploy: 0.6},
    T.provider_error: {K.config: 0.4, K.model_swap: 0.4, K.deploy: 0.3},
    T.latency_cost_regression: {K.model_swap: 0.9, K.config: 0.8, K.deploy: 0.8,
                                K.prompt_template: 0.5},
}
# How well each kind of entity can explain each type (anything unlisted: 0.3).
ENTITY_FIT: dict[FailureType, dict[str, float]] = {
    T.hallucination: {"model": 1.0, "template": 0.5, "index": 0.4},
    T.retrieval_drift: {"index": 1.0},
    T.coherence_degradation: {"model": 0.8, "template": 0.7},
    T.agent_loop: {"tool": 1.0, "agent": 0.9, "template": 0.5, "model": 0.5},
    T.prompt_regression: {"template": 1.0, "model": 0.5},
    T.context_overflow: {"index": 1.0, "template": 0.6, "model": 0.5},
    T.provider_error: {"provider": 1.0},
    T.latency_cost_regression: {"model": 0.9, "provider": 0.8, "index": 0.5},
}
AFTER_ONSET_S = 120.0  # a change this long after the first symptom cannot have caused it
PROMPT_LAG_S = 900.0  # within this before the onset, a change is as suspect as can be
OTHER_SERVICE = 0.15  # a change in another service, next to one in the case's service
# A change recorded against another service whose new value (model, template, index)
# the case's service uses is nearly as close as its own.
SCOPE = {"service": 1.0, "shared_value": 0.8}
ONE_ROLLOUT_S = 120.0  # new values first seen this close together came with one rollout
SERVICE_ITSELF = 0.4  # the fallback: the service, with no narrower entity found
NOISE = 0.05  # candidates scoring less are not listed
LOOP_FIT = 0.6  # a change kind at least this fit for agent loops can set one off
LOOP_CLAIMED = 0.5  # a tool loop a change set off is listed at this share of its score


@dataclass
class Hypothesis:
    kind: str  # change, provider, model, template, index, tool, agent
    ref: str
    score: float
    evidence_ids: list[str]
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "score": self.score,
                "evidence_ids": self.evidence_ids, "summary": self.summary}


@dataclass
class _Group:
    """One new value's cohort facts (one per signal), with the values that came with it."""

    column: str
    value: str
    entity: str
    gap: float
    first_seen: datetime | None
    facts: list[Fact]
    rollout: list[_Group]

    @property
    def ref(self) -> str:
        return self.value if self.column not in ("temperature", "top_k") else (
            f"{self.column}={self.value}")

    def ids(self) -> list[str]:
        return [f.id for g in [self, *self.rollout] for f in g.facts]


def _groups(ev: Evidence, failure_type: FailureType) -> list[_Group]:
    signals = SIGNALS_FOR[failure_type]
    by_value: dict[str, list[Fact]] = {}
    for f in ev.of(FactKind.cohort):
        if f.values["new"] and f.values["signal"] in signals:
            by_value.setdefault(f.about, []).append(f)
    order = [c.column for c in COHORTS]
    groups = [_Group(str(fs[0].values["column"]), str(fs[0].values["value"]),
                     str(fs[0].values["entity"]), max(cohort_gap(f) for f in fs),
                     _time(fs[0].values["first_seen"]), fs, [])
              for fs in by_value.values()]
    groups = [g for g in groups if g.gap > 0.25]
    groups.sort(key=lambda g: (order.index(g.column), -g.gap))
    for g in groups:
        g.rollout = [o for o in groups if o is not g and _together(g, o)]
    return groups


def _together(a: _Group, b: _Group) -> bool:
    if a.first_seen is None or b.first_seen is None:
        return False
    return abs((a.first_seen - b.first_seen).total_seconds()) <= ONE_ROLLOUT_S


def _time(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) else None


def _lag_weight(lag_s: float) -> float:
    if lag_s < -AFTER_ONSET_S:
        return 0.1
    if lag_s <= PROMPT_LAG_S:
        return 1.0
    return max(0.3, 1 - 0.7 * (lag_s - PROMPT_LAG_S) / 86_400)


def _changes(ev: Evidence, failure_type: FailureType, groups: list[_Group],
             claimed: set[int]) -> list[Hypothesis]:
    out = []
    for c in ev.of(FactKind.change):
        v = c.values
        fit = CHANGE_FIT[failure_type].get(ChangeKind(str(v["change_kind"])), 0.3)
        scope = SCOPE.get(str(v["scope"])) or (
            2 * OTHER_SERVICE if failure_type == T.provider_error else OTHER_SERVICE)
        matched = ev.get(FactKind.cohort, _about_of(ev, v["cohort"]))
        group = next((g for g in groups if matched is not None and g.facts[0].about
                      == matched.about), None)
        ids = [c.id]
        if group is not None:  # its new value carries the symptom: blamed by the data
            data, note = 0.6 + 0.4 * group.gap, f"; its value is worse ({group.gap:.2f})"
            ids += group.ids()
            # It explains the values of its own kind that came with it (a model swap's new
            # temperature), not another kind's: a re-index shipped with a new model does
            # not take the model's blame.
            claimed.update(id(g) for g in [group, *group.rollout] if g.entity == group.entity)
        elif matched is not None:  # its new value is in the data and healthy: cleared
            data, note = 0.3, "; its value is healthy in the data"
            ids.append(matched.id)
        else:
            data, note = 0.7, ""
        score = fit * _lag_weight(float(v["lag_s"] or 0)) * scope * data
        where = "" if v["same_service"] else f" in {v['service']}" + (
            ", whose new value this service uses" if v["scope"] == "shared_value"
            else ", another service")
        out.append(Hypothesis(
            "change", c.about, round(score, 3), ids,
            f"change {c.about}: {v['change_kind']} {v['from']} -> {v['to']}{where}, "
            f"{_lag_text(float(v['lag_s'] or 0))}{note}"))
    return out


def _lag_text(lag_s: float) -> str:
    return (f"{lag_s:g} s before the onset" if lag_s >= 0
            else f"{-lag_s:g} s after the first symptom")


def _about_of(ev: Evidence, fact_id: Any) -> str:
    fact = next((f for f in ev.facts if f.id == fact_id), None)
    return fact.about if fact is not None else ""


def _behind(ev: Evidence, failure_type: FailureType, out: list[Hypothesis],
            loops: list[Fact]) -> Hypothesis | None:
    """The change in the case's own service, shortly before the onset and of a kind that
    can set an agent off looping, that a tool loop new since the onset follows: its score
    rises to what the loop shows (the data speaks for it, as a bad cohort does for a
    change whose new value it carries), and the loop's facts become its evidence."""
    if failure_type != T.agent_loop or not loops:
        return None
    best: tuple[float, Hypothesis] | None = None
    seen = min(str(f.values["first_loop_seen"]) for f in loops)
    for h in out:
        c = ev.get(FactKind.change, h.ref) if h.kind == "change" else None
        if c is None or not c.values["same_service"] or not isinstance(c.values["at"], str):
            continue
        # Before the first looping run was seen whole (its first spans may start before
        # the change: a run is long), and not long before.
        lead = (_time(seen) - _time(c.values["at"])).total_seconds()  # type: ignore[operator]
        fit = CHANGE_FIT[failure_type].get(ChangeKind(str(c.values["change_kind"])), 0.3)
        if fit >= LOOP_FIT and 0 <= lead <= PROMPT_LAG_S + AFTER_ONSET_S and (
                best is None or fit > best[0]):
            best = (fit, h)
    if best is None:
        return None
    fit, h = best
    h.score = round(max(h.score, fit * max(loop_strength(f) for f in loops)), 3)
    h.evidence_ids += [f.id for f in loops if f.id not in h.evidence_ids]
    h.summary += "; a tool loop began after it"
    return h


def candidates(ev: Evidence, failure_type: FailureType, type_score: float,
               type_evidence: list[str]) -> list[Hypothesis]:
    """Every candidate for ``failure_type`` worth listing, best first (distinct kind and
    ref); ``type_evidence``: the facts the type was scored on."""
    fit = ENTITY_FIT[failure_type]
    groups = _groups(ev, failure_type)
    claimed: set[int] = set()
    out = _changes(ev, failure_type, groups, claimed)
    for g in groups:
        if id(g) in claimed:
            continue
        claimed.update(id(o) for o in g.rollout)
        with_it = "".join(f", with {o.ref}" for o in g.rollout)
        out.append(Hypothesis(g.entity, g.ref, round(0.85 * fit.get(g.entity, 0.3) * g.gap, 3),
                              g.ids(), f"{g.entity} {g.ref} new since the onset{with_it}; "
                                       f"its {g.facts[0].values['signal']} is worse"))
    for p in ev.of(FactKind.provider):
        strength = provider_strength(p)
        if strength > 0:
            spread = 0.85 + 0.15 * min(1, max(0, int(p.values["services_affected"] or 0) - 1))
            out.append(Hypothesis("provider", p.about,
                                  round(fit.get("provider", 0.3) * strength * spread, 3), [p.id],
                                  f"provider {p.about} fails "
                                  f"{float(p.values['recent'] or 0):.0%} of calls (baseline "
                                  f"{float(p.values['baseline'] or 0):.0%}) in "
                                  f"{p.values['services_affected']} services"))
    loops = [f for f in ev.of(FactKind.trace_shape) if f.about.startswith("repeated_tool:")]
    behind = _behind(ev, failure_type, out, loops)
    for f in loops:
        s, v = loop_strength(f), f.values
        # A change that set the loop off is the cause; the tool is where it shows.
        scale, since = (LOOP_CLAIMED, f" since change {behind.ref}") if behind else (1.0, "")
        out.append(Hypothesis("tool", str(v["tool"]),
                              round(scale * fit.get("tool", 0.3) * s, 3), [f.id],
                              f"tool {v['tool']} called {v['max_identical_calls']} "
                              f"times with the same arguments{since}"))
        if v["agent"]:
            out.append(Hypothesis("agent", str(v["agent"]),
                                  round(scale * 0.8 * fit.get("agent", 0.3) * s, 3), [f.id],
                                  f"agent {v['agent']} repeats the call{since}"))
    trend = ev.get(FactKind.turn_trend, "coherence_by_turn")
    why = (f": quality falls with the turn index (late turns {trend.values['late_recent']}, "
           f"early {trend.values['early_recent']})" if trend is not None
           and failure_type == T.coherence_degradation else "")
    out.append(Hypothesis("agent", ev.service, round(SERVICE_ITSELF * type_score, 3),
                          [f.id for f in ev.of(FactKind.telemetry)] + type_evidence,
                          f"{ev.service} itself rather than a change event, new version or "
                          f"provider{why}"))
    seen: set[tuple[str, str]] = set()
    ranked = []
    for h in sorted(out, key=lambda h: -h.score):
        if h.score >= NOISE and (h.kind, h.ref) not in seen:
            seen.add((h.kind, h.ref))
            ranked.append(h)
    return ranked
