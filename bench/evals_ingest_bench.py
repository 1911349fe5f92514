"""Does the evaluator worker slow ingest? The daemon's ingest rate with the built-in
evaluators off and on, in one run (issue 12).

The real daemon (``python -m appliance.daemon``) on one data folder, restarted for each
block with ``evals_enabled`` off or on (the other settings default; detection, RCA and
so the cases they would open are off in both, so only the evaluators differ). Blocks
alternate and begin and end with "off" (off, on, off, on, ..., off): each "on" block is
compared with the mean of the two "off" blocks around it, which cancels a drift of the
shared machine's load or of the growing store.

In each block, after ``--warmup-s`` unmeasured (the embedder loads, the worker's first
round begins), two client threads post OTLP/protobuf requests back to back to
``POST /v1/traces`` for ``--block-s``: agent traces of tests/genai_traces.py (six spans,
a retrieval and a chat call carrying content, no app scores) built from
tests/evals_set.py's triples, with fresh ids and a question and answer made unique per
trace (so the evaluators' cache does not make scoring cheaper than real traffic is).
A third thread prepares the bodies ahead. Spans stored per second come from the store
(``received_at`` in the block's measured window), evaluations per second from the
``evaluations`` table (distinct calls with ``scored_at`` in it), read after the run.

    PYTHONPATH=. .venv/bin/python bench/evals_ingest_bench.py [--on-blocks 3] [--block-s 40]
        [--out evals-ingest] [--keep]

Writes bench/results/<out>.json; ``--keep`` keeps the data folder (the store, the daemon's
log) to look into. ``evals-ingest-before.json`` is a run before the runner read its calls
as stored copies (appliance/evals/runner.py): the "on" blocks at 0.74x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.settings import Settings  # noqa: E402
from tests.evals_set import triples  # noqa: E402
from tests.genai_traces import AgentTrace, export  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PROTO = {"Content-Type": "application/x-protobuf"}
WORDS = ("amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
         "juniper", "kestrel", "lumen", "marble", "nectar", "onyx", "pylon", "quartz",
         "raven", "sierra", "tundra", "umber", "velvet", "willow", "zephyr")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bodies:
    """Request bodies of ``traces`` agent traces each, from a pool of templates: fresh
    ids per body, and each chat call's question and answer tagged with a unique phrase."""

    def __init__(self, traces: int, seed: int = 3) -> None:
        self.rng = random.Random(seed)
        pool = [t for t in triples() if t.kind in ("supported", "changed_number",
                                                  "added_claim", "off_topic", "swapped_name")]
        self.templates: list[ExportTraceServiceRequest] = []
        for i in range(8):
            ts = []
            for j in range(traces):
                t = pool[(i * traces + j) % len(pool)]
                ts.append(AgentTrace(service=f"rag-{j % 3}", prompt=t.question,
                                     chunks=[(c, 0.8) for c in t.context], output=t.answer,
                                     evaluations={}))
            self.templates.append(export(ts))
        self.spans_per_body = traces * 6
        self.n = 0

    def _tag(self) -> str:
        self.n += 1
        return (f"{self.rng.choice(WORDS)} {self.rng.choice(WORDS)} "
                f"{self.rng.choice(WORDS)} case {self.n}")

    def next(self) -> bytes:
        req = ExportTraceServiceRequest()
        req.CopyFrom(self.templates[self.n % len(self.templates)])
        ids: dict[bytes, bytes] = {}
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                trace_new: dict[bytes, bytes] = {}
                for sp in ss.spans:
                    sp.trace_id = trace_new.setdefault(sp.trace_id, os.urandom(16))
                    sp.span_id = ids.setdefault(sp.span_id, os.urandom(8))
                    if sp.parent_span_id:
                        sp.parent_span_id = ids.setdefault(sp.parent_span_id, os.urandom(8))
                    if sp.name.startswith("chat "):
                        tag = self._tag()
                        for kv in sp.attributes:
                            if kv.key in ("gen_ai.input.messages", "gen_ai.output.messages"):
                                msgs = json.loads(kv.value.string_value)
                                part = msgs[-1]["parts"][0]
                                part["content"] = (f"{part['content']} ({tag})"
                                                   if kv.key.endswith("output.messages")
                                                   else f"[{tag}] {part['content']}")
                                kv.value.string_value = json.dumps(msgs)
        return req.SerializeToString()


