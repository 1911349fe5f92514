"""The Cases pages' figures and the change markers: pure functions, data in, figure out."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from appliance.cases.model import MetricWindow
from appliance.console import case_charts, change_markers

CHANGES = [
    {"id": "chg_2", "kind": "prompt_template", "service": "rag", "from": "v6", "to": "v7",
     "at": "2026-05-01T10:05:00Z"},
    {"id": "chg_1", "kind": "deploy", "service": "rag", "from": None, "to": "<b>build</b>",
     "at": "2026-05-01T10:01:00+02:00"},
]


def test_markers_are_lines_and_labels_at_each_change_in_utc() -> None:
    fig = change_markers.add_markers(go.Figure(), CHANGES)
    xs = [pd.Timestamp(s.x0) for s in fig.layout.shapes]
    assert xs == [pd.Timestamp("2026-05-01T08:01:00"), pd.Timestamp("2026-05-01T10:05:00")]
    labels = [a.text for a in fig.layout.annotations]
    # markup from span values stays text
    assert labels == ["deploy &lt;b&gt;build&lt;/b&gt;", "prompt_template v6 → v7"]


def test_marker_labels_name_the_service_when_the_chart_covers_several() -> None:
    assert change_markers.label(CHANGES[0], with_service=True) == "rag: prompt_template v6 → v7"


def test_metric_window_has_its_points_the_onset_and_the_changes() -> None:
    window = MetricWindow.model_validate({
        "name": "ttft_s", "query": "q", "start": "2026-05-01T10:00:00Z",
        "end": "2026-05-01T10:10:00Z",
        "points": [[pd.Timestamp("2026-05-01T10:00:00Z").timestamp() + 60 * i, 0.3 + i]
                   for i in range(10)]})
    fig = case_charts.metric_window(window, "2026-05-01T10:04:00Z", CHANGES[:1])
    assert len(fig.data[0].x) == 10
    assert pd.Timestamp(fig.data[0].x[0]) == pd.Timestamp("2026-05-01T10:00:00")
    assert [s.name for s in fig.layout.shapes] == ["onset", "change chg_2"]
    assert pd.Timestamp(fig.layout.shapes[0].x0) == pd.Timestamp("2026-05-01T10:04:00")


def test_counts_has_one_bar_per_name() -> None:
    fig = case_charts.counts({"open": 2, "resolved": 0, "verified": 1}, "cases")
    assert list(fig.data[0].y) == ["open", "resolved", "verified"]
    assert list(fig.data[0].x) == [2, 0, 1]
