"""The signals the RCA judges and the probes that read them: each signal of the case's
service against its baseline, the failing signal per version cohort, and where the main
signal shifted (the onset the evidence is split at). The expressions are the detectors'
own (``appliance/detect``), so the RCA judges the numbers the detectors fired on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.detect import operational, quality
from appliance.detect.windows import MODEL_CALL, SEEN, attribute
from appliance.domain.taxonomy import FailureType
from appliance.ingest.conventions import (
    INDEX_EMBEDDING_MODEL,
    REQUEST_TEMPERATURE,
    RETRIEVAL_TOP_K,
)
from appliance.rca.facts import Evidence, Fact, FactKind, Value
from appliance.rca.reads import Agg, Cohort, Span, change_point, cohorts, stat
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore


def share(expr: str) -> str:
    return f"CASE WHEN {expr} THEN 1.0 ELSE 0.0 END"


OVERFLOW = "(list_contains(finish_reasons, 'length') OR error_type = 'context_length_exceeded')"
ITERATION_LIMIT = "error_type = 'max_iterations_exceeded'"
# A value first seen this long before the onset still counts as new.
NEW_LEAD = timedelta(minutes=5)
_INDEX_MODEL = attribute(INDEX_EMBEDDING_MODEL)  # what the index was built with


@dataclass(frozen=True)
class SignalSpec:
    name: str
    value: str
    where: str
    agg: Agg
    worse: int  # +1: a rise is bad; -1: a fall is bad
    threshold: str  # the DetectConfig field a bad move is measured against


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("groundedness", quality.GROUNDED, f"{quality.GROUNDED} IS NOT NULL", "avg", -1,
               "score_drop"),
    SignalSpec("retrieval_score", quality.RETRIEVAL, f"{quality.RETRIEVAL} IS NOT NULL", "avg",
               -1, "score_drop"),
    SignalSpec("coherence", quality.COHERENCE, f"{quality.COHERENCE} IS NOT NULL", "avg", -1,
               "score_drop"),
    SignalSpec("repetition", quality.REPETITION, f"{quality.REPETITION} IS NOT NULL", "avg", 1,
               "score_drop"),
    SignalSpec("refusal_or_format_error_share", share(operational.REFUSAL), MODEL_CALL, "avg",
               1, "rate_rise"),
    SignalSpec("overflow_share", share(OVERFLOW), MODEL_CALL, "avg", 1, "rate_rise"),
    SignalSpec("provider_error_share", share(operational.PROVIDER_FAILED), MODEL_CALL, "avg", 1,
               "rate_rise"),
    SignalSpec("error_share", share("status_code = 'error'"), MODEL_CALL, "avg", 1,
               "rate_rise"),
    SignalSpec("iteration_limit_share", share(ITERATION_LIMIT), "agent_name IS NOT NULL "
               "AND operation = 'invoke_agent'", "avg", 1, "rate_rise"),
    SignalSpec("embedding_mismatch_share", share(f"embedding_model <> {_INDEX_MODEL}"),
               f"embedding_model IS NOT NULL AND {_INDEX_MODEL} IS NOT NULL", "avg", 1,
               "rate_rise"),
    SignalSpec("ttft_s", "ttft_s", f"{MODEL_CALL} AND ttft_s IS NOT NULL", "median", 1,
               "latency_ratio"),
    SignalSpec("duration_ms", "duration_ms", MODEL_CALL, "median", 1, "latency_ratio"),
    SignalSpec("output_tokens", "output_tokens", f"{MODEL_CALL} AND output_tokens IS NOT NULL",
               "median", 1, "latency_ratio"),
    SignalSpec("input_tokens", "input_tokens", f"{MODEL_CALL} AND input_tokens IS NOT NULL",
               "median", 1, "latency_ratio"),
)
BY_NAME = {s.name: s for s in SIGNALS}
# The signal each type is judged on (the detectors' main signal).
MAIN_SIGNAL: dict[FailureType, str] = {
    FailureType.hallucination: "groundedness",
    FailureType.retrieval_drift: "retrieval_score",
    FailureType.coherence_degradation: "coherence",
    FailureType.agent_loop: "iteration_limit_share",
    FailureType.prompt_regression: "refusal_or_format_error_share",
    FailureType.context_overflow: "overflow_share",
    FailureType.provider_error: "provider_error_share",
    FailureType.latency_cost_regression: "ttft_s",
}


@dataclass(frozen=True)
class CohortSpec:
    column: str  # how the fact names it
    sql: str
    per_trace: bool  # the trace's value (request-level) rather than the measured span's
    entity: str  # the hypothesis kind a bad new value of it points at


COHORTS: tuple[CohortSpec, ...] = (
    CohortSpec("prompt_template_version", "prompt_template_version", True, "template"),
    CohortSpec("index_version", "index_version", True, "index"),
    CohortSpec("embedding_model", "embedding_model", True, "index"),
    CohortSpec("request_model", "request_model", False, "model"),
    CohortSpec("response_model", "response_model", False, "model"),
    CohortSpec("temperature", attribute(REQUEST_TEMPERATURE), False, "model"),
    CohortSpec("top_k", attribute(RETRIEVAL_TOP_K), True, "index"),
)


def refine_onset(store: SpanStore, service: str, detected: datetime, end: datetime,
                 failure_type: FailureType, cfg: DetectConfig) -> datetime:
    """The onset the evidence is split at: where the type's main signal shifted, looked
    for from a recent window before the detector's onset on. Not for agent loops: their
    symptom is seen when a long run ends, well after it began."""
    if failure_type == FailureType.agent_loop:
        return detected
    spec = BY_NAME[MAIN_SIGNAL[failure_type]]
    recent = timedelta(seconds=cfg.recent_window_s)
    w = Span(service, detected - timedelta(seconds=cfg.baseline_window_s), detected, end)
    found = change_point(store, w, spec.value, spec.where, spec.agg == "median", spec.worse,
                         detected - recent, min_after=cfg.min_recent)
    return found or detected


def telemetry(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    scope, params = w.where()
    m = MODEL_CALL
    r = store.read(
        f"SELECT count(DISTINCT trace_id) AS traces, "
        f"count(*) FILTER (WHERE {m} AND {SEEN} >= ?) AS model_calls_recent, "
        f"count(*) FILTER (WHERE {m} AND {SEEN} < ?) AS model_calls_baseline, "
        "count(*) FILTER (WHERE cardinality(eval_scores) > 0) AS evaluated, "
        "count(*) FILTER (WHERE retrieval_scores IS NOT NULL) AS retrievals, "
        "count(*) FILTER (WHERE prompt_template_version IS NOT NULL) AS templated, "
        f"count(*) FILTER (WHERE {m} AND input_tokens IS NOT NULL) AS with_tokens, "
        f"count(*) FILTER (WHERE {m} AND response_model IS NOT NULL) AS with_model "
        f"FROM spans WHERE {scope}", [w.onset, w.onset, *params])[0]
    ev.add(FactKind.telemetry, ev.service, {
        **{k: int(v) for k, v in r.items()},
        "min_recent": cfg.min_recent, "min_baseline": cfg.min_baseline})


def against_baseline(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    for spec in SIGNALS:
        s = stat(store, w, spec.value, spec.where, spec.agg)
        if s.n_recent == 0 and s.n_baseline == 0:
            continue  # the service does not send it: telemetry says so
        values: dict[str, Value] = {
            "recent": round4(s.recent), "baseline": round4(s.baseline), "n_recent": s.n_recent,
            "n_baseline": s.n_baseline, "robust_z": s.robust_z, "worse": spec.worse,
            "threshold": float(getattr(cfg, spec.threshold)),
            "measure": "ratio" if spec.agg == "median" else "difference",
            "enough": s.n_recent >= cfg.min_recent and s.n_baseline >= cfg.min_baseline}
        ev.add(FactKind.signal, spec.name, values)


def _moved(fact: Fact) -> bool:
    """A signal that went the bad way by at least half its threshold (worth a cohort)."""
    v = fact.values
    recent, baseline = v["recent"], v["baseline"]
    if not isinstance(recent, float) or not isinstance(baseline, float) or not v["enough"]:
        return False
    threshold = float(v["threshold"] or 0)
    if v["measure"] == "ratio":
        return baseline > 0 and (recent / baseline - 1) >= (threshold - 1) / 2
    return (recent - baseline) * int(v["worse"] or 1) >= threshold / 2


def version_cohorts(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    """The failing signal per value of each version-like column: for the detected type's
    signal every column with two or more values (a problem every value shares is not
    the value's), for any other signal that moved the columns with a value new since
    the onset."""
    main = MAIN_SIGNAL[ev.detected_type]
    names = [main] + [f.about for f in ev.of(FactKind.signal) if _moved(f)]
    for name in dict.fromkeys(names):
        if ev.get(FactKind.signal, name) is None:
            continue
        spec = BY_NAME[name]
        for c in COHORTS:
            found = [x for x in cohorts(store, w, c.sql, spec.value, spec.where, spec.agg,
                                        c.per_trace) if x.n_recent + x.n_baseline]
            new = {x.value for x in found if _new(x, w)}
            if len(found) < 2 or (name != main and not new):
                continue
            measured = sum(x.n_recent for x in found) or 1
            for x in found:
                rest = [y for y in found if y is not x]
                others, before = _mean(rest, recent=True), _mean(rest, recent=False)
                ev.add(FactKind.cohort, f"{c.column}={x.value}", {
                    "column": c.column, "value": x.value, "entity": c.entity, "signal": name,
                    "worse": spec.worse, "threshold": float(getattr(cfg, spec.threshold)),
                    "measure": "ratio" if spec.agg == "median" else "difference",
                    "recent": round4(x.recent), "n_recent": x.n_recent,
                    "baseline": round4(x.baseline),
                    "n_baseline": x.n_baseline, "others_recent": round4(others),
                    "others_baseline": round4(before),
                    "new": x.value in new, "recent_share": round(x.n_recent / measured, 3),
                    "first_seen": x.first_seen.isoformat() if x.first_seen else None},
                    x.trace_ids)


def _mean(cohorts: list[Cohort], recent: bool) -> float | None:
    """The signal over several cohorts, in the recent window or the baseline (a mean of
    their aggregates weighted by samples: a median's is approximate)."""
    pairs = [(c.recent, c.n_recent) if recent else (c.baseline, c.n_baseline) for c in cohorts]
    weight = sum(n for v, n in pairs if v is not None)
    return sum(v * n for v, n in pairs if v is not None) / weight if weight else None


def _new(x: Cohort, w: Span) -> bool:
    """First seen shortly before the onset or after it: the onset is where the symptom
    shows, so the change that caused it may lead it by minutes (a rollout, or a cache
    that empties slowly), and some of its spans land before it."""
    return x.first_seen is not None and x.first_seen >= w.onset - NEW_LEAD



def round4(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)
