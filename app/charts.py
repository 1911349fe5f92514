"""Plotly figures for the console pages. Pure: data in, figure out (unit-testable)."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

ERROR_COLOUR = "#d62728"
NODE_COLOURS = {"service": "#1f77b4", "agent": "#9467bd", "tool": "#2ca02c"}
OPERATION_COLOURS = {"chat": "#1f77b4", "text_completion": "#1f77b4", "retrieval": "#ff7f0e",
                     "embeddings": "#bcbd22", "execute_tool": "#2ca02c",
                     "invoke_agent": "#9467bd", "rerank": "#8c564b"}
_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "height": 260,
                           "legend": {"orientation": "h", "y": -0.25}}


def timeseries(df: pd.DataFrame, unit: str) -> go.Figure:
    fig = px.line(df, x="time", y="value", color="series",
                  labels={"value": unit, "time": "", "series": ""})
    fig.update_layout(**_LAYOUT)
    if unit == "share":
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig


# ------------------------------------------------------------------ trace waterfall

def tree_order(spans: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Spans depth-first (children by start time) with their depth; spans whose parent is
    missing from the trace are roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        parent = s.get("parent_span_id")
        children[parent if parent in ids else None].append(s)
    for group in children.values():
        group.sort(key=lambda s: (s["start_time"], s["span_id"]))
    out: list[tuple[dict[str, Any], int]] = []
    stack = [(s, 0) for s in reversed(children[None])]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:  # a malformed trace with a cycle
            continue
        seen.add(span["span_id"])
        out.append((span, depth))
        stack.extend((c, depth + 1) for c in reversed(children[span["span_id"]]))
    return out


def waterfall(spans: list[dict[str, Any]]) -> go.Figure:
    """One bar per span, offset from the trace start, nested by depth."""
    ordered = tree_order(spans)
    t0 = min(pd.Timestamp(s["start_time"]) for s in spans)
    rows = []
    for i, (s, depth) in enumerate(ordered):
        offset = (pd.Timestamp(s["start_time"]) - t0).total_seconds() * 1000
        failed = s.get("status_code") == "error"
        rows.append({
            "i": i, "label": "· " * depth + s["name"], "offset": offset,
            "duration": max(float(s["duration_ms"] or 0), 0.01),
            "colour": ERROR_COLOUR if failed else
            OPERATION_COLOURS.get(s.get("operation") or "", "#7f7f7f"),
            "hover": (f"{s['name']}<br>service {s.get('service_name')}<br>"
                      f"{float(s['duration_ms'] or 0):.1f} ms at +{offset:.1f} ms"
                      + (f"<br>model {s.get('response_model') or s.get('request_model')}"
                         if s.get("request_model") or s.get("response_model") else "")
                      + (f"<br>tokens {s.get('input_tokens')} in / {s.get('output_tokens')} out"
                         if s.get("input_tokens") is not None else "")
                      + ("<br><b>error</b>" if failed else "")),
        })
    fig = go.Figure(go.Bar(
        y=[r["i"] for r in rows], x=[r["duration"] for r in rows],
        base=[r["offset"] for r in rows], orientation="h",
        marker_color=[r["colour"] for r in rows],
        hovertext=[r["hover"] for r in rows], hoverinfo="text",
        text=[f"{r['duration']:.0f} ms" for r in rows], textposition="auto",
    ))
    fig.update_yaxes(tickvals=[r["i"] for r in rows], ticktext=[r["label"] for r in rows],
                     autorange="reversed")
    fig.update_xaxes(title="ms since trace start")
    fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                      height=max(160, 34 * len(rows) + 60))
    return fig


# ------------------------------------------------------------------ call graph

def layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Column of each node: breadth-first from the nodes nothing calls (cycles tolerated)."""
    incoming = {t for s, t in edges if s != t}
    out: dict[str, list[str]] = defaultdict(list)
    for s, t in edges:
        if s != t:
            out[s].append(t)
    depth: dict[str, int] = {}
    queue = deque((n, 0) for n in nodes if n not in incoming)
    while queue:
        n, d = queue.popleft()
        if n in depth:
            continue
        depth[n] = d
        queue.extend((t, d + 1) for t in out[n] if t not in depth)
    for n in nodes:  # only reachable through a cycle
        depth.setdefault(n, 0)
    return depth


