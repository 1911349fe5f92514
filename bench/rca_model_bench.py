"""The local RCA model on the rules' diagnoses of the scenario incidents.

For each failure scenario of the demo generator (the same replay as
tests/unit/test_rca_rules.py: 600 s at 1.5 traces/s, seed 11, the fault at 420 s, a
harmless deploy of another service 20 s before the onset), the rules diagnose the
detector's case; the question built from it (no similar cases: the knowledge base is
measured on its own) is put to each model, with a generous timeout so the real time
is measured rather than cut. Reported per model: load time, answer seconds p50/p95,
tokens, how many answers passed the checks (schema, ids, numbers in the explanation),
how many fit the default ``rca_model_timeout_s``, and how often the model's type and
hypothesis agree with the rules'. Then one question with 1 and with 2 llama.cpp
threads.

    .venv/bin/python bench/rca_model_bench.py [--models smollm2-135m-instruct,gemma-3-270m]

Writes bench/results/rca-model.json. The machine's load average is recorded: this
2-core machine is shared, and llama.cpp's speed follows the free CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.cases.model import CaseOpen  # noqa: E402
from appliance.changes.store import ChangeIn  # noqa: E402
from appliance.demo import agents, rag  # noqa: E402
from appliance.demo.names import ScenarioName  # noqa: E402
from appliance.demo.replay import first_detection, replay  # noqa: E402
from appliance.demo.scenarios import BASELINE, SCENARIOS  # noqa: E402
from appliance.errors import ModelError  # noqa: E402
from appliance.rca.evidence import collect  # noqa: E402
from appliance.rca.model import LocalModel  # noqa: E402
from appliance.rca.prompt import ModelQuestion, question_of  # noqa: E402
from appliance.rca.rules import diagnose  # noqa: E402
from appliance.records import Records  # noqa: E402
from appliance.settings import DetectConfig, Settings  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

SECONDS, RATE, ONSET, SEED = 600, 1.5, 420, 11
CFG = DetectConfig()
MEASURE_TIMEOUT_S = 300.0
OUT = ROOT / "bench" / "results" / "rca-model.json"


def _question(root: Path, name: ScenarioName) -> tuple[ModelQuestion, dict[str, Any]]:
    store = SpanStore(root / "spans.duckdb")
    try:
        records = Records.open(store, Settings(data_dir=root))
        run = replay(store, root, SECONDS, RATE, seed=SEED, scenario=name, at=ONSET)
        assert run.onset is not None
        target = SCENARIOS[name].target(None)
        if name == ScenarioName.context_overflow:  # what no span shows, recorded by hand
            records.changes.record(ChangeIn.model_validate(
                {"kind": "config", "service": target, "at": run.onset.isoformat(),
                 "from": f"top_k={BASELINE.top_k}",
                 "to": f"top_k={SCENARIOS[name].change(BASELINE).top_k}"}), "bench")
        other = agents.SERVICE if target != agents.SERVICE else rag.SERVICE
        records.changes.record(ChangeIn.model_validate(
            {"kind": "deploy", "service": other, "from": "1.4.2", "to": "1.5.0",
             "at": (run.onset - timedelta(seconds=20)).isoformat()}), "bench")
        at, finding = first_detection(store, CFG, run.onset,
                                      run.start + timedelta(seconds=SECONDS))[0]
        case = records.cases.open(CaseOpen.model_validate(finding.as_case_request()), "bench")
        ev = collect(store, records.changes, case, CFG, at)
        d = diagnose(ev)
        rules = {"failure_type": str(d.failure_type), "confidence": d.confidence,
                 "top": [d.hypotheses[0].kind, d.hypotheses[0].ref] if d.hypotheses else None}
        return question_of(ev, d, []), rules
    finally:
        store.close()


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, max(0, round(p * (len(xs) - 1))))], 2)


def _ask(model: LocalModel, q: ModelQuestion) -> dict[str, Any]:
    start = time.monotonic()
    try:
        a = model.answer(q, timeout_s=MEASURE_TIMEOUT_S)
    except ModelError as e:
        return {"outcome": e.type, "error": e.message[:300],
                "seconds": round(time.monotonic() - start, 2)}
    return {"outcome": "ok", "seconds": round(a.seconds, 2), "tokens": a.tokens,
            "failure_type": a.failure_type, "hypothesis_id": a.hypothesis_id,
            "evidence_ids": a.evidence_ids, "explanation": a.explanation,
            "type_agrees": a.failure_type == q.failure_type,
            "hypothesis_agrees": a.hypothesis_id == "H1"}


def _model(name: str, questions: dict[str, ModelQuestion], data_dir: Path,
           threads: int) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, rca_model_name=name, rca_model_threads=threads)
    t = time.monotonic()
    model = LocalModel.load(settings)
    load_s = time.monotonic() - t
    runs = {}
    for scenario, q in questions.items():
        runs[scenario] = _ask(model, q) | {"load_avg": round(os.getloadavg()[0], 1)}
        print(name, scenario, runs[scenario], flush=True)
    ok = [r for r in runs.values() if r["outcome"] == "ok"]
    answered = [r for r in runs.values() if "tokens" in r]
    secs = [r["seconds"] for r in runs.values()]
    return {
        "model": name, "sha256": model.info.sha256, "source": model.info.source,
        "threads": threads, "load_s": round(load_s, 2),
        "questions": len(runs), "valid_answers": len(ok),
        "outcomes": {o: sum(r["outcome"] == o for r in runs.values())
                     for o in sorted({r["outcome"] for r in runs.values()})},
        "seconds_p50": _pct(secs, 0.5), "seconds_p95": _pct(secs, 0.95),
        "within_default_timeout": sum(s <= settings.rca_model_timeout_s for s in secs),
        "default_timeout_s": settings.rca_model_timeout_s,
        "tokens_p50": _pct([float(r["tokens"]) for r in answered], 0.5),
        "type_agrees_with_rules": sum(bool(r.get("type_agrees")) for r in ok),
        "hypothesis_agrees_with_rules": sum(bool(r.get("hypothesis_agrees")) for r in ok),
        "runs": runs,
    }


def _threads(name: str, q: ModelQuestion, data_dir: Path) -> dict[str, Any]:
    out = {}
    for threads in (1, 2):
        model = LocalModel.load(Settings(data_dir=data_dir, rca_model_name=name,
                                         rca_model_threads=threads))
        r = _ask(model, q)
        out[str(threads)] = {"seconds": r["seconds"], "outcome": r["outcome"],
                             "load_avg": round(os.getloadavg()[0], 1)}
        print("threads", threads, out[str(threads)], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma-3-270m")
    ap.add_argument("--scenarios", default=",".join(
        n for n in ScenarioName if n != ScenarioName.normal))
    ap.add_argument("--no-threads", action="store_true", help="skip the 1-vs-2 threads run")
    args = ap.parse_args()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    questions: dict[str, ModelQuestion] = {}
    rules: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tracehold-rca-model-") as tmp:
        for n in args.scenarios.split(","):
            root = Path(tmp) / n
            root.mkdir()
            questions[n], rules[n] = _question(root, ScenarioName(n))
            print("rules", n, rules[n], flush=True)
        data_dir = Path(tmp) / "data"
        models = [_model(m, questions, data_dir, 1) for m in args.models.split(",")]
        threads = None if args.no_threads else _threads(
            args.models.split(",")[0], next(iter(questions.values())), data_dir)
    result = {
        "what": "local RCA model answering the rules' diagnosis of each failure scenario "
                "(bench/rca_model_bench.py); greedy decoding, JSON-schema grammar, answers "
                "checked by appliance/rca/answer.py",
        "started": started, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, shared with other work",
        "load_avg_before": [round(x, 1) for x in load_before],
        "load_avg_after": [round(x, 1) for x in os.getloadavg()],
        "rules": rules,
        "prompt_facts": {n: len(q.facts) for n, q in questions.items()},
        "models": models,
        "threads_1_vs_2": threads,
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({m["model"]: {k: v for k, v in m.items() if k != "runs"}
                      for m in models}, indent=1))


if __name__ == "__main__":
    main()
