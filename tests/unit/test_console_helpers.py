"""The console's pure helpers: span tree, graph layout, store choice, steps, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.console import charts, promql
from appliance.console.config import ConsoleConfig
from appliance.console.overview_queries import evaluation_names
from appliance.console.safe_text import md
from appliance.console.timerange import RANGES, Window

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def span(sid: str, parent: str | None, start_ms: int, dur: float = 10, **kw: object) -> dict:
    return {"span_id": sid, "parent_span_id": parent, "name": f"s{sid}",
            "start_time": T0 + timedelta(milliseconds=start_ms), "duration_ms": dur,
            "status_code": "unset", **kw}


def test_tree_order_is_depth_first_by_start_and_tolerates_orphans_and_cycles() -> None:
    spans = [span("c", "a", 5), span("a", None, 0), span("b", "a", 1), span("d", "b", 2),
             span("o", "missing", 3), span("x", "y", 9), span("y", "x", 9)]
    order = [(s["span_id"], d) for s, d in charts.tree_order(spans)]
    assert order[:5] == [("a", 0), ("b", 1), ("d", 2), ("c", 1), ("o", 0)]
    assert {sid for sid, _ in order} == {"a", "b", "c", "d", "o"}  # a pure cycle has no root


def test_waterfall_one_bar_per_span_offset_from_trace_start() -> None:
    fig = charts.waterfall([span("a", None, 0, 100), span("b", "a", 40, 20,
                                                            status_code="error")])
    bar = fig.data[0]
    assert list(bar.base) == [0, 40] and list(bar.x) == [100, 20]
    assert bar.marker.color[1] == charts.ERROR_COLOUR


def test_graph_layers() -> None:
    layers = charts.layers(["s", "a", "b", "t", "loop"],
                           [("s", "a"), ("a", "b"), ("b", "t"), ("a", "t"), ("b", "b")])
    assert layers == {"s": 0, "a": 1, "b": 2, "t": 2, "loop": 0}
    graph = {"nodes": [{"id": i, "type": "agent", "name": i, "calls": 1, "errors": 0,
                        "error_rate": 0.0, "rate_per_s": 1.0} for i in ("p", "q")],
             "edges": [{"source": "p", "target": "q", "calls": 1, "errors": 1,
                        "error_rate": 1.0, "rate_per_s": 1.0},
                       {"source": "q", "target": "q", "calls": 1, "errors": 0,
                        "error_rate": 0.0, "rate_per_s": 1.0}]}
    fig = charts.call_graph(graph)
    labels = [a.text for a in fig.layout.annotations if a.text]
    assert "1/s · 100% err" in labels and "↻ 1/s · 0% err" in labels


def _cfg(prom: str | None, vm: str | None) -> ConsoleConfig:
    return ConsoleConfig("http://d", prom, vm, 2 * 86400, 30, Path("/tmp"))


@pytest.mark.parametrize(("label", "prom", "vm", "expected"), [
    ("1 hour", "http://p", "http://v", "Prometheus"),
    ("24 hours", "http://p", "http://v", "Prometheus"),
    ("7 days", "http://p", "http://v", "VictoriaMetrics"),
    ("12 months", "http://p", "http://v", "VictoriaMetrics"),
    ("7 days", "http://p", None, "Prometheus"),
    ("1 hour", None, "http://v", "VictoriaMetrics"),
    ("1 hour", None, None, None),
])
def test_store_choice_by_range(label: str, prom: str | None, vm: str | None,
                               expected: str | None) -> None:
    source = promql.choose(_cfg(prom, vm), Window.last(label))
    assert (source.name if source else None) == expected
    if source is not None and expected == "VictoriaMetrics" and prom:
        assert "beyond Prometheus' 2 d retention" in source.caption
    if label == "7 days" and vm is None:
        assert source is not None and "only the last 2 d have data" in source.caption


def test_every_range_has_a_sane_step_and_window() -> None:
    for label in RANGES:
        w = Window.last(label)
        assert w.step_s >= 5 and w.seconds / w.step_s <= 300
        assert int(w.rate_window.rstrip("s")) >= max(60, w.step_s)


def test_evaluation_names_from_metric_names() -> None:
    assert evaluation_names(["llm_evaluation_groundedness_count", "llm_evaluation_x_sum",
                             "llm_calls_total", "llm_evaluation_relevance_count"]) == [
        "groundedness", "relevance"]


def test_untrusted_text_cannot_become_markdown() -> None:
    image = md("![x](http://elsewhere/p.png)")
    assert image.startswith(r"\!\[x\]\(") and "](" not in image
    assert "](" not in md("[click](javascript:alert(1))")
    assert md("a\nb  c") == "a b c"
    assert md("x" * 300, limit=10).endswith("…") and len(md("x" * 300, limit=10)) == 10
