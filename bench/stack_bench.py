"""Benchmarks of the running stack (issue: the telemetry stack runs for real).

    .venv/bin/python bench/stack_bench.py [startup|latency|ingest|memory ...]

Each writes bench/results/<name>.json. The machine is shared and noisy:
medians and ratios are the numbers to read, not single runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import sdk  # noqa: E402
from bench.cpu import sample, self_cpu, stack_readers, used  # noqa: E402
from tests.conftest import Stack, start_stack, tracehold  # noqa: E402
from tests.otlp_payloads import export_request  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _write(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, **data, "cpus": os.cpu_count(), "python": platform.python_version(),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def with_stack(fn: Callable[[Stack], dict[str, Any]],
               store: Path | None = None) -> dict[str, Any]:
    """``fn`` on a fresh stack; with ``store``, a copy of that filled span store is the
    stack's own from the start (measuring at the size users reach)."""
    with tempfile.TemporaryDirectory(prefix="tracehold-bench-") as tmp:
        if store is not None:
            subprocess.run(["cp", "--sparse=always", str(store), str(Path(tmp) / "spans.duckdb")],
                           check=True)
        stack = start_stack(Path(tmp))
        try:
            return fn(stack)
        finally:
            tracehold("down", data_dir=Path(tmp), check=False)


def bench_startup(runs: int = 5) -> None:
    """`tracehold up` to every component healthy (binaries already built)."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="tracehold-bench-") as tmp:
            t0 = time.monotonic()
            tracehold("up", "--detach", "--free-ports", "--bind", "127.0.0.1",
                      data_dir=Path(tmp))
            times.append(time.monotonic() - t0)
            tracehold("down", data_dir=Path(tmp))
    _write("startup", {"runs": runs, "seconds": [round(t, 2) for t in times],
                       "median_s": round(statistics.median(times), 2), "goal_s": 20})


def bench_latency(traces: int = 20) -> None:
    """Trace sent -> span in DuckDB, and -> derived series queryable in Prometheus."""

    def run(stack: Stack) -> dict[str, Any]:
        prom = stack.endpoints["prometheus"]
        client = httpx.Client(timeout=5, trust_env=False)
        to_store, to_prom = [], []
        for i in range(traces):
            service = f"lat-{uuid.uuid4().hex[:8]}"
            provider, counting = sdk.tracer_provider(service, stack.endpoints["otlp_grpc"],
                                                     stack.key, batch=False)
            with provider.get_tracer("bench").start_as_current_span("chat m") as s:
                s.set_attribute("gen_ai.request.model", "m")
            t0 = time.monotonic()  # the span was acknowledged when the block ended
            assert counting.acknowledged == 1
            stored = seen = None
            while stored is None or seen is None:
                now = time.monotonic() - t0
                if now > 60:
                    raise RuntimeError(f"trace {i} not visible after 60s")
                if stored is None and stack.stored(service) == 1:
                    stored = now
                if seen is None:
                    r = client.get(f"{prom}/api/v1/query", headers={"X-API-Key": stack.key},
                                   params={"query": f'llm_calls_total{{service_name="{service}"}}'})
                    if r.json()["data"]["result"]:
                        seen = now
                time.sleep(0.05)
            to_store.append(stored)
            to_prom.append(seen)
            provider.shutdown()
        return {"traces": traces,
                "to_duckdb_s": {"p50": _pct(to_store, 0.5), "p95": _pct(to_store, 0.95),
                                "max": round(max(to_store), 3), "goal_p95": 3},
                "to_prometheus_s": {"p50": _pct(to_prom, 0.5), "p95": _pct(to_prom, 0.95),
                                    "max": round(max(to_prom), 3), "goal_p95": 10},
                "settings": {"spanmetrics_flush_interval":
                             stack.settings.spanmetrics_flush_interval,
                             "scrape_interval_s": stack.settings.scrape_interval_s}}

    _write("latency", with_stack(run))


def _load(stack: Stack, url: str, headers: dict[str, str], requests: list[bytes],
          spans_per_request: int, senders: int, rate: float | None = None) -> dict[str, Any]:
    """Send every pre-built request once from `senders` threads; then wait for the store.
    With ``rate``, requests are paced to offer that many spans a second (a sustained load)
    and the collector's queue is sampled every second: if the store keeps up, its size
    stays bounded while the load is offered.

    Stored means committed: the daemon answers the collector's store exporter only after
    its commit, so the exporter's sent-spans counter is what the clock waits for (a count
    over a store of millions is itself seconds long); the exact count by service, once
    all is delivered, checks that nothing was lost or doubled."""
    service = requests_service(requests)
    before = _count(stack, service)
    sent0, gave_up0 = _delivered(stack)
    readers = {**stack_readers(stack.data_dir),
               "load_generator": lambda: self_cpu(os.getpid())}
    cpu0 = sample(readers)
    acked, failed, lock, nxt = [0], [0], threading.Lock(), iter(range(len(requests)))

    def sender() -> None:
        with httpx.Client(timeout=60, trust_env=False) as c:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                if rate is not None and (wait := t0 + i * spans_per_request / rate
                                         - time.monotonic()) > 0:
                    time.sleep(wait)
                for _attempt in range(50):  # the SDK's behaviour: retry retryable answers
                    r = c.post(url, content=requests[i], headers=headers)
                    if r.status_code == 200:
                        with lock:
                            acked[0] += spans_per_request
                        break
                    if r.status_code not in (429, 502, 503, 504):
                        with lock:
                            failed[0] += spans_per_request
                        break
                    time.sleep(0.2)

    queue: list[tuple[float, float]] = []  # (s since start, the collector's queue size)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            queue.append((round(time.monotonic() - t0, 1),
                          stack.collector_counter("otelcol_exporter_queue_size",
                                                  exporter="otlp_http/store")))

    t0 = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent_s = time.monotonic() - t0
    stored_while_sent = _delivered(stack)[0] - sent0
    deadline, last, still_since = t0 + 1800, -1.0, time.monotonic()
    while time.monotonic() < deadline:
        sent, _ = _delivered(stack)
        if sent - sent0 >= acked[0]:
            break
        if sent != last:
            last, still_since = sent, time.monotonic()
        queued = stack.collector_counter("otelcol_exporter_queue_size",
                                         exporter="otlp_http/store")
        if queued == 0 and time.monotonic() - still_since > 15:
            break  # nothing left to send: what is missing was dropped (counted below)
        time.sleep(0.25)
    drained_s = time.monotonic() - t0
    done.set()
    cpu1 = sample(readers)
    stored = _count(stack, service) - before
    sustained = {} if rate is None else {
        "offered_spans_per_s": rate,
        "stored_spans_per_s_while_offered": round(stored_while_sent / sent_s),
        "queue_peak_spans": max((q for _, q in queue), default=0),
        "queue_every_10_s": queue[9::10]}
    return {**sustained,
            "spans_acknowledged": acked[0], "spans_failed": failed[0], "spans_stored": stored,
            "spans_dropped_by_the_collector": int(_delivered(stack)[1] - gave_up0),
            "lost": acked[0] - stored, "accept_s": round(sent_s, 2),
            "accepted_spans_per_s": round(acked[0] / sent_s),
            "until_all_stored_s": round(drained_s, 2),
            "stored_spans_per_s": round(stored / drained_s),
            "cpu": _cpu_per_span(cpu0, cpu1, stored, drained_s)}


def _cpu_per_span(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]],
                  spans: int, wall_s: float) -> dict[str, Any]:
    """Where the CPU went while the spans went in: CPU microseconds per stored span of
    each component (and of this load generator), and the core-seconds the stack would
    need for the goal's rate at that cost. 2 cores give 200 us per span at 10k spans/s."""
    per = {name: used(before[name], after[name]) for name in before}
    stack_s = sum(v for k, v in per.items() if k != "load_generator")
    n = max(1, spans)
    return {"cpu_s": {k: round(v, 1) for k, v in per.items()},
            "us_per_span": {k: round(1e6 * v / n, 1) for k, v in per.items()},
            "stack_us_per_span": round(1e6 * stack_s / n, 1),
            "stack_cores_busy": round(stack_s / wall_s, 2),
            "stack_cores_needed_at_10k_per_s": round(stack_s / n * 10_000, 2)}


