"""Recent-versus-baseline comparisons over the span store.

Windows are cut on when the appliance knew of a span (``SEEN``: it had ended
and arrived), so a long agent run that started in the baseline but finished
just now is recent evidence, and a replay in simulated time sees only what
had arrived by then.

The SQL text is assembled only from fixed fragments written in the detector
modules (never from data); the window bounds are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.ingest.conventions import BY_COLUMN, MODEL_CALL_OPERATIONS, SpanAttribute
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

# When the appliance knew of a span: it has ended and arrived. Windows are cut on this.
SEEN = "greatest(end_time, received_at)"
# Spans that are calls to a model (as opposed to retrieval, tools, agent steps).
_OPERATIONS = ", ".join(f"'{op}'" for op in MODEL_CALL_OPERATIONS)  # fixed names, not input
MODEL_CALL = f"{BY_COLUMN['operation'].column} IN ({_OPERATIONS})"


def attribute(attr: SpanAttribute) -> str:
    """SQL for a declared span attribute (``conventions.ATTRIBUTES``) as text: the first
    of its names that the span has."""
    paths = [f"json_extract_string(attributes, '$.\"{name}\"')" for name in attr.names]
    return paths[0] if len(paths) == 1 else f"coalesce({', '.join(paths)})"


@dataclass(frozen=True)
class Windows:
    now: datetime
    recent_start: datetime
    baseline_start: datetime
    label: str

    @classmethod
    def at(cls, now: datetime, cfg: DetectConfig) -> Windows:
        recent = now - timedelta(seconds=cfg.recent_window_s)
        return cls(now, recent, recent - timedelta(seconds=cfg.baseline_window_s),
                   f"recent {cfg.recent_window_s}s vs baseline {cfg.baseline_window_s}s")


@dataclass(frozen=True)
class Comparison:
    group: str
    recent: float | None
    n_recent: int
    baseline: float | None
    n_baseline: int

    def enough(self, cfg: DetectConfig) -> bool:
        return (self.n_recent >= cfg.min_recent and self.n_baseline >= cfg.min_baseline
                and self.recent is not None and self.baseline is not None)


def compare(store: SpanStore, w: Windows, value: str, where: str = "TRUE",
            agg: str = "avg", group: str = "service_name") -> dict[str, Comparison]:
    """agg(value) in the recent window and in the baseline, per group."""
    sql = (
        f"SELECT {group} AS g, "
        f"{agg}(v) FILTER (WHERE {SEEN} >= ?) AS recent, "
        f"count(v) FILTER (WHERE {SEEN} >= ?) AS n_recent, "
        f"{agg}(v) FILTER (WHERE {SEEN} < ?) AS baseline, "
        f"count(v) FILTER (WHERE {SEEN} < ?) AS n_baseline "
        f"FROM (SELECT *, {value} AS v FROM spans "
        f"      WHERE {SEEN} >= ? AND {SEEN} < ? AND ({where})) "
        f"WHERE g IS NOT NULL GROUP BY g"
    )
    rows = store.read(sql, [w.recent_start] * 4 + [w.baseline_start, w.now])
    return {r["g"]: Comparison(r["g"], _f(r["recent"]), int(r["n_recent"]),
                               _f(r["baseline"]), int(r["n_baseline"])) for r in rows}


def evidence(store: SpanStore, w: Windows, service: str, where: str,
             group: str = "service_name", limit: int = 10) -> tuple[list[str], datetime | None]:
    """Trace ids of recent spans that show the symptom, and the earliest such span."""
    rows = store.read(
        f"SELECT trace_id, min(start_time) AS t FROM spans WHERE {group} = ? "
        f"AND {SEEN} >= ? AND {SEEN} < ? AND ({where}) "
        f"GROUP BY trace_id ORDER BY t LIMIT ?",
        [service, w.recent_start, w.now, limit])
    return [r["trace_id"] for r in rows], (rows[0]["t"] if rows else None)


def new_values(store: SpanStore, w: Windows, service: str, column: str) -> list[str]:
    """Values of a version-like column seen in the recent window but not in the baseline."""
    rows = store.read(
        f"SELECT {column} AS v FROM spans WHERE service_name = ? AND {SEEN} >= ? "
        f"AND {SEEN} < ? AND {column} IS NOT NULL GROUP BY v "
        f"HAVING min({SEEN}) >= ?",
        [service, w.baseline_start, w.now, w.recent_start])
    return [str(r["v"]) for r in rows]


def _f(v: Any) -> float | None:
    return None if v is None else float(v)
