"""Group commit measured: concurrent ingest requests with and without joining their
commits (issue 9).

``--threads`` threads each hand ``--per-thread`` OTLP/protobuf bodies of 2,000 spans of
~3 KB (``store_fill.Bodies``) to the daemon's ingest function (decode, rows,
``SpanStore.insert``), as the API's worker threads do for the collector's concurrent
senders. Rounds alternate between the store's group commit and one commit per request
(the same ``_append`` under one lock: the code before group commit), on one copy of
``--db``, so both meet the same store size and the same machine load. Seals are kept out
(``seal_rows`` above what the run adds: they are the same work either way). Reports
spans/s per round, medians per mode and their ratio, and the mean batches per commit.

    PYTHONPATH=. nice -n 5 .venv/bin/python bench/group_commit_bench.py \\
        --db /tmp/store-fill/spans.duckdb --work /tmp/ingest-prof

Writes bench/results/group-commit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
from store_fill import PROTO, Bodies  # noqa: E402

from appliance.api.ingest import _ingest  # noqa: E402
from appliance.ingest.limits import IngestLimits  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"


class OneByOne:
    """One transaction per request, in turn: what ``SpanStore.insert`` did before."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store
        self.lock = threading.Lock()

    def submit(self, table: pa.Table) -> int:
        with self.lock:
            self.store._append([table])
        return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a filled store (copied)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--per-thread", type=int, default=5, help="bodies per thread, round")
    parser.add_argument("--rounds", type=int, default=6, help="alternating, both modes")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    copy = args.work / "group-commit.duckdb"
    for f in (copy, copy.with_name(copy.name + ".wal")):
        f.unlink(missing_ok=True)
    shutil.copyfile(args.db, copy)
    store = SpanStore(copy, seal_rows=10**9)
    start = store.count()
    grouped = store._group
    sizes: list[int] = []
    real_submit = grouped.submit

    def counted(table: pa.Table) -> int:
        n = real_submit(table)
        sizes.append(n)
        return n

    grouped.submit = counted  # type: ignore[method-assign]
    modes: dict[str, Any] = {"group commit": grouped, "one commit per request": OneByOne(store)}
    limits = IngestLimits(max_body_bytes=64 * 1024 * 1024)
    bodies = Bodies(2000, seed=5)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        names = list(modes) if r % 2 == 0 else list(modes)[::-1]
        for name in names:
            store._group = modes[name]
            work = [bodies.next()[0] for _ in range(args.threads * args.per_thread)]
            sizes.clear()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.threads) as pool:
                done = list(pool.map(lambda b: _ingest(store, b, PROTO, None, limits)[1],
                                     work))
            took = time.perf_counter() - t0
            assert sum(done) == 2000 * len(work)
            rounds.append({"mode": name, "spans_per_s": round(sum(done) / took),
                           "batches_per_commit": round(statistics.fmean(sizes), 2)
                           if sizes else 1.0,
                           "load_avg_1m": round(os.getloadavg()[0], 2)})
            print(json.dumps(rounds[-1]), flush=True)
    store._group = grouped
    added = sum(2000 * args.threads * args.per_thread for _ in rounds)
    assert store.count() == start + added
    med = {name: statistics.median(x["spans_per_s"] for x in rounds if x["mode"] == name)
           for name in modes}
    result = {"benchmark": "group commit vs one commit per request (issue 9)",
              "command": "PYTHONPATH=. nice -n 5 .venv/bin/python bench/group_commit_bench.py "
                         + " ".join(sys.argv[1:]),
              "stored_spans_at_start": start, "threads": args.threads,
              "bodies_per_thread_per_round": args.per_thread, "rounds": rounds,
              "median_spans_per_s": med,
              "ratio": round(med["group commit"] / med["one commit per request"], 2),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "duckdb": duckdb.__version__,
              "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    store.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "group-commit.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_spans_per_s"]), result["ratio"], flush=True)


if __name__ == "__main__":
    main()