def call_graph(graph: dict[str, Any]) -> go.Figure:
    nodes = graph["nodes"]
    edges = graph["edges"]
    col = layers([n["id"] for n in nodes], [(e["source"], e["target"]) for e in edges])
    rows_in: dict[int, list[str]] = defaultdict(list)
    for n in sorted(nodes, key=lambda n: (col[n["id"]], n["type"], n["name"])):
        rows_in[col[n["id"]]].append(n["id"])
    pos = {nid: (c, -r) for c, ids in rows_in.items() for r, nid in enumerate(ids)}
    fig = go.Figure()
    top = max((e["rate_per_s"] for e in edges), default=1) or 1
    for e in edges:
        (sx, sy), (tx, ty) = pos[e["source"]], pos[e["target"]]
        colour = ERROR_COLOUR if e["error_rate"] >= 0.05 else "#555"
        label = f"{e['rate_per_s']:.3g}/s · {e['error_rate']:.0%} err"
        if e["source"] == e["target"]:
            fig.add_annotation(x=sx, y=sy + 0.28, text=f"↻ {label}", showarrow=False,
                               font={"color": colour, "size": 11})
            continue
        fig.add_annotation(x=tx, y=ty, ax=sx, ay=sy, xref="x", yref="y", axref="x",
                           ayref="y", showarrow=True, arrowhead=3, arrowsize=1.2,
                           arrowwidth=1 + 4 * e["rate_per_s"] / top, arrowcolor=colour,
                           standoff=18, startstandoff=18)
        fig.add_annotation(x=(sx + tx) / 2, y=(sy + ty) / 2 + 0.12, text=label,
                           showarrow=False, font={"color": colour, "size": 11},
                           bgcolor="rgba(255,255,255,0.8)")
    fig.add_trace(go.Scatter(
        x=[pos[n["id"]][0] for n in nodes], y=[pos[n["id"]][1] for n in nodes],
        mode="markers+text", text=[f"{n['type']}: {n['name']}" for n in nodes],
        textposition="bottom center",
        marker={"size": 26, "color": [NODE_COLOURS.get(n["type"], "#7f7f7f") for n in nodes],
                "line": {"width": [3 if n["error_rate"] >= 0.05 else 0 for n in nodes],
                         "color": ERROR_COLOUR}},
        hovertext=[f"{n['id']}<br>{n['calls']} calls ({n['rate_per_s']:.3g}/s)<br>"
                   f"{n['errors']} errors ({n['error_rate']:.1%})" for n in nodes],
        hoverinfo="text",
    ))
    depth_rows = max((len(v) for v in rows_in.values()), default=1)
    fig.update_xaxes(visible=False, range=[-0.5, max(col.values(), default=0) + 0.5])
    fig.update_yaxes(visible=False, range=[-depth_rows + 0.4, 0.6])
    fig.update_layout(showlegend=False, height=max(320, 130 * depth_rows),
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


# ------------------------------------------------------------------ cost

def cost_by_day(by_day_and_model: list[dict[str, Any]]) -> go.Figure | None:
    df = pd.DataFrame([r for r in by_day_and_model if r["cost"] is not None])
    if df.empty:
        return None
    fig = px.bar(df, x="day", y="cost", color="model",
                 labels={"cost": "cost (USD)", "day": "", "model": ""})
    fig.update_layout(**_LAYOUT)
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d", dtick=86_400_000)
    return fig


def cost_per_request(by_day: list[dict[str, Any]]) -> go.Figure | None:
    df = pd.DataFrame([r for r in by_day if r["cost_per_request"] is not None])
    if df.empty:
        return None
    fig = px.bar(df, x="day", y="cost_per_request",
                 labels={"cost_per_request": "USD per request", "day": ""})
    fig.update_layout(**_LAYOUT)
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d", dtick=86_400_000)
    return fig
