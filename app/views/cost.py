"""Cost: per request, service, model and day from token counts and the `prices` setting."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from appliance.console import charts, shared
from appliance.console.panels import panel
from appliance.console.safe_text import md

RANGES = ["24 hours", "7 days", "30 days", "90 days", "12 months", "1 hour", "6 hours"]


def usd(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def compact(n: int) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def render() -> None:
    st.title("Cost")
    c1, c2, c3 = st.columns(3)
    with c1:
        window = shared.time_window("co_range", "7 days", RANGES)
    options = shared.facets(window) or {}
    with c2:
        service = shared.choice("Service", options.get("services"), "co_service")
    with c3:
        model = shared.choice("Model", options.get("models"), "co_model")
    with panel("Cost"):
        report = shared.daemon().cost(start=window.start, end=window.end, service=service,
                                      model=model, limit=50)
        _report(report)


def _report(r: dict[str, Any]) -> None:
    t = r["totals"]
    c = st.columns(4)
    c[0].metric("Total cost", usd(t["cost"]))
    c[1].metric("Requests", f"{t['requests']:,}")
    c[2].metric("Cost per request", usd(t["cost_per_request"]))
    c[3].metric("Tokens in / out", f"{compact(t['input_tokens'])} / {compact(t['output_tokens'])}")
    if r["unpriced_models"]:
        st.warning("Unpriced models (no entry in the `prices` setting; their tokens are "
                   "counted, their cost is not): "
                   + ", ".join(md(m, 60) for m in r["unpriced_models"]),
                   icon=":material/money_off:")
    if not t["calls"]:
        st.info("No model calls with token counts in this range.")
        return
    left, right = st.columns(2)
    with left:
        _priced_chart("**Cost per day by model** (UTC days)",
                      charts.cost_by_day(r["by_day_and_model"]), "cost-by-day")
    with right:
        _priced_chart("**Cost per request, per day** (trend)",
                      charts.cost_per_request(r["by_day"]), "cost-per-request")
    st.markdown("**By model**")
    st.dataframe(pd.DataFrame([{
        "model": m["model"], "priced as": m["price_key"] or "UNPRICED",
        "cost": usd(m["cost"]), "calls": m["calls"], "input tokens": m["input_tokens"],
        "output tokens": m["output_tokens"],
        "price in/out per M": (f"{m['price']['input_per_million']:g} / "
                               f"{m['price']['output_per_million']:g}" if m["price"] else "—"),
    } for m in r["by_model"]]), hide_index=True)
    st.markdown("**By service**")
    st.dataframe(pd.DataFrame([{
        "service": s["service"], "cost": usd(s["cost"]), "requests": s["requests"],
        "calls": s["calls"], "unpriced tokens": s["unpriced_input_tokens"]
        + s["unpriced_output_tokens"],
    } for s in r["by_service"]]), hide_index=True)
    st.markdown("**By day**")
    st.dataframe(pd.DataFrame([{
        "day": d["day"], "cost": usd(d["cost"]), "requests": d["requests"],
        "cost/request": usd(d["cost_per_request"]),
        "unpriced tokens": d["unpriced_input_tokens"] + d["unpriced_output_tokens"],
    } for d in r["by_day"]]), hide_index=True)
    st.markdown("**Most expensive requests**")
    st.dataframe(pd.DataFrame([{
        "start": q["start_time"][:19], "service": q["service"], "cost": usd(q["cost"]),
        "models": ", ".join(q["models"]),
        "tokens": q["input_tokens"] + q["output_tokens"], "trace id": q["trace_id"],
    } for q in r["requests"]]), hide_index=True)


def _priced_chart(title: str, fig: Any, key: str) -> None:
    st.markdown(title)
    if fig is None:
        st.info("Nothing priced in this range.")
    else:
        st.plotly_chart(fig, key=key)
