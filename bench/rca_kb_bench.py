"""The RCA knowledge base (appliance/rca/kb.py): seed time, search latency, learning.

On a fresh Chroma folder in a temporary directory, with the real embedder:

* ``seed_s``: open a new folder and seed the shipped playbooks (each embedded), three
  fresh folders, median; ``reopen_s``: open a seeded folder again (the seed finds every
  playbook unchanged and writes nothing);
* ``similar_ms``: ``similar(case_text, None, k=5)`` over case texts of every type
  (p50/p95 of ``--queries`` calls), on the playbooks alone and again after
  ``--cases`` resolved cases were learned; ``learn_ms``: one ``learn`` each;
* ``retrieval``: for each playbook, its shape alone (type, signals, blamed kind, change
  kinds; no prose) as the query: how often the nearest entry has its type, and how
  often the playbook itself is among the three nearest;
* ``network``: with strace present, the inet sockets a process opening, seeding and
  searching a knowledge base creates over 15 s (onnxruntime's telemetry delay).

Prints a summary and writes ``bench/results/rca-kb.json``.

    PYTHONPATH=. python bench/rca_kb_bench.py [--queries 200] [--cases 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(values, 0.5) * 1000, 2), "p95": round(_pct(values, 0.95) * 1000, 2),
            "n": len(values)}


def _cases(count: int, seed: int = 7) -> list[object]:
    """Resolved cases of random shapes, built from the playbooks' signals and change
    kinds (every type), in services named apart."""
    from appliance.cases.model import Case, CaseContext, ChangeRef, Resolution, Signal
    from appliance.rca.kb import load_playbooks

    rng = random.Random(seed)
    books = load_playbooks()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: list[object] = []
    for i in range(count):
        b = rng.choice(books)
        signals = []
        for s in b.signals:
            name, *move = s.split()
            if move:
                base = rng.uniform(0.3, 0.9)
                value = base * (1.6 if move[0] == "up" else 0.5)
                signals.append(Signal(name=name, value=round(value, 3), baseline=round(base, 3)))
            else:
                signals.append(Signal(name=name, value=f"v{i}"))
        changes = [ChangeRef(id=f"chg_{i}_{k}", kind=k, service=f"svc-{i}", source="api")
                   for k in b.change_kinds if rng.random() < 0.7]
        out.append(Case(id=f"case_{i:05d}", title=b.title, service=f"svc-{i}",
                        failure_type=b.failure_type, signature=f"svc-{i}|{b.failure_type}|x",
                        status="resolved", opened_at=now, onset_at=now, updated_at=now,
                        signals=signals, context=CaseContext(changes=changes),
                        resolution=Resolution(root_cause=b.root_cause, fix_applied=b.fix,
                                              resolved_at=now, resolved_by="bench")))
    return out


def _network(folder: Path) -> dict[str, object]:
    if shutil.which("strace") is None:
        return {"measured": False, "reason": "strace is not installed"}
    trace = folder / "strace.txt"
    script = ("import time; from pathlib import Path; from appliance.rca.embed import Embedder; "
              "from appliance.rca.kb import KnowledgeBase; "
              f"kb = KnowledgeBase.open(Path({str(folder / 'net-kb')!r}), Embedder()); "
              "kb.similar('retrieval drift. signals: retrieval score down.', None); "
              "time.sleep(15)")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=socket,connect", "-o", str(trace),
                    sys.executable, "-c", script], check=True, env=env, capture_output=True,
                   timeout=300)
    inet = [c for c in trace.read_text().splitlines() if "AF_INET" in c]
    return {"measured": True, "watched_s": 15, "inet_sockets": len(inet)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cases", type=int, default=300)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from appliance.rca.case_text import case_text, compose
    from appliance.rca.embed import Embedder
    from appliance.rca.kb import KnowledgeBase, load_playbooks

    embedder = Embedder()
    load_s = time.perf_counter() - t0
    books = load_playbooks()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rca-kb-bench-") as tmp:
        root = Path(tmp)
        seeds, reopens = [], []
        for n in range(3):
            t = time.perf_counter()
            KnowledgeBase.open(root / f"kb{n}", embedder).close()
            seeds.append(time.perf_counter() - t)
            t = time.perf_counter()
            KnowledgeBase.open(root / f"kb{n}", embedder).close()
            reopens.append(time.perf_counter() - t)

        kb = KnowledgeBase.open(root / "kb0", embedder)
        cases = _cases(args.cases)
        queries = [case_text(c) for c in _cases(args.queries, seed=11)]  # type: ignore[arg-type]
        kb.similar(queries[0], None)  # warm-up
        playbooks_only = []
        for q in queries:
            t = time.perf_counter()
            kb.similar(q, None, k=5)
            playbooks_only.append(time.perf_counter() - t)

        shape_hits = self_in_3 = 0
        for b in books:
            shape = compose(b.failure_type, [(s.split()[0], (s.split()[1:] or [None])[0])
                                             for s in b.signals], b.blames, b.change_kinds)
            found = kb.similar(shape, None, k=3)
            shape_hits += found[0].failure_type == b.failure_type
            self_in_3 += b.id in {m.id for m in found}

        learns = []
        for c in cases:
            t = time.perf_counter()
            kb.learn(c)  # type: ignore[arg-type]
            learns.append(time.perf_counter() - t)
        with_cases = []
        for q in queries:
            t = time.perf_counter()
            kb.similar(q, None, k=5)
            with_cases.append(time.perf_counter() - t)
        entries = kb.count()
        kb.close()
        network = _network(root)

    result = {
        "benchmark": "appliance.rca.kb.KnowledgeBase", "embedder": embedder.model_id,
        "chromadb": __import__("chromadb").__version__, "playbooks": len(books),
        "embedder_load_s": round(load_s, 3),
        "seed_s": {"median": round(statistics.median(seeds), 3), "runs": [round(s, 3)
                                                                          for s in seeds]},
        "reopen_s": {"median": round(statistics.median(reopens), 3),
                     "runs": [round(s, 3) for s in reopens]},
        "similar_ms_playbooks_only": _ms(playbooks_only),
        f"similar_ms_with_{args.cases}_cases": _ms(with_cases),
        "learn_ms": _ms(learns), "entries_after_learning": entries,
        "retrieval": {"playbook_shape_top1_same_type": round(shape_hits / len(books), 3),
                      "playbook_itself_in_top3": round(self_in_3 / len(books), 3)},
        "network": network,
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rca-kb.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
