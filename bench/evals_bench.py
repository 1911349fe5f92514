"""The built-in evaluators (appliance/evals/): quality on the labelled set, speed, and
the share of model calls the daemon's worker scores at 50 calls/s.

Quality: every evaluator on tests/evals_set.py (ROC AUC, and accuracy at its threshold,
``Evaluators.THRESHOLDS``); retrieval relevance per (question, chunk) pair.

Speed: whole calls (all seven evaluators) per second on the labelled set, with the
embedder's cache emptied before each pass (cold: every text is embedded once per pass)
and kept (warm: repeated chunks and prompts, as a RAG service sends them), on one thread
as the daemon's worker runs it (``Embedder(threads=1)``).

Share at 50 calls/s: demo traffic replayed into a real store at 50 model calls a second
of simulated time for 60 s, then the worker's rounds (interval, sample rate and CPU
budget from the default settings) run over it, each round paced in real time by the
budget; the share is calls scored / calls. Twice: with the embedder's cache off (every
text embedded: what unique real traffic costs) and on (the demo's few texts repeat).

    PYTHONPATH=. python bench/evals_bench.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.demo.replay import replay  # noqa: E402
from appliance.evals.evaluators import CachedEncoder, Call, Evaluators  # noqa: E402
from appliance.evals.quality import accuracy, roc_auc  # noqa: E402
from appliance.evals.worker import SETTLE_S, EvalWorker  # noqa: E402
from appliance.rca.embed import Embedder  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402
from tests.evals_set import FACTS, chunk_pairs, triples  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def quality(ev: Evaluators) -> dict[str, Any]:
    got: dict[str, tuple[list[float], list[int]]] = {}
    for t in triples():
        for s in ev.evaluate(Call(t.question, t.answer, t.context, t.prompt), list(t.labels)):
            scores, labels = got.setdefault(s.name, ([], []))
            scores.append(s.score if s.score is not None else 0.0)
            labels.append(t.labels[s.name])
    pairs = chunk_pairs()
    got["retrieval_relevance"] = (
        [ev.retrieval_relevance(Call(q, "-", [c])).score or 0.0 for q, c, _ in pairs],
        [y for *_, y in pairs])
    return {name: {"roc_auc": round(roc_auc(s, y), 4),
                   "threshold": Evaluators.THRESHOLDS[name],
                   "accuracy": round(accuracy(s, y, Evaluators.THRESHOLDS[name]), 4),
                   "positives": sum(y), "negatives": len(y) - sum(y)}
            for name, (s, y) in sorted(got.items())}


def speed(embedder: Embedder, passes: int = 3) -> dict[str, Any]:
    calls = [Call(t.question, t.answer, t.context, t.prompt) for t in triples()]
    out: dict[str, Any] = {}
    for label, cold in (("cold", True), ("warm", False)):
        encoder = CachedEncoder(embedder)
        ev = Evaluators(encoder)
        rates = []
        for _ in range(passes):
            if cold:
                encoder._cache.clear()
            t0 = time.perf_counter()
            for c in calls:
                ev.evaluate(c)
            rates.append(len(calls) / (time.perf_counter() - t0))
        out[f"{label}_calls_per_s"] = {"median": round(sorted(rates)[len(rates) // 2], 1),
                                       "best": round(max(rates), 1)}
    return out


def share_at_50(embedder: Embedder, cache: bool, seconds: int = 60) -> dict[str, Any]:
    s = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        store = SpanStore(Path(tmp) / "spans.duckdb")
        # The demo mix makes ~1.75 model calls per trace (agents call the model several
        # times): 28.5 traces/s is ~50 model calls/s.
        start = datetime.now(UTC) - timedelta(seconds=seconds)
        replay(store, Path(tmp), seconds, 28.5, seed=7, start=start, app_scores=False)
        calls = store.read("SELECT count(*) AS n FROM spans WHERE operation = 'chat' "
                           "AND output_messages IS NOT NULL")[0]["n"]
        # Without the cache every text is embedded, as unique real traffic would be; with
        # it, the demo's few texts are embedded once.
        worker = EvalWorker(store, CachedEncoder(embedder, 4096 if cache else 0), s)
        worker.cursor = store.read("SELECT min(received_at) AS t FROM spans")[0]["t"] - \
            timedelta(seconds=1)
        end = store.read("SELECT max(received_at) AS t FROM spans")[0]["t"]
        t, cpu0, wall0 = worker.cursor, time.process_time(), time.perf_counter()
        rounds = 0
        while t < end + timedelta(seconds=SETTLE_S + s.evals_interval_s):
            t += timedelta(seconds=s.evals_interval_s)
            worker.run_once(now=t)
            rounds += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        totals = worker.totals
        store.close()
    return {"model_calls": calls, "calls_per_s": round(calls / seconds, 1),
            "sample_rate": s.evals_sample_rate, "cpu_budget": s.evals_cpu_budget,
            "interval_s": s.evals_interval_s, "rounds": rounds,
            "sampled": totals.sampled, "scored": totals.evaluated,
            "over_budget": totals.over_budget,
            "share_scored": round(totals.evaluated / calls, 4) if calls else None,
            "worker_cpu_s": round(totals.cpu_s, 2),
            "worker_cpu_share_of_one_core": round(totals.cpu_s / (rounds * s.evals_interval_s),
                                                  3),
            "bench_wall_s": round(wall, 1), "bench_cpu_s": round(cpu, 1)}


def main() -> None:
    embedder = Embedder(threads=1)  # as the daemon's worker runs it
    result: dict[str, Any] = {
        "benchmark": "appliance.evals (built-in evaluators)",
        "labelled_set": {"facts": len(FACTS), "triples": len(triples()),
                         "chunk_pairs": len(chunk_pairs()), "file": "tests/evals_set.py"},
        "quality": quality(Evaluators(embedder)),
        "goals": {"groundedness_roc_auc": 0.85, "retrieval_relevance_roc_auc": 0.9},
        "speed_one_thread": speed(embedder),
        "share_at_50_calls_per_s": {"no_cache": share_at_50(embedder, cache=False),
                                    "demo_texts_cached": share_at_50(embedder, cache=True)},
        "load_average_1m": [round(x, 2) for x in os.getloadavg()][:1],
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "evals.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
