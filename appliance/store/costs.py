"""Cost of model calls from their token counts and the `prices` setting.

A span counts when it carries token counts; its model is the response model,
else the requested one. Prices are resolved in Python (``appliance.pricing``)
for the few distinct models of the range and handed to DuckDB as parameter
lists, so the grouping, summing and ranking stay in one SQL pass per view.

Unpriced models (no price matches, or no model name at all) keep their token
counts in ``unpriced_*_tokens`` and add nothing to ``cost``; a group made only of
unpriced calls has ``cost: null``, never 0. Days are UTC days.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance import pricing
from appliance.settings import Price
from appliance.store.queries import TimeRange
from appliance.store.spans import SpanStore

NO_MODEL = "(no model)"

_BASE = """
WITH p AS (
    SELECT unnest(?::VARCHAR[]) AS model, unnest(?::DOUBLE[]) AS pin,
           unnest(?::DOUBLE[]) AS pout
),
calls AS (
    SELECT s.trace_id, s.service_name AS service,
           CAST(date_trunc('day', s.start_time AT TIME ZONE 'UTC') AS DATE) AS day,
           coalesce(s.response_model, s.request_model, ?) AS model,
           coalesce(s.input_tokens, 0) AS tin, coalesce(s.output_tokens, 0) AS tout,
           s.start_time
    FROM spans s
    WHERE s.start_time >= ? AND s.start_time < ?
      AND (s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL) {filters}
),
priced AS (
    SELECT calls.*, p.pin IS NOT NULL AS is_priced,
           (tin * p.pin + tout * p.pout) / 1e6 AS cost
    FROM calls LEFT JOIN p USING (model)
)
"""
_SUMS = """
    sum(cost) AS cost,
    count(*) AS calls,
    sum(tin) AS input_tokens, sum(tout) AS output_tokens,
    coalesce(sum(tin) FILTER (WHERE NOT is_priced), 0) AS unpriced_input_tokens,
    coalesce(sum(tout) FILTER (WHERE NOT is_priced), 0) AS unpriced_output_tokens,
    count(*) FILTER (WHERE NOT is_priced) AS unpriced_calls
"""


class CostQuery:
    """The cost views of one time range and filter set."""

    def __init__(self, store: SpanStore, prices: Mapping[str, Price], rng: TimeRange,
                 service: str | None = None, model: str | None = None) -> None:
        self.store, self.rng = store, rng
        filters, self._filter_params = [], []
        if service:
            filters.append("AND s.service_name = ?")
            self._filter_params.append(service)
        if model:
            filters.append("AND (s.request_model = ? OR s.response_model = ?)")
            self._filter_params += [model, model]
        self._base = _BASE.format(filters=" ".join(filters))
        self.prices = self._resolve(prices)

    def _resolve(self, prices: Mapping[str, Price]) -> dict[str, tuple[str, Price]]:
        """Model name as stored -> (price key, price), for the models of the range."""
        rows = self.store.read(
            "SELECT DISTINCT coalesce(response_model, request_model) AS model FROM spans "
            "WHERE start_time >= ? AND start_time < ? "
            "AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)", self.rng.params)
        out = {}
        for r in rows:
            if (hit := pricing.resolve(r["model"], prices)) is not None:
                out[r["model"]] = hit
        return out

    def _params(self) -> list[Any]:
        models = list(self.prices)
        return [models, [self.prices[m][1].input_per_million for m in models],
                [self.prices[m][1].output_per_million for m in models], NO_MODEL,
                *self.rng.params, *self._filter_params]

    def _run(self, select: str, tail: list[Any] | None = None) -> list[dict[str, Any]]:
        rows = self.store.read(self._base + select, [*self._params(), *(tail or [])])
        for r in rows:
            for k in ("input_tokens", "output_tokens", "unpriced_input_tokens",
                      "unpriced_output_tokens"):
                if k in r:
                    r[k] = int(r[k] or 0)
            if "cost" in r and r["cost"] is not None:
                r["cost"] = float(r["cost"])
        return rows

    def groups(self) -> dict[str, Any]:
        """Totals and the per model / service / day / day-and-model groups, in one pass
        (GROUPING SETS), so the range is scanned once for all of them."""
        rows = self._run(
            f"SELECT model, service, day, grouping(model) AS g_model, "
            f"grouping(service) AS g_service, grouping(day) AS g_day, {_SUMS}, "
            "count(DISTINCT trace_id) AS requests FROM priced "
            "GROUP BY GROUPING SETS ((), (model), (service), (day), (day, model))")
        out: dict[str, list[dict[str, Any]]] = {"totals": [], "by_model": [], "by_service": [],
                                                "by_day": [], "by_day_and_model": []}
        for r in rows:
            kind = {(1, 1, 1): "totals", (0, 1, 1): "by_model", (1, 0, 1): "by_service",
                    (1, 1, 0): "by_day", (0, 1, 0): "by_day_and_model"}[
                (r.pop("g_model"), r.pop("g_service"), r.pop("g_day"))]
            keep = {"totals": (), "by_model": ("model",), "by_service": ("service",),
                    "by_day": ("day",), "by_day_and_model": ("day", "model")}[kind]
            for k in ("model", "service", "day"):
                if k not in keep:
                    r.pop(k)
            if "day" in r:
                r["day"] = r["day"].isoformat()
            out[kind].append(r)
        totals = out["totals"][0] if out["totals"] else {}
        totals = {**{"cost": None, "calls": 0, "input_tokens": 0, "output_tokens": 0,
                     "unpriced_input_tokens": 0, "unpriced_output_tokens": 0,
                     "unpriced_calls": 0, "requests": 0}, **totals}
        for r in (totals, *out["by_day"]):
            r["cost_per_request"] = (r["cost"] / r["requests"]
                                     if r["cost"] is not None and r["requests"] else None)
        for r in out["by_model"]:
            hit = self.prices.get(r["model"])
            r["priced"] = hit is not None
            r["price_key"] = hit[0] if hit else None
            r["price"] = hit[1].model_dump() if hit else None

        def by_cost(r: dict[str, Any]) -> tuple[bool, float, int]:
            return (r["cost"] is None, -(r["cost"] or 0),
                    -(r["input_tokens"] + r["output_tokens"]))

        return {"totals": totals, "by_model": sorted(out["by_model"], key=by_cost),
                "by_service": sorted(out["by_service"], key=by_cost),
                "by_day": sorted(out["by_day"], key=lambda r: r["day"]),
                "by_day_and_model": sorted(out["by_day_and_model"],
                                           key=lambda r: (r["day"], r["model"]))}

    def requests(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most expensive requests (traces) of the range."""
        rows = self._run(
            f"SELECT trace_id, min(start_time) AS start_time, arg_min(service, start_time) "
            f"AS service, list(DISTINCT model ORDER BY model) AS models, {_SUMS} "
            "FROM priced GROUP BY trace_id "
            "ORDER BY cost DESC NULLS LAST, input_tokens + output_tokens DESC, trace_id "
            "LIMIT ?", [limit])
        for r in rows:
            r["start_time"] = r["start_time"].isoformat()
        return rows

    def report(self, limit: int = 50) -> dict[str, Any]:
        groups = self.groups()
        return {"start": self.rng.start.isoformat(), "end": self.rng.end.isoformat(),
                **groups, "requests": self.requests(limit),
                "unpriced_models": sorted(m["model"] for m in groups["by_model"]
                                          if not m["priced"])}
