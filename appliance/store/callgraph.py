"""The agent/tool call graph, computed from the span store.

(The collector's servicegraph connector is not available at the pinned
version, see README Limits; the span store has every parent/child link anyway.)

Each span belongs to a *node*: the tool it runs (``tool_name``), else the agent
(``agent_name``), else its service. A span *opens* a node when it names a tool,
when it invokes an agent (``invoke_agent``, or an agent other than its parent's
node), or when it crosses into another service; any other span (a model call
inside an agent, an HTTP span inside a tool) stays in its parent's node. Each
node-opening span with a parent is one call on the edge parent node -> its node;
its status decides whether the call failed. A span whose parent is outside the
time range starts a walk of its own.
"""

from __future__ import annotations

from typing import Any

from appliance.store.queries import TimeRange
from appliance.store.spans import SpanStore

MAX_DEPTH = 64

# The node a child span opens, if any (NULL: it stays in the parent's node).
_OPENS = """
    CASE WHEN c.tool IS NOT NULL THEN 'tool'
         WHEN c.agent IS NOT NULL AND (c.operation = 'invoke_agent' OR w.node_type <> 'agent'
                                       OR w.node_name <> c.agent) THEN 'agent'
         WHEN c.service IS DISTINCT FROM w.service THEN 'service'
    END"""
_NAME = """
    CASE WHEN c.tool IS NOT NULL THEN c.tool
         WHEN c.agent IS NOT NULL AND (c.operation = 'invoke_agent' OR w.node_type <> 'agent'
                                       OR w.node_name <> c.agent) THEN c.agent
         ELSE c.service
    END"""

_SQL = f"""
WITH RECURSIVE s AS (
    SELECT trace_id, span_id, parent_span_id, coalesce(service_name, '?') AS service,
           agent_name AS agent, tool_name AS tool, operation, status_code = 'error' AS failed
    FROM spans WHERE start_time >= ? AND start_time < ?
),
walk AS (
    SELECT trace_id, span_id, service,
           CASE WHEN tool IS NOT NULL THEN 'tool' WHEN agent IS NOT NULL THEN 'agent'
                ELSE 'service' END AS node_type,
           coalesce(tool, agent, service) AS node_name,
           CAST(NULL AS VARCHAR) AS parent_type, CAST(NULL AS VARCHAR) AS parent_name,
           true AS opens, failed, 0 AS depth
    FROM s
    WHERE parent_span_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM s p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id)
    UNION ALL
    SELECT c.trace_id, c.span_id, c.service,
           coalesce({_OPENS}, w.node_type),
           CASE WHEN {_OPENS} IS NULL THEN w.node_name ELSE {_NAME} END,
           w.node_type, w.node_name, {_OPENS} IS NOT NULL, c.failed, w.depth + 1
    FROM s c JOIN walk w ON c.trace_id = w.trace_id AND c.parent_span_id = w.span_id
    WHERE w.depth < {MAX_DEPTH}
)
SELECT node_type, node_name, parent_type, parent_name,
       count(*) AS calls, count(*) FILTER (WHERE failed) AS errors
FROM walk WHERE opens
GROUP BY ALL
"""


def call_graph(store: SpanStore, rng: TimeRange) -> dict[str, Any]:
    """``{"window_s", "nodes": [...], "edges": [...]}``; ids are ``type:name``, rates are
    calls per second over the window, ``error_rate`` the share of failed calls."""
    rows = store.read(_SQL, rng.params)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    seconds = rng.seconds
    for r in rows:
        node_id = f"{r['node_type']}:{r['node_name']}"
        node = nodes.setdefault(node_id, {"id": node_id, "type": r["node_type"],
                                          "name": r["node_name"], "calls": 0, "errors": 0})
        node["calls"] += r["calls"]
        node["errors"] += r["errors"]
        if r["parent_type"] is None:
            continue
        edges.append({
            "source": f"{r['parent_type']}:{r['parent_name']}", "target": node_id,
            "calls": r["calls"], "errors": r["errors"],
            "error_rate": r["errors"] / r["calls"],
            "rate_per_s": r["calls"] / seconds,
        })
    for node in nodes.values():
        node["error_rate"] = node["errors"] / node["calls"]
        node["rate_per_s"] = node["calls"] / seconds
    edges.sort(key=lambda e: (-e["calls"], e["source"], e["target"]))
    return {"window_s": seconds, "nodes": sorted(nodes.values(), key=lambda n: n["id"]),
            "edges": edges}