def _delivered(stack: Stack) -> tuple[float, float]:
    """The collector's store exporter: spans sent (the daemon committed them) and spans
    it gave up on (dropped after a permanent error)."""
    return (stack.collector_counter("otelcol_exporter_sent_spans", exporter="otlp_http/store"),
            stack.collector_counter("otelcol_exporter_send_failed_spans",
                                    exporter="otlp_http/store"))


def _count(stack: Stack, service: str) -> int:
    """Spans of ``service`` in the store, exactly (slow on a store of millions)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.ports.daemon}",
                      timeout=600, trust_env=False) as c:
        r = c.get("/api/v1/count", params={"service": service})
        r.raise_for_status()
        spans: int = r.json()["spans"]
        return spans


def requests_service(requests: list[bytes]) -> str:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest.FromString(requests[0])
    return req.resource_spans[0].resource.attributes[0].value.string_value


def bench_ingest(total_spans: int = 120_000, per_request: int = 500, senders: int = 4,
                 store: Path | None = None, out: str = "ingest", rate: float | None = None,
                 repeat: int = 1) -> None:
    """Sustained ingest of ~3 KB GenAI spans, through Envoy and straight to the collector
    (into a copy of ``store`` when given). With ``repeat``, that many runs, each on a fresh
    stack and store copy, and their medians: on this shared machine one run of the same
    code can differ from the next by a quarter."""

    def build(service: str) -> list[bytes]:
        return [export_request(service, per_request, big=True).SerializeToString()
                for _ in range(total_spans // per_request)]

    def run(stack: Stack) -> dict[str, Any]:
        proto = {"Content-Type": "application/x-protobuf"}
        envoy_reqs = build(f"ingest-envoy-{uuid.uuid4().hex[:6]}")
        span_bytes = len(envoy_reqs[0]) / per_request
        envoy = _load(stack, stack.endpoints["otlp_http"] + "/v1/traces",
                      {**proto, "X-API-Key": stack.key}, envoy_reqs, per_request, senders,
                      rate)
        del envoy_reqs
        direct: dict[str, Any] = {}
        if rate is None:  # a paced run measures the sustained rate through Envoy only
            direct_reqs = build(f"ingest-direct-{uuid.uuid4().hex[:6]}")
            direct = _load(
                stack, f"http://127.0.0.1:{stack.settings.ports.collector_http}/v1/traces",
                proto, direct_reqs, per_request, senders)
        with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.ports.daemon}",
                          timeout=600, trust_env=False) as c:
            already = c.get("/api/v1/count").json()["spans"]
            # What the daemon was sent, retries included: a batch the collector sent
            # again (its request timed out or failed) is written again, and costs again.
            counters = c.get("/api/v1/stats").json()["ingest"]
        return {"spans": total_spans, "spans_per_request": per_request, "senders": senders,
                "spans_already_stored_after": already, "daemon_ingest": counters,
                "load_avg_1m_after": round(os.getloadavg()[0], 2),
                "bytes_per_span": round(span_bytes), "through_envoy": envoy,
                **({"straight_to_collector": direct,
                    "envoy_over_direct_accept_ratio": round(
                        envoy["accepted_spans_per_s"] / direct["accepted_spans_per_s"], 3)}
                   if direct else {}),
                "goal_spans_per_s": 10_000,
                "note": "load generator runs on the same 2 cores as the stack"}

    if repeat <= 1:
        _write(out, with_stack(run, store))
        return
    runs = [with_stack(run, store) for _ in range(repeat)]
    envoy = [r["through_envoy"] for r in runs]
    series = {
        "stored_spans_per_s_while_offered": [e["stored_spans_per_s_while_offered"]
                                             for e in envoy],
        "stored_spans_per_s": [e["stored_spans_per_s"] for e in envoy],
        "queue_peak_spans": [e.get("queue_peak_spans") for e in envoy],
        "daemon_us_per_span": [e["cpu"]["us_per_span"]["daemon"] for e in envoy],
        "collector_us_per_span": [e["cpu"]["us_per_span"]["collector"] for e in envoy],
        "stack_us_per_span": [e["cpu"]["stack_us_per_span"] for e in envoy],
        "lost": [e["lost"] for e in envoy],
    }
    _write(out, {"repeat": repeat, "spans_per_run": total_spans, "rate": rate,
                 "median": {k: statistics.median(v) for k, v in series.items()
                            if None not in v},
                 "each_run": series, "runs": runs})


def bench_memory(idle_s: int = 30) -> None:
    """RSS of every component (with children) after start-up and an idle period."""

    def run(stack: Stack) -> dict[str, Any]:
        time.sleep(idle_s)
        per: dict[str, float] = {}
        for comp in stack.status()["components"]:
            proc = psutil.Process(comp["pid"])
            rss = proc.memory_info().rss + sum(
                c.memory_info().rss for c in proc.children(recursive=True))
            per[comp["name"]] = round(rss / 2**20, 1)
        return {"idle_s": idle_s, "rss_mib": per, "total_mib": round(sum(per.values()), 1),
                "goal_mib": 1024}

    _write("memory", with_stack(run))


BENCHES = {"startup": bench_startup, "latency": bench_latency, "ingest": bench_ingest,
           "memory": bench_memory}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", metavar="|".join(BENCHES),
                        help="which to run (default: all)")
    parser.add_argument("--store", type=Path, help="ingest: start from a copy of this filled "
                                                   "span store (e.g. bench/store_fill.py's)")
    parser.add_argument("--spans", type=int, default=120_000, help="ingest: spans per path")
    parser.add_argument("--out", default="ingest", help="ingest: result name")
    parser.add_argument("--rate", type=float, help="ingest: offer this many spans/s through "
                                                   "Envoy only (sustained), paced")
    parser.add_argument("--repeat", type=int, default=1,
                        help="ingest: this many runs, each on a fresh stack, and their medians")
    args = parser.parse_args()
    unknown = set(args.benches) - set(BENCHES)
    if unknown:
        parser.error(f"no bench named {', '.join(sorted(unknown))}")
    for name in args.benches or list(BENCHES):
        print(f"== {name}", file=sys.stderr)
        if name == "ingest":
            bench_ingest(args.spans, store=args.store, out=args.out, rate=args.rate,
                         repeat=args.repeat)
        else:
            BENCHES[name]()
