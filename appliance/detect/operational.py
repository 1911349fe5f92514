"""Operational detectors: agent loops, prompt regressions, context overflow, provider
errors, latency/cost regressions (signals as docs/architecture.md lists them)."""

from __future__ import annotations

from appliance.detect.model import Finding, Signal
from appliance.detect.windows import (
    MODEL_CALL,
    SEEN,
    Windows,
    attribute,
    compare,
    evidence,
    new_values,
)
from appliance.domain.taxonomy import FailureType
from appliance.ingest.conventions import MODEL_CONTEXT_WINDOW, TOOL_CALL_ARGUMENTS
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

TOOL_ARGS = attribute(TOOL_CALL_ARGUMENTS)
REFUSAL = ("(list_contains(finish_reasons, 'content_filter') "
           "OR error_type IN ('format_error', 'refusal', 'invalid_format'))")
WINDOW = f"TRY_CAST({attribute(MODEL_CONTEXT_WINDOW)} AS DOUBLE)"
# Failures of the call itself rather than of what was asked (those have their own types).
NOT_PROVIDER = ("'format_error', 'refusal', 'invalid_format', 'context_length_exceeded', "
                "'max_iterations_exceeded'")
PROVIDER_FAILED = (f"status_code = 'error' AND coalesce(error_type, '') NOT IN ({NOT_PROVIDER})")


def _share(expr: str) -> str:
    return f"CASE WHEN {expr} THEN 1.0 ELSE 0.0 END"


