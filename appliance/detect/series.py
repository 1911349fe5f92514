"""A finding's main signal as a per-minute series from the span store, for the case's
metric window (and the export's chart)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from appliance.detect import operational, quality
from appliance.detect.model import Finding
from appliance.detect.windows import MODEL_CALL, SEEN
from appliance.domain.taxonomy import FailureType
from appliance.evals.store import ensure
from appliance.store.spans import SpanStore

# failure type -> (name, per-span value, which spans)
SERIES: dict[FailureType, tuple[str, str, str]] = {
    FailureType.hallucination: ("groundedness", quality.GROUNDED,
                                f"{quality.GROUNDED} IS NOT NULL"),
    FailureType.retrieval_drift: ("retrieval_score", quality.RETRIEVAL,
                                  f"{quality.RETRIEVAL} IS NOT NULL"),
    FailureType.coherence_degradation: ("coherence", quality.COHERENCE,
                                        f"{quality.COHERENCE} IS NOT NULL"),
    FailureType.agent_loop: ("tool_calls_per_minute", "1.0", "tool_name IS NOT NULL"),
    FailureType.prompt_regression: ("refusal_or_format_error_share",
                                    operational._share(operational.REFUSAL), MODEL_CALL),
    FailureType.context_overflow: ("input_tokens", "input_tokens",
                                   f"{MODEL_CALL} AND input_tokens IS NOT NULL"),
    FailureType.provider_error: ("provider_error_share",
                                 operational._share(operational.PROVIDER_FAILED), MODEL_CALL),
    FailureType.latency_cost_regression: ("ttft_s", "ttft_s",
                                          f"{MODEL_CALL} AND ttft_s IS NOT NULL"),
}


def window_for(store: SpanStore, finding: Finding, lookback: timedelta,
               now: datetime | None = None) -> dict[str, Any] | None:
    spec = SERIES.get(finding.failure_type)
    if spec is None:
        return None
    name, value, where = spec
    ensure(store.db)  # the quality series read the built-in scores' table
    agg = "sum" if finding.failure_type == FailureType.agent_loop else "avg"
    end = now or datetime.now(finding.onset_at.tzinfo if finding.onset_at else None)
    start = end - lookback
    group, key = (("provider", finding.context["provider"]) if "provider" in finding.context
                  else ("service_name", finding.service))
    rows = store.read(
        f"SELECT epoch(time_bucket(INTERVAL 1 MINUTE, {SEEN})) AS t, {agg}({value}) AS v "
        f"FROM spans WHERE {group} = ? AND {SEEN} >= ? AND {SEEN} < ? AND ({where}) "
        f"GROUP BY t ORDER BY t", [key, start, end])
    query = f"{agg}({value}) per minute where {group} = {key!r} and {where}"
    return {"name": name, "query": query[:4000], "start": start.isoformat(),
            "end": end.isoformat(),
            "points": [(float(r["t"]), float(r["v"])) for r in rows if r["v"] is not None]}
