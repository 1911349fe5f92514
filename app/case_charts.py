"""Plotly figures of the Cases pages. Pure: data in, figure out (unit-testable).

Times are drawn as naive UTC, like the other console charts' axes read.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from appliance.cases.model import MetricWindow
from appliance.console.change_markers import add_markers, utc

ONSET_COLOUR = "#d62728"
_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "height": 280,
                           "showlegend": False}


def metric_window(window: MetricWindow, onset_at: str | None,
                  changes: list[dict[str, Any]]) -> go.Figure:
    """A case's metric window: its points, the onset as a red line, changes as markers."""
    points = window.points
    times = [pd.Timestamp(t, unit="s") for t, _ in points]
    fig = go.Figure(go.Scatter(x=times, y=[v for _, v in points], mode="lines+markers",
                               name=window.name or "value",
                               hovertemplate="%{x|%H:%M} UTC<br>%{y:.4g}<extra></extra>"))
    fig.update_layout(**_LAYOUT)
    fig.update_xaxes(range=[utc(window.start), utc(window.end)])
    if onset_at:
        at = utc(onset_at)
        fig.add_shape(type="line", xref="x", yref="paper", x0=at, x1=at, y0=0, y1=1,
                      line={"color": ONSET_COLOUR, "width": 2, "dash": "dash"}, name="onset")
        fig.add_annotation(x=at, y=1.02, xref="x", yref="paper", text="onset", showarrow=False,
                           yanchor="bottom", font={"color": ONSET_COLOUR, "size": 11})
    return add_markers(fig, changes)


def counts(by: dict[str, int], label: str) -> go.Figure:
    """A small horizontal bar chart of case counts (by type or by status)."""
    df = pd.DataFrame({"name": list(by), "cases": list(by.values())})
    fig = px.bar(df, x="cases", y="name", orientation="h", text="cases",
                 labels={"name": "", "cases": label})
    fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      height=max(140, 28 * len(by) + 60), showlegend=False)
    fig.update_xaxes(dtick=1 if max(by.values(), default=0) <= 10 else None, rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return fig
