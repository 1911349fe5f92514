"""The RCA embedder (appliance/rca/embed.py): load time, memory, sentences per second.

Load is timed from before importing the module (so onnxruntime's import counts) to a
ready Embedder, with the files in the page cache; RSS is this process's before the
import and after the load. Throughput embeds incident-like sentences of 10-25 tokens,
one per call (batch 1) and 32 per call (batch 32), and 256-token texts (the cut) one
per call, each in five windows (median and best: the machine is shared). Prints a
summary and writes ``bench/results/embed.json``.

    PYTHONPATH=. python bench/embed_bench.py [--seconds 10] [--threads 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results"
SUBJECTS = ["Groundedness scores", "Retrieval relevance", "Time to first token",
            "The error rate of the chat model", "Input tokens per call", "Agent handoffs",
            "Refusals on the support bot", "Output tokens per request"]
EVENTS = ["after the prompt template moved to v{n}", "once the index was rebuilt on day {n}",
          "when the provider returned {n} rate-limit errors", "after top_k was raised to {n}",
          "while the temperature went from 0.2 to 0.{n}", "since deploy {n} of the RAG service"]
MOVES = ["fell sharply", "doubled", "drifted slowly", "rose for every tenant"]


def sentences(count: int) -> list[str]:
    combos = itertools.islice(itertools.cycle(itertools.product(SUBJECTS, MOVES, EVENTS)), count)
    return [f"{s} {m} {e.format(n=i % 97)}." for i, (s, m, e) in enumerate(combos)]


def rate(call: Callable[[], object], per_call: int, seconds: float) -> dict[str, float]:
    """Items per second in five windows of seconds/5 (after one warm-up call): the median,
    and the best, which is what an otherwise idle machine gives."""
    call()
    rates = []
    for _ in range(5):
        done, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds / 5 or done == 0:
            call()
            done += per_call
        rates.append(done / elapsed)
    return {"median": round(statistics.median(rates), 1), "best": round(max(rates), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op (0: cores)")
    args = parser.parse_args()

    process = psutil.Process()
    rss_before = process.memory_info().rss
    t0 = time.perf_counter()
    from appliance.rca.embed import MAX_TOKENS, Embedder
    embedder = Embedder(threads=args.threads)
    load_s = time.perf_counter() - t0
    rss_after = process.memory_info().rss

    texts = sentences(1024)
    long_text = " ".join(texts)  # far past the cut: every call is MAX_TOKENS tokens
    batches = itertools.cycle([texts[i:i + 32] for i in range(0, len(texts), 32)])
    singles = itertools.cycle(texts)
    load_before = os.getloadavg()[0]
    result = {
        "benchmark": "appliance.rca.embed.Embedder", "model": embedder.model_id,
        "model_file": str(embedder.model_path.name), "threads": args.threads,
        "load_s": round(load_s, 3),
        "rss_mib_before_import": round(rss_before / 2**20, 1),
        "rss_mib_after_load": round(rss_after / 2**20, 1),
        "batch_1_sentences_per_s": rate(lambda: embedder.embed([next(singles)]), 1,
                                        args.seconds),
        "batch_32_sentences_per_s": rate(lambda: embedder.embed(next(batches)), 32,
                                         args.seconds),
        f"batch_1_{MAX_TOKENS}_token_texts_per_s": rate(lambda: embedder.embed([long_text]), 1,
                                                       args.seconds),
        "rss_mib_after_run": round(process.memory_info().rss / 2**20, 1),
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