class Daemon:
    def __init__(self, folder: Path, port: int, evals: bool) -> None:
        self.folder, self.base = folder, f"http://127.0.0.1:{port}"
        (folder / "config.toml").write_text(
            f"evals_enabled = {'true' if evals else 'false'}\nrca_enabled = false\n"
            f"[detect]\nenabled = false\n[ports]\ndaemon = {port}\n")
        env = {**os.environ, "TRACEHOLD_DATA_DIR": str(folder)}
        env.pop("TRACEHOLD_CONFIG", None)
        with (folder / "daemon.log").open("a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance.daemon",
                                          "--data-dir", str(folder)], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((folder / "daemon.log").read_text()[-2000:])
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2,
                             trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not become healthy in 120 s")
            time.sleep(0.1)  # polling for health, not a fixed wait

    def cpu_s(self) -> tuple[float, float]:
        """CPU seconds so far (user + system) of the daemon process, and of its threads
        above the process's nice value (the evaluator worker's)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = _stat(Path(f"/proc/{self.proc.pid}/stat"))[0] / tick
        niced = 0.0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                cpu, nice = _stat(task / "stat")
            except (OSError, IndexError):  # a thread that just ended
                continue
            niced += cpu / tick if nice > 0 else 0.0
        return total, niced

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def _stat(path: Path) -> tuple[int, int]:
    """(utime + stime in ticks, nice) of a /proc stat file."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[16])


