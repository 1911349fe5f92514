"""Back-pressure through the real stack: the daemon stopped under a paced load, so the
collector's on-disk queue fills and the receiver refuses; then the daemon resumes.

    PYTHONPATH=. .venv/bin/python bench/backpressure_bench.py [--stop-at 20 --resume-at 130
        --load-until 300 --end 360 --rate 10000 --profiles DIR]

Four senders offer ``--rate`` spans/s of 3 KB through Envoy, retrying every refused
request every 0.2 s as an SDK does (a retry storm once the queue is full). The daemon is
stopped with SIGSTOP at ``--stop-at`` s and resumed at ``--resume-at`` (the supervisor's
restart of an unhealthy component is pushed out of the way). Every 2 s the collector's
queue size, accepted and refused spans, delivered spans and Go heap are recorded.

What it answers: does intake resume as soon as the queue has room (a stuck
``memory_limiter`` would keep refusing), how high does the collector's heap go, and is
every accepted span delivered (accepted = delivered at the end, else it fails). With
``--profiles`` the collector's heap profiles (pprof) are kept from before the resume,
after it and at the end of the load.

Writes bench/results/backpressure.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import Stack, start_stack, tracehold  # noqa: E402
from tests.otlp_payloads import export_request  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PER_REQUEST, SENDERS = 500, 4


class Load:
    """Paced senders that retry a refused request every 0.2 s until it is taken."""

    def __init__(self, stack: Stack, rate: float, until: float) -> None:
        self.url = stack.endpoints["otlp_http"] + "/v1/traces"
        self.headers = {"Content-Type": "application/x-protobuf", "X-API-Key": stack.key}
        self.bodies = [export_request("backpressure", PER_REQUEST, big=True).SerializeToString()
                       for _ in range(40)]
        self.rate, self.until = rate, until
        self.codes: dict[str, int] = {}
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.t0 = time.monotonic()

    def _send(self, k: int) -> None:
        with httpx.Client(timeout=60, trust_env=False) as c:
            i = 0
            while not self.stop.is_set() and time.monotonic() - self.t0 < self.until:
                due = self.t0 + i * SENDERS * PER_REQUEST / self.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                while not self.stop.is_set() and time.monotonic() - self.t0 < self.until:
                    try:
                        code = str(c.post(self.url, content=self.bodies[(i + k) % 40],
                                          headers=self.headers).status_code)
                    except httpx.TransportError:
                        code = "transport error"
                    with self.lock:
                        self.codes[code] = self.codes.get(code, 0) + 1
                    if code == "200":
                        break
                    time.sleep(0.2)
                i += 1

    def start(self) -> None:
        for k in range(SENDERS):
            threading.Thread(target=self._send, args=(k,), daemon=True).start()


def _sample(stack: Stack, t: float, load: Load) -> dict[str, Any]:
    c = stack.collector_counter
    with load.lock:
        codes = dict(load.codes)
    return {"t": round(t, 1),
            "queue": c("otelcol_exporter_queue_size", exporter="otlp_http/store"),
            "accepted": c("otelcol_receiver_accepted_spans"),
            "refused": c("otelcol_receiver_refused_spans"),
            "delivered": c("otelcol_exporter_sent_spans", exporter="otlp_http/store"),
            "heap_mib": round(c("otelcol_process_runtime_heap_alloc_bytes") / 2**20, 1),
            "answers": codes}


def run(a: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tracehold-bench-"))
    stack = start_stack(tmp, env={"TRACEHOLD_COLLECTOR_PPROF": "true",
                                  "TRACEHOLD_RESTART_UNHEALTHY_AFTER_S": "0"})
    daemon = next(c["pid"] for c in stack.status()["components"] if c["name"] == "daemon")
    pprof = f"http://127.0.0.1:{stack.settings.ports.collector_pprof}/debug/pprof/heap"
    marks = {"before_resume": a.resume_at - 5, "after_resume": a.resume_at + 30,
             "end_of_load": a.load_until - 5}
    rows: list[dict[str, Any]] = []
    stopped = resumed = False
    load = Load(stack, a.rate, a.load_until)
    load.start()
    try:
        while (t := time.monotonic() - load.t0) < a.end:
            if not stopped and t >= a.stop_at:
                os.kill(daemon, signal.SIGSTOP)
                stopped = True
            if stopped and not resumed and t >= a.resume_at:
                os.kill(daemon, signal.SIGCONT)
                resumed = True
            rows.append(_sample(stack, t, load))
            for name, at in list(marks.items()):
                if a.profiles is not None and t >= at:
                    a.profiles.mkdir(parents=True, exist_ok=True)
                    (a.profiles / f"heap-{name}.pb.gz").write_bytes(
                        httpx.get(pprof, timeout=30, trust_env=False).content)
                    del marks[name]
            time.sleep(2)
        deadline = time.monotonic() + 300
        while (last := _sample(stack, time.monotonic() - load.t0, load))["queue"] and \
                time.monotonic() < deadline:
            time.sleep(2)
        rows.append(last)
    finally:
        load.stop.set()
        if stopped and not resumed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGCONT)
        tracehold("down", data_dir=tmp, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    full = [r for r in rows if r["refused"] > 0]
    first_refusal = full[0]["t"] if full else None
    after = [r for r in rows if r["t"] >= a.resume_at]
    base = next((r["accepted"] for r in after), 0.0)
    took = next((r["t"] for r in after if r["accepted"] > base), None)
    result = {
        "rate_offered": a.rate, "daemon_stopped_s": [a.stop_at, a.resume_at],
        "load_until_s": a.load_until,
        "first_refusal_s": first_refusal,
        "intake_again_s_after_resume": round(took - a.resume_at, 1) if took else None,
        "refused_spans": last["refused"], "accepted_spans": last["accepted"],
        "delivered_spans": last["delivered"],
        "lost": last["accepted"] - last["delivered"],
        "heap_mib_max": max(r["heap_mib"] for r in rows),
        "answers": last["answers"], "every_10_s": rows[::5],
    }
    assert result["lost"] == 0, f"{result['lost']} accepted spans were not delivered"
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stop-at", type=float, default=20)
    p.add_argument("--resume-at", type=float, default=130)
    p.add_argument("--load-until", type=float, default=300)
    p.add_argument("--end", type=float, default=360)
    p.add_argument("--rate", type=float, default=10_000)
    p.add_argument("--profiles", type=Path, help="keep the collector's heap profiles here")
    p.add_argument("--out", default="backpressure")
    a = p.parse_args()
    result = {"benchmark": a.out, **run(a), "cpus": os.cpu_count(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "every_10_s"}, indent=2))


if __name__ == "__main__":
    main()
