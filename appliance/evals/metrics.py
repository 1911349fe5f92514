"""The built-in scores as the evaluation metrics the collector derives from app scores:
``llm_evaluation_<name>`` histograms (buckets 0.1 .. 1.0) with the same GenAI labels
(``service_name``, ``gen_ai_operation_name``, ``gen_ai_provider_name``,
``gen_ai_request_model``, ``gen_ai_agent_name`` where the span has them) plus ``source``:
``tracehold/<evaluator>-<version>``. The collector's series carry no ``source``, so a
query that sums by service sees both, and one that filters on ``source`` tells them
apart. Only the names in the ``evaluation_names`` setting are exported, as the collector
does, and only scores the app did not send (ours are never made for those).

Why the daemon serves them and Prometheus and VictoriaMetrics scrape it: the scores are
made in the daemon, after the collector has passed the spans on, and neither store takes
pushes in this stack (Prometheus 2.42 has no remote-write receiver enabled; both scrape).

The histograms are cumulative from the daemon's start: each scrape adds the scores
stored since the previous one (``scored_at``, read a few seconds behind so a write in
flight is not skipped), so a scrape costs what arrived since, not the whole table.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.evals.store import ensure
from appliance.store import partitions
from appliance.store.database import Database

BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LAG = timedelta(seconds=2)
# span column -> label (the collector's dimension name with dots as underscores)
LABELS = (("service_name", "service_name"), ("operation", "gen_ai_operation_name"),
          ("provider", "gen_ai_provider_name"), ("request_model", "gen_ai_request_model"),
          ("agent_name", "gen_ai_agent_name"))
Key = tuple[str, tuple[tuple[str, str], ...]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class EvalMetrics:
    def __init__(self, db: Database, names: Sequence[str], since: datetime | None = None) -> None:
        self.db, self.names = db, list(names)
        self.cursor = since or datetime.now(UTC)
        self._lock = threading.Lock()
        # key -> [bucket counts..., +Inf count, sum]
        self._series: dict[Key, list[float]] = {}
        ensure(db)

    def collect(self, now: datetime | None = None) -> None:
        """Add the scores stored since the last call."""
        until = (now or datetime.now(UTC)) - LAG
        if until <= self.cursor or not self.names:
            return
        marks = ", ".join("?" for _ in self.names)
        scores = self.db.read(
            "SELECT trace_id, span_id, name, score, evaluator_version FROM evaluations "
            "WHERE scored_at > ? AND scored_at <= ? AND score IS NOT NULL "
            f"AND name IN ({marks})", [self.cursor, until, *self.names])
        labels = self._labels(scores)
        with self._lock:
            self.cursor = until
            for r in scores:
                span = labels.get((r["trace_id"], r["span_id"]))
                if span is None:  # the span is gone (retention): as the join it replaces
                    continue
                key = (r["name"], span + (("source", r["evaluator_version"]),))
                series = self._series.setdefault(key, [0.0] * (len(BUCKETS) + 2))
                score = float(r["score"])
                for i, bound in enumerate(BUCKETS):
                    if score <= bound:
                        series[i] += 1
                series[len(BUCKETS)] += 1
                series[-1] += score

    def _labels(self, scores: list[dict[str, Any]]
                ) -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
        """The GenAI labels of the scored spans. Read between their traces' start-time
        bounds (``partitions.TRACE_BOUNDS``): a join of the new scores to the whole
        ``spans`` view scanned every stored span on each scrape (10M spans: ~13 % of the
        daemon's busy time under load, docs/store-design.md). Read from every stored copy
        (``partitions.copies_sql``): the labels are keyed by span, so a retried span's
        copy changes nothing, and the ``spans`` view's dedup of the whole hot table was
        most of a scrape's cost under load."""
        ids = sorted({r["trace_id"] for r in scores})
        if not ids:
            return {}
        bounds = self.db.read(partitions.TRACE_BOUNDS, [ids])[0]
        if bounds["lo"] is None:
            return {}
        return {(r["trace_id"], r["span_id"]): tuple(
            (label, str(r[column])) for column, label in LABELS if r[column] is not None)
            for r in self._label_rows(bounds["lo"], bounds["hi"], ids)}

    def _label_rows(self, lo: datetime, hi: datetime, ids: list[str]
                    ) -> list[dict[str, Any]]:
        """The label columns of every stored copy of the spans of traces ``ids`` that
        started between ``lo`` and ``hi``."""
        where = "start_time BETWEEN ? AND ? AND trace_id IN (SELECT unnest(?::VARCHAR[]))"
        return self.db.read(
            "SELECT * FROM " + partitions.copies_sql(
                "trace_id, span_id, " + ", ".join(column for column, _ in LABELS), where)
            + " copies", [lo, hi, ids] * 2)

    def exposition(self) -> str:
        """Prometheus text format (0.0.4)."""
        self.collect()
        out: list[str] = []
        with self._lock:
            for name in sorted({n for n, _ in self._series}):
                metric = f"llm_evaluation_{name}"
                out.append(f"# HELP {metric} Evaluation score {name} (built-in evaluator)")
                out.append(f"# TYPE {metric} histogram")
                for (n, labels), series in sorted(self._series.items()):
                    if n != name:
                        continue
                    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    for bound, count in zip((*map(str, BUCKETS), "+Inf"),
                                            series[:len(BUCKETS) + 1], strict=True):
                        out.append(f'{metric}_bucket{{{text},le="{bound}"}} {count:g}')
                    out.append(f"{metric}_sum{{{text}}} {series[-1]:.6g}")
                    out.append(f"{metric}_count{{{text}}} {series[len(BUCKETS)]:g}")
        return "\n".join(out) + "\n" if out else ""
