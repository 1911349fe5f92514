"""Does RCA work slow the API or ingest? API and ingest latency with the RCA worker idle
and with it diagnosing without pause (the real knowledge base and local model), over
the daemon's app on a real port.

An agent-loop incident is replayed into a fresh store (the scenario of
tests/unit/test_rca_rules.py). Then, in alternating rounds (idle, busy, idle, busy, ...
so the shared machine's load falls on both alike), one client reads the case
(``GET /api/v1/cases/{id}``) and posts a 20-span OTLP batch (``POST /v1/traces``) one
after the other, and the p50/p95 of each are kept. While busy, the worker is asked for
another run of the case as soon as the last one is stored. Prints a summary and writes
``bench/results/rca-worker.json``.

    PYTHONPATH=. python bench/rca_worker_bench.py [--rounds 3] [--requests 150]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from appliance.api.app import create_app
from appliance.cases.model import Case
from appliance.rca.worker import ACTOR
from tests.otlp_payloads import export_request
from tests.unit.test_console_pages import free_port
from tests.unit.test_rca_rules import N, _incident

RESULTS = Path(__file__).parent / "results"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _measure(base: str, case_id: str, n: int) -> dict[str, list[float]]:
    body = export_request("bench-ingest", 20).SerializeToString()
    out: dict[str, list[float]] = {"read_case": [], "ingest": []}
    with httpx.Client(base_url=base, trust_env=False, timeout=60) as c:
        for _ in range(n):
            t = time.perf_counter()
            c.get(f"/api/v1/cases/{case_id}").raise_for_status()
            out["read_case"].append(time.perf_counter() - t)
            t = time.perf_counter()
            c.post("/v1/traces", content=body,
                   headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
            out["ingest"].append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=150)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rca-worker-bench-"))
    incident = _incident(root, N.agent_loop)
    records, case_id = incident.records, incident.case.id
    worker = records.rca
    busy, stored = threading.Event(), threading.Event()
    seconds: list[float] = []

    def on_run(action: str, case: Case) -> None:
        if action == "rca.run" and case.rca is not None and case.rca.ran_by == ACTOR:
            seconds.append(float(case.rca.details.get("timings", {}).get("total_s", 0.0)))
            stored.set()
            if busy.is_set():
                worker.request(case_id)  # keep the worker diagnosing without a pause

    records.cases.on_action(on_run)
    worker.start()
    worker.request(case_id)  # loads the model and knowledge base before measuring
    assert stored.wait(900), "the first RCA run did not finish"
    first = records.cases.get(case_id)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(records), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    phases: dict[str, dict[str, list[float]]] = {
        "idle": {"read_case": [], "ingest": []}, "busy": {"read_case": [], "ingest": []}}
    runs_before = len(seconds)
    for _ in range(args.rounds):
        for phase in ("idle", "busy"):
            if phase == "busy":
                busy.set()
                worker.request(case_id)
            got = _measure(base, case_id, args.requests)
            busy.clear()
            while True:  # let the last run land before an idle round
                worker.submit(lambda: None).result(900)  # after the run in flight
                if not worker.pending():
                    break
                time.sleep(0.1)
            for k, v in got.items():
                phases[phase][k] += v
    server.should_exit = True
    thread.join(30)
    worker.stop(900)
    runs = len(seconds) - runs_before
    result: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "requests_per_phase": args.rounds * args.requests,
        "engine": (first.rca.details.get("engine") if first.rca else None),
        "status": (first.rca.details.get("status") if first.rca else None),
        "model": first.rca.model if first.rca else None,
        "rca_runs_while_busy": runs,
        "rca_run_seconds_median": round(statistics.median(seconds[runs_before:]), 2)
        if runs else None,
        "ms": {phase: {k: {"p50": _pct(v, 0.5), "p95": _pct(v, 0.95), "max": _pct(v, 1.0)}
                       for k, v in m.items()} for phase, m in phases.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rca-worker.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    records.store.close()


if __name__ == "__main__":
    main()
