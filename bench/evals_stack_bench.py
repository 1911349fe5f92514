"""The built-in evaluators carrying detection alone on the real stack: for each quality
scenario, a fresh stack, demo traffic with `--no-app-scores` (no evaluation events, no
retrieval similarity scores), the scenario at --at, and the time until a case of that
type opens (issue 12's goal: 3 minutes). While it runs, Prometheus is asked for the
built-in scores (`llm_evaluation_<name>` with a `source` label, scraped from the daemon).

    PYTHONPATH=. .venv/bin/python bench/evals_stack_bench.py [scenario ...]

Writes bench/results/evals-stack.json.
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

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TRACEHOLD, running_stack  # noqa: E402

RATE, AT, WAIT_AFTER, NORMAL_S = 4.0, 100.0, 180.0, 900.0
SCENARIOS = ["hallucination", "retrieval_drift", "coherence_degradation", "normal"]


def _cases(data_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run([*TRACEHOLD, "cases", "list", "--json", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    data = json.loads(out.stdout or "[]")
    return data["cases"] if isinstance(data, dict) else data


def _prometheus(port: int) -> list[dict[str, Any]]:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", trust_env=False, timeout=10,
                  params={"query": 'sum by (__name__, service_name, source) '
                                   '({__name__=~"llm_evaluation_.*_count", source!=""})'})
    return [{**x["metric"], "value": x["value"][1]} for x in r.json()["data"]["result"]]


def run_scenario(name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"tracehold-evals-{name}-") as tmp:
        data_dir = Path(tmp)
        with running_stack(data_dir) as st:
            demo = subprocess.Popen(
                [*TRACEHOLD, "demo", "--data-dir", str(data_dir), "--rate", str(RATE),
                 "--seed", "5", "--scenario", name, "--at", str(AT), "--duration",
                 str(AT + (NORMAL_S if name == "normal" else WAIT_AFTER)), "--no-app-scores",
                 "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            truth_file = data_dir / "run" / "demo-scenarios.jsonl"
            onset: datetime | None = None
            found: dict[str, Any] | None = None
            series: list[dict[str, Any]] = []
            while demo.poll() is None:
                time.sleep(2)
                if onset is None and truth_file.exists():
                    onset = datetime.fromisoformat(
                        json.loads(truth_file.read_text().splitlines()[-1])["onset"])
                if onset is not None and not series:
                    series = _prometheus(st.settings.ports.prometheus)
                if onset is not None and name != "normal":
                    hits = [c for c in _cases(data_dir) if c["failure_type"] == name]
                    if hits:
                        found = hits[0]
                        series = _prometheus(st.settings.ports.prometheus) or series
                        demo.terminate()
            demo.wait()
            cases = _cases(data_dir)
            with st.daemon() as d:
                stats = d.get("/api/v1/stats").json()
    delay = None
    if found is not None and onset is not None:
        delay = (datetime.fromisoformat(found["opened_at"]) - onset).total_seconds()
    return {"scenario": name, "onset": onset.isoformat() if onset else None,
            "detected": found is not None, "seconds_to_case": delay,
            "case_service": found["service"] if found else None,
            "cases_opened": [(c["failure_type"], c["service"]) for c in cases],
            "wrong_cases": [c["failure_type"] for c in cases if c["failure_type"] != name],
            "observed_s_after_onset": (NORMAL_S if name == "normal" else None),
            "prometheus_built_in_series": series, "spans_stored": stats.get("span_count")}


def main(names: list[str]) -> None:
    results = []
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        results.append(run_scenario(name))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    out = ROOT / "bench" / "results" / "evals-stack.json"
    # A run of some scenarios replaces theirs and keeps the others' last results.
    kept = json.loads(out.read_text())["runs"] if out.exists() else []
    results = [r for r in kept if r["scenario"] not in names] + results
    summary = {"benchmark": "evals on the real stack, demo --no-app-scores",
               "rate_traces_per_s": RATE, "onset_at_s": AT, "runs": results,
               "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or SCENARIOS)
