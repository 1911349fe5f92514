"""One scrape's ``EvalMetrics.collect()`` on a filled store (issue 9): the join of the new
scores with every stored span (before) against the read between the scored traces'
start-time bounds (after), alternated, 120 new scores (half of them on hot spans).

    PYTHONPATH=. python bench/evals_metrics_bench.py <a copy of a filled store>

Adds the scores to the file it is given (use a copy). Writes
bench/results/evals-metrics-10M.json.
"""

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from appliance.evals.metrics import LABELS, EvalMetrics  # noqa: E402
from appliance.evals.store import ensure  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

store = SpanStore(sys.argv[1], memory_limit="2GB")
ensure(store.db)
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

def after(m):
    m.collect()
    return m

times: dict[str, list[float]] = {"before": [], "after": []}
cpu: dict[str, list[float]] = {"before": [], "after": []}
for _rep in range(7):
    for name, fn in (("before", before), ("after", after)):
        m = EvalMetrics(store.db, names, since=t0 - timedelta(seconds=1))
        t, c = time.perf_counter(), time.process_time()  # CPU: DuckDB's threads too
        out = fn(m)
        times[name].append(1000 * (time.perf_counter() - t))
        cpu[name].append(1000 * (time.process_time() - c))
        if name == "after":
            n = sum(s[-2] for s in m._series.values())
            assert n == len(spans), (n, len(spans))
        else:
            assert len(out) == len(spans)
res = {"benchmark": "evaluation histograms' collect() per scrape at 10M spans (issue 9)",
       "stored_spans": store.count(), "scores_new_since_last_scrape": len(spans),
       "of_which_hot": 60, "reps": 7,
       **{k: {"p50_ms": round(statistics.median(v), 1), "max_ms": round(max(v), 1),
              "cpu_p50_ms": round(statistics.median(cpu[k]), 1)} for k, v in times.items()}}
res["p50_ratio"] = round(res["before"]["p50_ms"] / res["after"]["p50_ms"], 1)
print(json.dumps(res, indent=1))
res["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
out_file = Path(__file__).parent / "results" / "evals-metrics-10M.json"
out_file.write_text(json.dumps(res, indent=1) + "\n")
store.close()