def agent_loop(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    rows = store.read(
        f"SELECT service_name AS s, trace_id, tool_name, {TOOL_ARGS} AS args, count(*) AS n, "
        f"min(start_time) AS t FROM spans WHERE {SEEN} >= ? AND {SEEN} < ? "
        f"AND tool_name IS NOT NULL GROUP BY ALL HAVING count(*) >= ? ORDER BY t",
        [w.recent_start, w.now, cfg.loop_repeats])
    limits = {r["s"]: int(r["n"]) for r in store.read(
        "SELECT service_name AS s, count(DISTINCT trace_id) AS n FROM spans "
        f"WHERE {SEEN} >= ? AND {SEEN} < ? AND error_type = 'max_iterations_exceeded' "
        "GROUP BY s", [w.recent_start, w.now])}
    out = []
    for service in {r["s"] for r in rows} | set(limits):
        loops = [r for r in rows if r["s"] == service]
        per_trace = store.read(
            "SELECT median(n) FILTER (WHERE t >= ?) AS recent, "
            "median(n) FILTER (WHERE t < ?) AS baseline FROM (SELECT trace_id, count(*) AS n, "
            f"max({SEEN}) AS t FROM spans WHERE service_name = ? AND {SEEN} >= ? "
            f"AND {SEEN} < ? GROUP BY trace_id)",
            [w.recent_start, w.recent_start, service, w.baseline_start, w.now])[0]
        signals = [Signal("max_identical_tool_calls", max((int(r["n"]) for r in loops), default=0),
                          None, w.label),
                   Signal("looping_traces", len({r["trace_id"] for r in loops}), 0, w.label),
                   Signal("runs_hitting_iteration_limit", limits.get(service, 0), 0, w.label)]
        signals.append(Signal("spans_per_trace_median", per_trace["recent"],
                              per_trace["baseline"], w.label))
        if loops:
            signals.append(Signal("repeated_tool", f"{loops[0]['tool_name']}({loops[0]['args']})",
                                  None, w.label))
        traces = list(dict.fromkeys(r["trace_id"] for r in loops))[:10]
        out.append(Finding(FailureType.agent_loop, service, f"agent_loop:{service}", signals,
                           traces, loops[0]["t"] if loops else None))
    return out


def prompt_regression(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    out = []
    for service, c in compare(store, w, _share(REFUSAL), MODEL_CALL).items():
        if not c.enough(cfg) or c.recent - c.baseline < cfg.rate_rise:  # type: ignore[operator]
            continue
        versions = new_values(store, w, service, "prompt_template_version")
        if not versions:
            continue  # refusals without a template change are not a prompt regression
        traces, onset = evidence(store, w, service, REFUSAL)
        out.append(Finding(
            FailureType.prompt_regression, service, f"prompt_regression:{service}",
            [Signal("refusal_or_format_error_share", round(c.recent or 0, 3),
                    round(c.baseline or 0, 3), w.label),
             Signal("new_prompt_template_version", ", ".join(versions), None, w.label)],
            traces, onset))
    return out


def context_overflow(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    full = (f"(list_contains(finish_reasons, 'length') "
            f"OR error_type = 'context_length_exceeded' "
            f"OR ({WINDOW} > 0 AND input_tokens / {WINDOW} >= {float(cfg.context_fill)}))")
    out = []
    tokens = compare(store, w, "input_tokens", f"{MODEL_CALL} AND input_tokens IS NOT NULL",
                     agg="median")
    for service, c in compare(store, w, _share(full), MODEL_CALL).items():
        if not c.enough(cfg) or c.recent - c.baseline < cfg.rate_rise:  # type: ignore[operator]
            continue
        signals = [Signal("near_or_over_window_share", round(c.recent or 0, 3),
                          round(c.baseline or 0, 3), w.label)]
        t = tokens.get(service)
        if t is not None:
            signals.append(Signal("input_tokens_median", t.recent, t.baseline, w.label))
        traces, onset = evidence(store, w, service, full)
        out.append(Finding(FailureType.context_overflow, service, f"context_overflow:{service}",
                           signals, traces, onset))
    return out


def provider_error(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    out = []
    rates = compare(store, w, _share(PROVIDER_FAILED), f"{MODEL_CALL} AND provider IS NOT NULL",
                    group="provider")
    for provider, c in rates.items():
        if (not c.enough(cfg) or (c.recent or 0) < cfg.provider_error_rate
                or c.recent - c.baseline < cfg.rate_rise):  # type: ignore[operator]
            continue
        blast = store.read(
            f"SELECT service_name AS s, count(*) AS n FROM spans WHERE provider = ? "
            f"AND {SEEN} >= ? AND {SEEN} < ? AND {PROVIDER_FAILED} "
            f"GROUP BY s ORDER BY n DESC", [provider, w.recent_start, w.now])
        if not blast:
            continue
        service = blast[0]["s"]
        traces, onset = evidence(store, w, provider, PROVIDER_FAILED, group="provider")
        out.append(Finding(
            FailureType.provider_error, service, f"provider_error:{provider}",
            [Signal("provider_error_share", round(c.recent or 0, 3), round(c.baseline or 0, 3),
                    w.label),
             Signal("provider", provider, None, w.label),
             Signal("services_affected", ", ".join(b["s"] for b in blast), None, w.label)],
            traces, onset, context={"provider": provider}))
    return out


def latency_cost_regression(store: SpanStore, cfg: DetectConfig, w: Windows) -> list[Finding]:
    errors = compare(store, w, _share("status_code = 'error'"), MODEL_CALL)
    inputs = compare(store, w, "input_tokens", f"{MODEL_CALL} AND input_tokens IS NOT NULL",
                     agg="median")
    risen: dict[str, list[Signal]] = {}
    for metric in ("ttft_s", "duration_ms", "output_tokens"):
        medians = compare(store, w, metric, f"{MODEL_CALL} AND {metric} IS NOT NULL",
                          agg="median")
        for service, c in medians.items():
            if c.enough(cfg) and c.baseline and c.recent >= cfg.latency_ratio * c.baseline:  # type: ignore[operator]
                risen.setdefault(service, []).append(
                    Signal(f"{metric}_median", round(c.recent or 0, 3), round(c.baseline, 3),
                           w.label))
    out = []
    for service, signals in risen.items():
        e, i = errors.get(service), inputs.get(service)
        if e is not None and e.enough(cfg) and e.recent - e.baseline >= cfg.rate_rise / 2:  # type: ignore[operator]
            continue  # errors rose too: a provider or overflow problem, judged elsewhere
        if i is not None and i.enough(cfg) and i.recent >= cfg.latency_ratio * (i.baseline or 0):  # type: ignore[operator]
            continue  # bigger inputs explain it: context growth, judged elsewhere
        traces, onset = evidence(store, w, service, MODEL_CALL)
        out.append(Finding(FailureType.latency_cost_regression, service,
                           f"latency_cost_regression:{service}", signals, traces, onset))
    return out
