"""Detector rounds on a filled store (issue 9): every round reading both windows whole
(before) against the runner's kept buckets (after), with the windows full.

    PYTHONPATH=. python bench/detect_rounds_bench.py <filled store> [--rounds 8]

The rounds are in simulated time, 10 s apart, starting where the store's newest span was
seen, so the 30-minute baseline holds the fill's last half hour (bench/store_fill.py
writes 10M spans in ~22 minutes: all of them). Each step runs one round each way; the
cached rounds follow each other as the daemon's do (the first one reads everything and
is reported apart). CPU is the process's (DuckDB's threads too). Every cached round's
findings are checked equal to the whole read's. Writes
bench/results/detect-rounds.json.
"""

import argparse
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from appliance.detect.buckets import BucketCache  # noqa: E402
from appliance.detect.runner import detect  # noqa: E402
from appliance.detect.windows import SEEN  # noqa: E402
from appliance.settings import DetectConfig  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("store")
p.add_argument("--rounds", type=int, default=8)
p.add_argument("--out", default="detect-rounds")
a = p.parse_args()

store = SpanStore(Path(a.store), memory_limit="2GB")
cfg = DetectConfig()
top = store.read(f"SELECT max({SEEN}) AS t, count(*) AS n FROM spans")[0]
start = top["t"]
in_window = store.read(f"SELECT count(*) AS n FROM spans WHERE {SEEN} >= ?",
                       [start - timedelta(seconds=cfg.recent_window_s + cfg.baseline_window_s)]
                       )[0]["n"]
print(f"{top['n']:,} spans, {in_window:,} seen in the windows ending {start}", flush=True)


def timed(fn):  # type: ignore[no-untyped-def]
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def shape(found):  # type: ignore[no-untyped-def]
    return [(f.failure_type, f.service, f.signals, f.trace_ids) for f in found]


cache = BucketCache()
_, first_wall, first_cpu = timed(lambda: detect(store, cfg, start, cache=cache))
print(f"first cached round (fills): {first_wall:.1f} s wall, {first_cpu:.1f} s CPU", flush=True)
rows: list[dict[str, float]] = []
for i in range(1, a.rounds + 1):
    now = start + timedelta(seconds=10 * i)
    kept, kw, kc = timed(lambda: detect(store, cfg, now, cache=cache))  # noqa: B023
    whole, ww, wc = timed(lambda: detect(store, cfg, now))  # noqa: B023
    assert shape(kept) == shape(whole), (now, shape(kept), shape(whole))
    rows.append({"round": i, "whole_wall_s": ww, "whole_cpu_s": wc, "kept_wall_s": kw,
                 "kept_cpu_s": kc, "findings": len(whole)})
    print(f"round {i}: whole {ww:.2f} s wall {wc:.2f} s CPU | kept {kw:.2f} s wall "
          f"{kc:.2f} s CPU | {len(whole)} findings", flush=True)

med = {k: statistics.median(r[k] for r in rows)
       for k in ("whole_wall_s", "whole_cpu_s", "kept_wall_s", "kept_cpu_s")}
result = {
    "bench": "detect_rounds_bench", "store_spans": top["n"], "spans_in_windows": in_window,
    "interval_s": cfg.interval_s, "first_kept_round": {"wall_s": first_wall,
                                                       "cpu_s": first_cpu},
    "median": med, "cpu_ratio_whole_over_kept": med["whole_cpu_s"] / med["kept_cpu_s"],
    "share_of_a_core_at_interval": {
        "whole": med["whole_cpu_s"] / cfg.interval_s, "kept": med["kept_cpu_s"] / cfg.interval_s},
    "buckets": {"filled": cache.filled, "reused": cache.reused}, "rounds": rows,
}
out = Path(__file__).resolve().parent / "results" / f"{a.out}.json"
out.write_text(json.dumps(result, indent=2, default=str) + "\n")
print(json.dumps({k: result[k] for k in ("median", "cpu_ratio_whole_over_kept",
                                         "share_of_a_core_at_interval")}, indent=2))
store.close()
