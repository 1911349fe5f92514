"""The probes of everything around the signals: trace shapes, input size against the
context window, quality by conversation turn, providers across services (blast radius)
and the change events near the onset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.detect import operational, quality
from appliance.detect.windows import MODEL_CALL, SEEN, attribute
from appliance.domain.change_kinds import ChangeKind
from appliance.ingest.conventions import MODEL_CONTEXT_WINDOW, TOOL_CALL_ARGUMENTS
from appliance.rca.facts import Evidence, Fact, FactKind
from appliance.rca.reads import TRACE_SAMPLE, Span
from appliance.rca.signals import MAIN_SIGNAL, round4, share
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore
from appliance.times import parse_time

# The cohorts a change of each kind shows up in (its ``to`` is one of their values).
CHANGE_COLUMNS: dict[str, tuple[str, ...]] = {
    ChangeKind.prompt_template: ("prompt_template_version",),
    ChangeKind.index_refresh: ("index_version", "embedding_model"),
    ChangeKind.model_swap: ("response_model", "request_model"),
    ChangeKind.config: ("temperature", "top_k"),
}



def trace_shapes(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    scope, params = w.where()
    args = attribute(TOOL_CALL_ARGUMENTS)
    rows = store.read(
        f"SELECT tool_name AS tool, any_value(agent_name) AS agent, {args} AS args, trace_id, "
        f"count(*) AS n, max({SEEN}) AS seen FROM spans WHERE {scope} AND {SEEN} >= ? "
        "AND tool_name IS NOT NULL GROUP BY tool_name, args, trace_id "
        "HAVING count(*) >= ? ORDER BY n DESC",
        [*params, w.onset, cfg.loop_repeats])
    by_tool: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_tool.setdefault(str(r["tool"]), []).append(r)
    for tool, loops in by_tool.items():
        ev.add(FactKind.trace_shape, f"repeated_tool:{tool}", {
            "tool": tool, "agent": loops[0]["agent"], "arguments": loops[0]["args"],
            "max_identical_calls": int(loops[0]["n"]),
            "looping_traces": len({r["trace_id"] for r in loops}),
            # when the first looping run was seen whole: a change before it can have set
            # it off, though the run's first spans start before the change
            "first_loop_seen": min(r["seen"] for r in loops).isoformat(),
            "loop_repeats": cfg.loop_repeats}, [r["trace_id"] for r in loops])
    per_trace = store.read(
        "SELECT median(n) FILTER (WHERE t >= ?) AS recent, median(n) FILTER (WHERE t < ?) "
        "AS baseline, count(*) FILTER (WHERE t >= ?) AS n_recent FROM (SELECT trace_id, "
        f"count(*) AS n, max({SEEN}) AS t FROM spans WHERE {scope} GROUP BY trace_id)",
        [w.onset, w.onset, w.onset, *params])[0]
    if per_trace["n_recent"]:
        ev.add(FactKind.trace_shape, "spans_per_trace", {
            "recent": round4(per_trace["recent"]), "baseline": round4(per_trace["baseline"])})


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
            k: (round4(v) if k != "over_window_recent" else int(v)) for k, v in r.items()
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
               {k: round4(v) for k, v in r.items() if k != "n"} | {"signal": "coherence"})


def providers(store: SpanStore, ev: Evidence, w: Span, cfg: DetectConfig) -> None:
    """Each provider the case's service calls (or the case names): its failed-call
    share across every service, and which services it fails in (blast radius)."""
    scope, params = w.where()
    used = {r["p"] for r in store.read(
        f"SELECT DISTINCT provider AS p FROM spans WHERE {scope} AND service_name = ? "
        "AND provider IS NOT NULL", [*params, ev.service])}
    if ev.provider:
        used.add(ev.provider)
    failed = share(operational.PROVIDER_FAILED)
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
            "recent": round4(recent), "baseline": round4(base), "n_recent": n_recent,
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