def load(base: str, bodies: Bodies, warmup_s: float, block_s: float, senders: int = 2
         ) -> dict[str, Any]:
    """Post bodies back to back; returns the measured window and what the client saw."""
    ready: queue.Queue[bytes] = queue.Queue(maxsize=16)
    stop = threading.Event()
    t_start = time.monotonic()
    t_measure, t_end = t_start + warmup_s, t_start + warmup_s + block_s
    lat: list[float] = []
    acked = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        while not stop.is_set():
            body = bodies.next()
            while not stop.is_set():
                try:
                    ready.put(body, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def send() -> None:
        with httpx.Client(base_url=base, trust_env=False, timeout=60) as c:
            while True:
                body = ready.get()
                t0 = time.monotonic()
                if t0 >= t_end:
                    return
                r = c.post("/v1/traces", content=body, headers=PROTO)
                t1 = time.monotonic()
                with lock:
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                    elif t0 >= t_measure:
                        lat.append(t1 - t0)
                        acked[0] += bodies.spans_per_body

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    threads = [threading.Thread(target=send, daemon=True) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    producer.join(10)
    lat.sort()
    wall = datetime.now(UTC).timestamp() - time.monotonic()  # monotonic -> wall clock
    return {"measure_from": datetime.fromtimestamp(wall + t_measure, UTC),
            "measure_to": datetime.fromtimestamp(wall + t_end, UTC),
            "client_spans_acked": acked[0], "errors": errors[:5], "error_count": len(errors),
            "request_ms": {"p50": round(lat[len(lat) // 2] * 1000, 1),
                           "p95": round(lat[int(len(lat) * 0.95)] * 1000, 1)} if lat else None}


def summary(blocks: list[dict[str, Any]], warmup_s: float, block_s: float
            ) -> dict[str, Any]:
    """The run's figures from its blocks (``--summarise`` recomputes them from a file)."""
    off = [b["spans_per_s"] for b in blocks if b["mode"] == "off"]
    on = [b["spans_per_s"] for b in blocks if b["mode"] == "on"]
    # each "on" block against the mean of the "off" blocks just before and after it
    paired = [blocks[i]["spans_per_s"] / ((blocks[i - 1]["spans_per_s"]
                                           + blocks[i + 1]["spans_per_s"]) / 2)
              for i in range(1, len(blocks) - 1, 2)]
    evals_on = [b["evaluations_per_s"] for b in blocks if b["mode"] == "on"]
    out: dict[str, Any] = {
        "spans_per_s_median": {"off": round(statistics.median(off), 1),
                               "on": round(statistics.median(on), 1)},
        "ratio_on_off_of_medians": round(statistics.median(on) / statistics.median(off), 3),
        "ratio_on_to_neighbour_offs": [round(r, 3) for r in paired],
        "ratio_on_to_neighbour_offs_median": round(statistics.median(paired), 3),
        "off_blocks_spread": round((max(off) - min(off)) / statistics.median(off), 3),
        "evaluations_per_s_on_median": round(statistics.median(evals_on), 2),
    }
    if all("worker_cpu_cores" in b for b in blocks):
        # The daemon's CPU per stored span without the worker's thread: what ingest itself
        # costs, less sensitive than the rate to how much of the shared machine it gets.
        # CPU is counted over warm-up + block, spans over the block: both are rates.
        per: dict[str, list[float]] = {"off": [], "on": []}
        for b in blocks:
            cores = b["daemon_cpu_cores"] - b["worker_cpu_cores"]
            per[b["mode"]].append(cores / max(b["spans_stored"] / block_s, 1e-9) * 1e6)
        out["ingest_cpu_us_per_span_median"] = {k: round(statistics.median(v), 1)
                                                for k, v in per.items()}
        out["worker_cpu_cores_on_median"] = round(statistics.median(
            b["worker_cpu_cores"] for b in blocks if b["mode"] == "on"), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--on-blocks", type=int, default=3, help="'on' blocks (off blocks: +1)")
    ap.add_argument("--block-s", type=float, default=40.0)
    ap.add_argument("--warmup-s", type=float, default=8.0)
    ap.add_argument("--traces-per-request", type=int, default=40)
    ap.add_argument("--out", default="evals-ingest")
    ap.add_argument("--keep", action="store_true", help="keep the data folder (and its log)")
    ap.add_argument("--summarise", type=Path,
                    help="recompute the figures of a result file from its blocks, and stop")
    args = ap.parse_args()
    if args.summarise:
        done = json.loads(args.summarise.read_text())
        done.update(summary(done["blocks"], done["load"]["warmup_s"], done["load"]["block_s"]))
        args.summarise.write_text(json.dumps(done, indent=2, default=str) + "\n")
        return
    s = Settings()
    folder = Path(tempfile.mkdtemp(prefix="evals-ingest-bench-"))
    bodies = Bodies(args.traces_per_request)
    plan = ["off", "on"] * args.on_blocks + ["off"]
    blocks: list[dict[str, Any]] = []
    try:
        for i, mode in enumerate(plan):
            port = free_port()
            daemon = Daemon(folder, port, evals=(mode == "on"))
            try:
                cpu0, worker0 = daemon.cpu_s()
                got = load(daemon.base, bodies, args.warmup_s, args.block_s)
                cpu1, worker1 = daemon.cpu_s()
            finally:
                daemon.stop()
            got.update(block=i, mode=mode, load_average_1m=round(os.getloadavg()[0], 2),
                       daemon_cpu_cores=round((cpu1 - cpu0) / (args.warmup_s + args.block_s), 3),
                       worker_cpu_cores=round((worker1 - worker0) / (args.warmup_s + args.block_s),
                                              3))
            blocks.append(got)
            print(f"block {i} {mode}: {got['client_spans_acked'] / args.block_s:.0f} spans/s "
                  f"acked, load {got['load_average_1m']}", flush=True)
        con = duckdb.connect(str(Settings(data_dir=folder).span_db),
                             read_only=True)
        for b in blocks:
            window = [b["measure_from"], b["measure_to"]]
            b["spans_stored"] = con.execute(
                "SELECT count(*) FROM spans WHERE received_at >= ? AND received_at < ?",
                window).fetchone()[0]  # type: ignore[index]
            b["calls_evaluated"] = con.execute(
                "SELECT count(DISTINCT (trace_id, span_id)) FROM evaluations "
                "WHERE scored_at >= ? AND scored_at < ?", window).fetchone()[0]  # type: ignore[index]
            b["spans_per_s"] = round(b["spans_stored"] / args.block_s, 1)
            b["evaluations_per_s"] = round(b["calls_evaluated"] / args.block_s, 2)
            b["model_calls_per_s"] = round(b["spans_per_s"] / 6, 1)
            b["measure_from"], b["measure_to"] = (b["measure_from"].isoformat(),
                                                  b["measure_to"].isoformat())
        total_spans = con.execute("SELECT count(*) FROM spans").fetchone()[0]  # type: ignore[index]
        con.close()
    finally:
        if args.keep:
            print(f"data folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result = {
        "benchmark": "daemon ingest rate with the built-in evaluators off and on, one run",
        "command": "PYTHONPATH=. .venv/bin/python bench/evals_ingest_bench.py "
                   + " ".join(sys.argv[1:]),
        "settings": {"evals_sample_rate": s.evals_sample_rate,
                     "evals_cpu_budget": s.evals_cpu_budget,
                     "evals_interval_s": s.evals_interval_s, "detect_enabled": False,
                     "rca_enabled": False},
        "load": {"requests": f"POST /v1/traces, OTLP protobuf, {args.traces_per_request} "
                             f"agent traces ({bodies.spans_per_body} spans, "
                             f"{args.traces_per_request} chat calls with content) each",
                 "senders": 2, "block_s": args.block_s, "warmup_s": args.warmup_s},
        "blocks": blocks,
        **summary(blocks, args.warmup_s, args.block_s),
        "spans_stored_total": total_spans,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "blocks"}, indent=2))


if __name__ == "__main__":
    main()
