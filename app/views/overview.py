"""Overview: request rate, errors, latency, TTFT, tokens, agents and evaluation scores."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from appliance.console import charts, promql, shared
from appliance.console.overview_queries import (
    Chart,
    Filters,
    evaluation,
    evaluation_names,
    overview,
)
from appliance.console.panels import panel
from appliance.console.timerange import Window


def render() -> None:
    st.title("Overview")
    cfg = shared.config()
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        window = shared.time_window("ov_range", "1 hour")
    options = shared.facets(window) or {}
    with c2:
        service = shared.choice("Service", options.get("services"), "ov_service")
    with c3:
        model = shared.choice("Model", options.get("models"), "ov_model")
    with c4:
        agent = shared.choice("Agent", options.get("agents"), "ov_agent")
    auto = st.toggle(f"Auto-refresh every {cfg.refresh_s} s", value=True, key="ov_auto")
    refresh = st.fragment(_charts, run_every=cfg.refresh_s if auto else None)
    refresh(window.label, Filters(service, model, agent))


def _charts(label: str, f: Filters) -> None:
    window = Window.last(label)  # a refresh moves the window forward
    source = promql.choose(shared.config(), window)
    if source is None:
        st.warning("No metrics store is configured (profile `byo` without "
                   "`byo_prometheus_url` / `byo_victoriametrics_url`).", icon=":material/warning:")
        return
    metrics = promql.Metrics(source)
    st.caption(f"{source.caption}. Step {window.step_s} s, rate window {window.rate_window}. "
               f"Updated {window.end:%H:%M:%S} UTC.")
    all_charts = overview(f, window.rate_window)
    columns = st.columns(2)
    for i, chart in enumerate(all_charts):
        with columns[i % 2]:
            _draw(metrics, chart, window, source)
    with panel("Evaluation scores over time (mean per evaluation)"):
        names = evaluation_names(metrics.metric_names("llm_evaluation_", window))
        chart = Chart("Evaluation scores", "score",
                      tuple(evaluation(n, f, window.rate_window) for n in names))
        _series_chart(metrics, chart, window, source,
                      empty="No evaluation scores in this range.")


def _draw(metrics: promql.Metrics, chart: Chart, window: Window, source: promql.Source) -> None:
    with panel(chart.title):
        _series_chart(metrics, chart, window, source)


def _series_chart(metrics: promql.Metrics, chart: Chart, window: Window,
                  source: promql.Source, empty: str = "No data in this range.") -> None:
    frames = []
    for s in chart.series:
        df = metrics.range(s.promql, window, s.legend)
        if s.name and not df.empty:
            df["series"] = s.name
        frames.append(df)
    data = pd.concat(frames) if frames else pd.DataFrame()
    if data.empty:
        st.info(empty)
    else:
        # change events of the range as vertical markers
        from appliance.console import change_markers

        fig = change_markers.overlay(charts.timeseries(data, chart.unit), window.start,
                                     window.end, change_markers.chosen("ov_service"))
        st.plotly_chart(fig, key=f"chart-{chart.title}")
    st.caption(f"Source: {source.name}",
               help="PromQL:\n\n" + "\n\n".join(f"`{s.promql}`" for s in chart.series))
