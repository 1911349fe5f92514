"""The Overview's PromQL, as in docs/metrics.md, with the page's filters as label matchers.

Filter values are user choices, so they go through ``appliance.filters`` (escaped
PromQL string literals); everything else in the text is fixed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.filters import label_matchers, label_name
from appliance.ingest.conventions import MODEL_CALL_OPERATIONS

# Model calls: the operations that are a request to a model (the detectors count the same).
MODEL_CALLS = f'gen_ai_operation_name=~"{"|".join(MODEL_CALL_OPERATIONS)}"'
ERROR = 'status_code="STATUS_CODE_ERROR"'
HAS_AGENT = 'gen_ai_agent_name!=""'


@dataclass(frozen=True)
class Filters:
    service: str | None = None
    model: str | None = None
    agent: str | None = None

    def matchers(self, *fixed: str) -> str:
        return label_matchers({"service_name": self.service,
                               "gen_ai_request_model": self.model,
                               "gen_ai_agent_name": self.agent}, *fixed)


@dataclass(frozen=True)
class Series:
    promql: str
    legend: tuple[str, ...] = ()  # labels that name each result series
    name: str = ""  # the series name when ``legend`` is empty


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    series: tuple[Series, ...]


def overview(f: Filters, w: str) -> list[Chart]:
    """Every chart of the Overview for a rate window ``w`` (e.g. ``300s``)."""
    calls = f.matchers(MODEL_CALLS)
    errors = f.matchers(MODEL_CALLS, ERROR)
    any_span = f.matchers()
    by_service, by_model = ("service_name",), ("gen_ai_request_model",)
    return [
        Chart("Request rate (model calls) by service", "calls/s", (Series(
            f"sum by (service_name) (rate(llm_calls_total{calls}[{w}]))", by_service),)),
        # "or ... * 0": a service without failed calls has no error series; show it at 0
        Chart("Error rate (model calls) by service", "share", (Series(
            f"(sum by (service_name) (rate(llm_calls_total{errors}[{w}])) "
            f"or sum by (service_name) (rate(llm_calls_total{calls}[{w}])) * 0) "
            f"/ sum by (service_name) (rate(llm_calls_total{calls}[{w}]))", by_service),)),
        Chart("Latency of model calls: p50 / p95 / p99", "seconds", tuple(Series(
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(llm_duration_seconds_bucket{calls}[{w}])))", name=f"p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99))),
        Chart("Time to first token p95 by model", "seconds", (Series(
            f"histogram_quantile(0.95, sum by (le, gen_ai_request_model) "
            f"(rate(llm_time_to_first_token_seconds_bucket{any_span}[{w}])))", by_model),)),
        Chart("Tokens/s (input + output)", "tokens/s", (
            Series(f"sum(rate(llm_usage_input_tokens_total{any_span}[{w}]))", name="input"),
            Series(f"sum(rate(llm_usage_output_tokens_total{any_span}[{w}]))", name="output"))),
        Chart("Tokens/s by model", "tokens/s", (Series(
            f"sum by (gen_ai_request_model) (rate(llm_usage_input_tokens_total{any_span}[{w}]))"
            f" + sum by (gen_ai_request_model) "
            f"(rate(llm_usage_output_tokens_total{any_span}[{w}]))", by_model),)),
        Chart("Calls per agent", "calls/s", (Series(
            f"sum by (gen_ai_agent_name) (rate(llm_calls_total{f.matchers(HAS_AGENT)}[{w}]))",
            ("gen_ai_agent_name",)),)),
    ]


def evaluation(name: str, f: Filters, w: str) -> Series:
    """Mean score of one evaluation (``llm_evaluation_<name>``) over the filtered spans."""
    m = f.matchers()
    metric = label_name(f"llm_evaluation_{name}")  # a metric name has the same grammar
    return Series(f"sum(rate({metric}_sum{m}[{w}])) / sum(rate({metric}_count{m}[{w}]))",
                  name=name)


def evaluation_names(metric_names: list[str]) -> list[str]:
    """``llm_evaluation_groundedness_count`` -> ``groundedness``."""
    prefix, suffix = "llm_evaluation_", "_count"
    return sorted(n[len(prefix):-len(suffix)] for n in metric_names
                  if n.startswith(prefix) and n.endswith(suffix))
