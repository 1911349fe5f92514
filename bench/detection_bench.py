"""Detection on the real stack: for each failure scenario, a fresh stack, demo traffic,
the scenario at --at, and the time until a case of that type opens (goal: 2 minutes).
The harmless `normal` scenario runs for 15 minutes and should open no case.

    .venv/bin/python bench/detection_bench.py [scenario ...]

Writes bench/results/detection.json: per scenario the delay, the cases opened
(right and wrong), recall, and false cases per hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TRACEHOLD, running_stack  # noqa: E402

RATE, AT, WAIT_AFTER, NORMAL_S = 4.0, 100.0, 150.0, 900.0
FAILURES = ["hallucination", "retrieval_drift", "coherence_degradation", "agent_loop",
            "prompt_regression", "context_overflow", "provider_error",
            "latency_cost_regression"]


def _cases(data_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run([*TRACEHOLD, "cases", "list", "--json", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    data = json.loads(out.stdout or "[]")
    return data["cases"] if isinstance(data, dict) else data


def run_scenario(name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"tracehold-detect-{name}-") as tmp:
        data_dir = Path(tmp)
        with running_stack(data_dir):
            duration = AT + (NORMAL_S if name == "normal" else WAIT_AFTER)
            demo = subprocess.Popen(
                [*TRACEHOLD, "demo", "--data-dir", str(data_dir), "--rate", str(RATE),
                 "--seed", "5", "--scenario", name, "--at", str(AT), "--duration", str(duration),
                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            truth_file = data_dir / "run" / "demo-scenarios.jsonl"
            onset: datetime | None = None
            found: dict[str, Any] | None = None
            while demo.poll() is None:
                time.sleep(2)
                if onset is None and truth_file.exists():
                    onset = datetime.fromisoformat(
                        json.loads(truth_file.read_text().splitlines()[-1])["onset"])
                if name != "normal" and onset is not None:
                    hits = [c for c in _cases(data_dir) if c["failure_type"] == name]
                    if hits:
                        found = hits[0]
                        demo.terminate()
            demo.wait()
            cases = _cases(data_dir)
    delay = None
    if found is not None and onset is not None:
        delay = (datetime.fromisoformat(found["opened_at"]) - onset).total_seconds()
    wrong = [c["failure_type"] for c in cases if c["failure_type"] != name]
    return {"scenario": name, "onset": onset.isoformat() if onset else None,
            "detected": found is not None, "seconds_to_case": delay,
            "case_service": found["service"] if found else None,
            "cases_opened": [(c["failure_type"], c["service"]) for c in cases],
            "wrong_cases": wrong,
            "observed_s": round(AT + (NORMAL_S if name == "normal" else WAIT_AFTER))}


def main(names: list[str]) -> None:
    results = []
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        results.append(run_scenario(name))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    failures = [r for r in results if r["scenario"] != "normal"]
    hours = sum(r["observed_s"] for r in results) / 3600
    summary = {
        "benchmark": "detection", "rate_traces_per_s": RATE, "onset_at_s": AT,
        "recall": (round(sum(r["detected"] for r in failures) / len(failures), 3)
                   if failures else None),
        "within_2_min": sum(1 for r in failures
                            if r["seconds_to_case"] is not None and r["seconds_to_case"] <= 120),
        "median_seconds_to_case": (sorted(r["seconds_to_case"] for r in failures
                                          if r["seconds_to_case"] is not None) or [None])[
            len([r for r in failures if r["seconds_to_case"] is not None]) // 2]
        if any(r["seconds_to_case"] is not None for r in failures) else None,
        "false_cases": sum(len(r["wrong_cases"]) for r in results),
        "false_cases_per_hour": round(sum(len(r["wrong_cases"]) for r in results) / hours, 2),
        "observed_hours": round(hours, 2), "runs": results,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / "bench" / "results" / "detection.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or [*FAILURES, "normal"])
