"""One scrape's ``EvalMetrics.collect()`` on a filled store (issue 9), alternated, 120 new
scores (half of them on hot spans): the join of the new scores with every stored span
(before); the read between the scored traces' start-time bounds through the ``spans``
view (view), whose dedup of the hot table every read pays; the same read of every
stored copy (after: today's ``collect``).

    PYTHONPATH=. python bench/evals_metrics_bench.py <a copy of a filled store> [HOT [OUT]]

With HOT, spans are first stored through the daemon's ingest path until the hot table
holds that many (a seal empties it at 250,000: under load it holds 125,000 on average).
Adds the scores and spans to the file it is given (use a copy). Writes
bench/results/OUT (default evals-metrics-10M.json).
"""

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from appliance.evals.metrics import LABELS, EvalMetrics  # noqa: E402
from appliance.evals.store import ensure  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

store = SpanStore(sys.argv[1], memory_limit="2GB", seal_rows=10**9)
ensure(store.db)
hot_wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 0
if hot_wanted:
    from store_fill import Bodies  # noqa: E402

    from appliance.api.ingest import _ingest  # noqa: E402
    from appliance.ingest.limits import IngestLimits  # noqa: E402
    bodies, limits = Bodies(2000, seed=7), IngestLimits(max_body_bytes=64 * 1024 * 1024)
    while store.stats()["hot_rows"] < hot_wanted:
        _ingest(store, bodies.next()[0], "application/x-protobuf", None, limits)
names = Settings().evaluation_names
spans = store.read("SELECT trace_id, span_id, service_name FROM spans_hot USING SAMPLE 60 ROWS")
spans += store.read("SELECT trace_id, span_id, service_name FROM (SELECT * FROM spans_sealed "
                    "ORDER BY start_time DESC LIMIT 5000) USING SAMPLE 60 ROWS")
t0 = datetime.now(UTC) - timedelta(hours=1)
with store.db.transaction() as con:
    for i, s in enumerate(spans):
        con.execute("INSERT INTO evaluations VALUES (?, ?, ?, ?, 'tracehold', 'tracehold/x-1', "
                    "NULL, NULL, ?, ?)", [s["trace_id"], s["span_id"], names[i % len(names)],
                                          0.5, s["service_name"], t0 + timedelta(seconds=i)])

def before(m):
    marks = ", ".join("?" for _ in names)
    return store.db.read(
        "SELECT e.name, e.score, e.evaluator_version, " + ", ".join(f"s.{c}" for c, _ in LABELS)
        + " FROM evaluations e JOIN spans s USING (trace_id, span_id) WHERE e.scored_at > ? "
        f"AND e.scored_at <= ? AND e.score IS NOT NULL AND e.name IN ({marks})",
        [m.cursor, datetime.now(UTC), *names])

class ViewMetrics(EvalMetrics):
    """collect() as it read the labels through the ``spans`` view."""

    def _label_rows(self, lo, hi, ids):  # type: ignore[no-untyped-def]
        return self.db.read(
            "SELECT trace_id, span_id, " + ", ".join(column for column, _ in LABELS)
            + " FROM spans WHERE start_time BETWEEN ? AND ? "
            "AND trace_id IN (SELECT unnest(?::VARCHAR[]))", [lo, hi, ids])


def after(m):
    m.collect()
    return m

variants = (("before", EvalMetrics, before), ("view", ViewMetrics, after),
            ("after", EvalMetrics, after))
times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
for _rep in range(7):
    for name, kind, fn in variants:
        m = kind(store.db, names, since=t0 - timedelta(seconds=1))
        t, c = time.perf_counter(), time.process_time()  # CPU: DuckDB's threads too
        out = fn(m)
        times[name].append(1000 * (time.perf_counter() - t))
        cpu[name].append(1000 * (time.process_time() - c))
        if name != "before":
            n = sum(s[-2] for s in m._series.values())
            assert n == len(spans), (n, len(spans))
        else:
            assert len(out) == len(spans)
res = {"benchmark": "evaluation histograms' collect() per scrape at 10M spans (issue 9)",
       "stored_spans": store.count(), "scores_new_since_last_scrape": len(spans),
       "of_which_hot": 60, "hot_rows": store.stats()["hot_rows"], "reps": 7,
       **{k: {"p50_ms": round(statistics.median(v), 1), "max_ms": round(max(v), 1),
              "cpu_p50_ms": round(statistics.median(cpu[k]), 1)} for k, v in times.items()}}
res["p50_ratio"] = round(res["before"]["p50_ms"] / res["after"]["p50_ms"], 1)
res["cpu_after_over_view"] = round(res["after"]["cpu_p50_ms"] / res["view"]["cpu_p50_ms"], 2)
print(json.dumps(res, indent=1))
res["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
out_file = (Path(__file__).parent / "results"
            / (sys.argv[3] if len(sys.argv) > 3 else "evals-metrics-10M.json"))
out_file.write_text(json.dumps(res, indent=1) + "\n")
store.close()
