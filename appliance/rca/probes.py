"""Each probe reads one kind of fact from the span store (or the change events) into
the evidence. Signal expressions are the detectors' own (``appliance/detect``), so
the RCA judges the same numbers the detectors fired on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.detect import operational, quality
from appliance.detect.windows import MODEL_CALL, SEEN, attribute
from appliance.domain.change_kinds import ChangeKind
from appliance.domain.taxonomy import FailureType
from appliance.ingest.conventions import (
    INDEX_EMBEDDING_MODEL,
    MODEL_CONTEXT_WINDOW,
    REQUEST_TEMPERATURE,
    RETRIEVAL_TOP_K,
    TOOL_CALL_ARGUMENTS,
)
from appliance.rca.facts import Evidence, Fact, FactKind, Value
from appliance.rca.reads import TRACE_SAMPLE, Agg, Cohort, Span, change_point, cohorts, stat
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore
from appliance.times import parse_time


def _share(expr: str) -> str:
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
    SignalSpec("refusal_or_format_error_share", _share(operational.REFUSAL), MODEL_CALL, "avg",
               1, "rate_rise"),
    SignalSpec("overflow_share", _share(OVERFLOW), MODEL_CALL, "avg", 1, "rate_rise"),
    SignalSpec("provider_error_share", _share(operational.PROVIDER_FAILED), MODEL_CALL, "avg", 1,
               "rate_rise"),
    SignalSpec("error_share", _share("status_code = 'error'"), MODEL_CALL, "avg", 1,
               "rate_rise"),
    SignalSpec("iteration_limit_share", _share(ITERATION_LIMIT), "agent_name IS NOT NULL "
               "AND operation = 'invoke_agent'", "avg", 1, "rate_rise"),
    SignalSpec("embedding_mismatch_share", _share(f"embedding_model <> {_INDEX_MODEL}"),
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
# The cohorts a change of each kind shows up in (its ``to`` is one of their values).
CHANGE_COLUMNS: dict[str, tuple[str, ...]] = {
    ChangeKind.prompt_template: ("prompt_template_version",),
    ChangeKind.index_refresh: ("index_version", "embedding_model"),
    ChangeKind.model_swap: ("response_model", "request_model"),
    ChangeKind.config: ("temperature", "top_k"),
}


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
                         detected - recent)
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


def signals(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    for spec in SIGNALS:
        s = stat(store, w, spec.value, spec.where, spec.agg)
        if s.n_recent == 0 and s.n_baseline == 0:
            continue  # the service does not send it: telemetry says so
        values: dict[str, Value] = {
            "recent": _r(s.recent), "baseline": _r(s.baseline), "n_recent": s.n_recent,
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
                    "recent": _r(x.recent), "n_recent": x.n_recent, "baseline": _r(x.baseline),
                    "n_baseline": x.n_baseline, "others_recent": _r(others),
                    "others_baseline": _r(before),
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


def trace_shapes(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    scope, params = w.where()
    args = attribute(TOOL_CALL_ARGUMENTS)
    rows = store.read(
        f"SELECT tool_name AS tool, any_value(agent_name) AS agent, {args} AS args, trace_id, "
        f"count(*) AS n FROM spans WHERE {scope} AND {SEEN} >= ? AND tool_name IS NOT NULL "
        "GROUP BY tool_name, args, trace_id HAVING count(*) >= ? ORDER BY n DESC",
        [*params, w.onset, cfg.loop_repeats])
    by_tool: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_tool.setdefault(str(r["tool"]), []).append(r)
    for tool, loops in by_tool.items():
        ev.add(FactKind.trace_shape, f"repeated_tool:{tool}", {
            "tool": tool, "agent": loops[0]["agent"], "arguments": loops[0]["args"],
            "max_identical_calls": int(loops[0]["n"]),
            "looping_traces": len({r["trace_id"] for r in loops}),
            "loop_repeats": cfg.loop_repeats}, [r["trace_id"] for r in loops])
    per_trace = store.read(
        "SELECT median(n) FILTER (WHERE t >= ?) AS recent, median(n) FILTER (WHERE t < ?) "
        "AS baseline, count(*) FILTER (WHERE t >= ?) AS n_recent FROM (SELECT trace_id, "
        f"count(*) AS n, max({SEEN}) AS t FROM spans WHERE {scope} GROUP BY trace_id)",
        [w.onset, w.onset, w.onset, *params])[0]
    if per_trace["n_recent"]:
        ev.add(FactKind.trace_shape, "spans_per_trace", {
            "recent": _r(per_trace["recent"]), "baseline": _r(per_trace["baseline"])})


def input_size(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    scope, params = w.where()
    window = f"TRY_CAST({attribute(MODEL_CONTEXT_WINDOW)} AS DOUBLE)"
    fill = f"CASE WHEN {window} > 0 THEN input_tokens / {window} END"
    r = store.read(
        f"SELECT quantile_cont(f, 0.95) FILTER (WHERE seen >= ?) AS fill_p95_recent, "
        "quantile_cont(f, 0.95) FILTER (WHERE seen < ?) AS fill_p95_baseline, "
        "avg(CASE WHEN f >= ? THEN 1.0 ELSE 0.0 END) FILTER (WHERE seen >= ? AND f IS NOT NULL) "
        "AS near_window_share_recent, "
        "avg(CASE WHEN f >= ? THEN 1.0 ELSE 0.0 END) FILTER (WHERE seen < ? AND f IS NOT NULL) "
        "AS near_window_share_baseline, "
        "count(*) FILTER (WHERE seen >= ? AND error_type = 'context_length_exceeded') "
        "AS over_window_recent, count(f) AS n, list_slice(list(DISTINCT trace_id ORDER BY "
        "trace_id) FILTER (WHERE seen >= ? AND (f >= ? OR error_type = "
        f"'context_length_exceeded')), 1, {TRACE_SAMPLE}) AS traces "
        f"FROM (SELECT trace_id, {SEEN} AS seen, error_type, {fill} AS f FROM spans "
        f"WHERE {scope} AND {MODEL_CALL})",
        [w.onset, w.onset, cfg.context_fill, w.onset, cfg.context_fill, w.onset, w.onset,
         w.onset, cfg.context_fill, *params])[0]
    if r["n"]:
        ev.add(FactKind.input_size, "context_window_fill", {
            k: (_r(v) if k != "over_window_recent" else int(v)) for k, v in r.items()
            if k not in ("n", "traces")} | {"context_fill": cfg.context_fill},
            list(r["traces"] or []))


def turn_trend(store: SpanStore, ev: Evidence, w: Span) -> None:
    """Quality early against late in conversations (a coherence problem grows with the
    turn index; a model problem does not)."""
    scope, params = w.where()
    r = store.read(
        "SELECT avg(v) FILTER (WHERE turn <= 2 AND seen >= ?) AS early_recent, "
        "avg(v) FILTER (WHERE turn >= 4 AND seen >= ?) AS late_recent, "
        "avg(v) FILTER (WHERE turn <= 2 AND seen < ?) AS early_baseline, "
        "avg(v) FILTER (WHERE turn >= 4 AND seen < ?) AS late_baseline, count(v) AS n "
        f"FROM (SELECT {SEEN} AS seen, {quality.COHERENCE} AS v, row_number() OVER "
        "(PARTITION BY conversation_id ORDER BY start_time) AS turn FROM spans "
        f"WHERE {scope} AND {MODEL_CALL} AND conversation_id IS NOT NULL)",
        [w.onset] * 4 + params)[0]
    if r["n"] and r["early_recent"] is not None and r["late_recent"] is not None:
        ev.add(FactKind.turn_trend, "coherence_by_turn",
               {k: _r(v) for k, v in r.items() if k != "n"} | {"signal": "coherence"})


def providers(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    """Each provider the case's service calls (or the case names): its failed-call
    share across every service, and which services it fails in (blast radius)."""
    scope, params = w.where()
    used = {r["p"] for r in store.read(
        f"SELECT DISTINCT provider AS p FROM spans WHERE {scope} AND service_name = ? "
        "AND provider IS NOT NULL", [*params, ev.service])}
    if ev.provider:
        used.add(ev.provider)
    failed = _share(operational.PROVIDER_FAILED)
    for provider in sorted(used):
        rows = store.read(
            f"SELECT service_name AS s, avg({failed}) FILTER (WHERE {SEEN} >= ?) AS recent, "
            f"count(*) FILTER (WHERE {SEEN} >= ?) AS n_recent, "
            f"avg({failed}) FILTER (WHERE {SEEN} < ?) AS baseline, "
            f"count(*) FILTER (WHERE {SEEN} < ?) AS n_baseline FROM spans "
            f"WHERE {scope} AND {MODEL_CALL} AND provider = ? GROUP BY s ORDER BY s",
            [w.onset] * 4 + [*params, provider])
        n_recent = sum(int(r["n_recent"]) for r in rows)
        n_base = sum(int(r["n_baseline"]) for r in rows)
        if not n_recent:
            continue
        recent = sum((r["recent"] or 0) * r["n_recent"] for r in rows) / n_recent
        base = (sum((r["baseline"] or 0) * r["n_baseline"] for r in rows) / n_base
                if n_base else None)
        hit = [r["s"] for r in rows if r["recent"] is not None and r["n_recent"]
               and r["recent"] - (r["baseline"] or 0) >= cfg.rate_rise]
        errors = store.read(
            f"SELECT error_type AS e, count(*) AS n, list_slice(list(DISTINCT trace_id ORDER BY "
            f"trace_id), 1, {TRACE_SAMPLE}) AS traces FROM spans WHERE {scope} AND {SEEN} >= ? "
            f"AND provider = ? AND {operational.PROVIDER_FAILED} GROUP BY e ORDER BY n DESC, e "
            "LIMIT 3", [*params, w.onset, provider])
        ev.add(FactKind.provider, provider, {
            "recent": _r(recent), "baseline": _r(base), "n_recent": n_recent,
            "n_baseline": n_base, "services_calling": len(rows),
            "services_affected": len(hit), "affected": ", ".join(hit),
            "case_service_affected": ev.service in hit,
            "error_types": ", ".join(f"{e['e']}:{e['n']}" for e in errors),
            "threshold": cfg.rate_rise},
            list(dict.fromkeys(t for e in errors for t in e["traces"]))[:TRACE_SAMPLE])


def change_events(changes: Sequence[dict[str, Any]], ev: Evidence) -> None:
    """Each change near the onset with its lag and scope, and the cohort its new value
    matches in the case's service (how much of the traffic it reached: canary share).
    Scope: ``service`` (the case's own), ``shared_value`` (recorded against another
    service, a gateway say, but its new model, template or index is in this service's
    traffic) or ``other_service``."""
    cohort_facts, main = ev.of(FactKind.cohort), MAIN_SIGNAL[ev.detected_type]
    for c in sorted(changes, key=lambda c: (c["at"] or "", c["id"])):
        at = parse_time(c["at"], "at")
        same = c["service"] == ev.service
        match = _matching_cohort(c, cohort_facts, main)
        scope = "service" if same else "shared_value" if match else "other_service"
        ev.add(FactKind.change, c["id"], {
            "change_kind": c["kind"], "service": c["service"], "from": c["from"], "to": c["to"],
            "at": c["at"], "source": c["source"],
            "lag_s": round((ev.onset - at).total_seconds(), 1), "same_service": same,
            "scope": scope, "cohort": match.id if match else None,
            "canary_share": match.values["recent_share"] if match else None})


def _matching_cohort(change: dict[str, Any], facts: list[Fact], main: str) -> Fact | None:
    to = str(change["to"] or "")
    wanted = to.rsplit("=", 1)[-1].strip()  # a config change may say "top_k=48"
    columns = CHANGE_COLUMNS.get(change["kind"], ())
    hits = [f for f in facts if f.values["column"] in columns
            and str(f.values["value"]) in (to, wanted)]
    # The cohort of the detected type's signal first: the one the change must explain.
    hits.sort(key=lambda f: f.values["signal"] != main)
    return hits[0] if hits else None


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)
