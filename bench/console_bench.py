"""Benchmark the console's data calls on a realistic volume.

1. Span store: 1,000,000 demo-like spans (agent RAG traces of 7 spans over the last
   7 days: root, agent, tool, embeddings, retrieval with documents, two model calls with
   prompt and output text and evaluation scores) inserted with ``SpanStore.insert`` into
   a temporary DuckDB file. Then the daemon API is called in-process (httpx ASGI
   transport, the real FastAPI app): trace search with each kind of filter, the trace
   view of random traces, and the other routes the pages use. Goal: p95 < 500 ms for
   search and view.
2. Metrics: a real VictoriaMetrics (the stack's binary, on a free loopback port, temp
   folder) gets 7 days of the derived series imported (services x models x agents, every
   histogram bucket, at a 15 s resolution), then the Overview page's own calls for a
   7-day range (app/overview_queries.py through app/promql.py, plus its facets call to
   the daemon) are timed end to end, first (cold) and again (warm). Goal: < 2 s.

    PYTHONPATH=. .venv/bin/python bench/console_bench.py [--spans 1000000]

Writes bench/results/console.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.api.app import create_app  # noqa: E402
from appliance.console import promql  # noqa: E402
from appliance.console.overview_queries import (  # noqa: E402
    Chart,
    Filters,
    evaluation,
    evaluation_names,
    overview,
)
from appliance.console.timerange import Window  # noqa: E402
from appliance.ingest import conventions  # noqa: E402
from appliance.ingest.rows import SpanRow  # noqa: E402
from appliance.records import Records  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SERVICES = ["support-bot", "rag-api", "billing-assistant", "search-gateway", "hr-helper"]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-haiku", "llama-3.1-8b",
          "mistral-7b-local"]
AGENTS = ["planner", "researcher", "writer", "reviewer"]
TOOLS = ["search_docs", "lookup_order", "create_ticket", "calculator", "web_fetch"]
TOPICS = ["leave policy", "expense claims", "refund status", "password reset", "shipping delay",
          "invoice copy", "travel booking", "parental leave", "overtime pay", "laptop order"]
SPANS_PER_TRACE = 7
DAY = 86400


# --------------------------------------------------------------------------- span data

def _genai(**kw: Any) -> dict[str, Any]:
    row = {f.column: None for f in conventions.FIELDS}
    row.update(kw)
    return row


def trace_rows(i: int, start: datetime, rng: random.Random) -> list[SpanRow]:
    """One agent RAG trace (7 spans) starting at ``start``."""
    tid = f"{i:08x}{rng.getrandbits(96):024x}"
    sid = [f"{i % 256:02x}{k:02x}{rng.getrandbits(48):012x}" for k in range(SPANS_PER_TRACE)]
    service, model = rng.choice(SERVICES), rng.choice(MODELS)
    agent, tool, topic = rng.choice(AGENTS), rng.choice(TOOLS), rng.choice(TOPICS)
    failed = rng.random() < 0.03
    ticket = rng.randrange(10**6)
    prompt = json.dumps([
        {"role": "system", "parts": [{"type": "text", "content":
                                      "You answer staff questions from the handbook. " * 6}]},
        {"role": "user", "parts": [{"type": "text", "content":
                                    f"Ticket {ticket}: what is our {topic}? " * 4}]}])
    output = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content":
                         f"About {topic}: see section {ticket % 40}. " * 6}]}])
    docs = json.dumps([{"id": f"doc-{rng.randrange(5000)}", "score": round(rng.random(), 3),
                        "content": f"Handbook on {topic}, paragraph {k}. " * 5} for k in range(3)])
    in_tok, out_tok = rng.randint(200, 4000), rng.randint(20, 600)
    chat_ms = rng.uniform(300, 4000)
    total_ms = 150 + chat_ms * 1.6
    resource = {"service.name": service, "service.version": "1.4.2"}

    def row(k: int, parent: int | None, name: str, kind: str, offset_ms: float, dur_ms: float,
            genai: dict[str, Any], attrs: dict[str, Any], error: bool = False,
            events: list[dict[str, Any]] | None = None,
            scores: dict[str, float] | None = None) -> SpanRow:
        t0 = start + timedelta(milliseconds=offset_ms)
        return SpanRow(tid, sid[k], sid[parent] if parent is not None else None, name, kind,
                       service, "bench", t0, t0 + timedelta(milliseconds=dur_ms), dur_ms,
                       "error" if error else "unset", "provider timeout" if error else "",
                       genai, scores or {}, attrs, resource, events or [], [], 0, 0,
                       t0 + timedelta(seconds=2))

    chat = _genai(operation="chat", provider="openai", request_model=model,
                  response_model=model, agent_name=agent, input_tokens=in_tok,
                  output_tokens=out_tok, ttft_s=round(chat_ms / 5000, 3),
                  finish_reasons=["stop"], input_messages=prompt, output_messages=output,
                  error_type="timeout" if failed else None)
    evals = {"groundedness": round(rng.uniform(0.5, 1), 3),
             "relevance": round(rng.uniform(0.5, 1), 3)}
    events = [{"name": "gen_ai.evaluation.result", "time": start.isoformat(),
               "attributes": {"gen_ai.evaluation.name": n, "gen_ai.evaluation.score.value": v}}
              for n, v in evals.items()]
    return [
        row(0, None, "POST /ask", "server", 0, total_ms, _genai(), {"http.route": "/ask"},
            error=failed),
        row(1, 0, f"invoke_agent {agent}", "internal", 5, total_ms - 10,
            _genai(operation="invoke_agent", agent_name=agent),
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent}),
        row(2, 1, f"execute_tool {tool}", "internal", 10, 40,
            _genai(operation="execute_tool", tool_name=tool),
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}),
        row(3, 1, "embeddings text-embedding-3-small", "client", 55, 30,
            _genai(operation="embeddings", request_model="text-embedding-3-small",
                   input_tokens=rng.randint(10, 60)), {"gen_ai.operation.name": "embeddings"}),
        row(4, 1, "retrieve docs", "internal", 90, 50,
            _genai(operation="retrieval", data_source_id="handbook", index_version="idx-7",
                   retrieval_scores=[0.9, 0.8, 0.7]),
            {"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": docs}),
        row(5, 1, f"chat {model}", "client", 145, chat_ms, chat,
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
             "gen_ai.input.messages": prompt, "gen_ai.output.messages": output},
            error=failed, events=events, scores=evals),
        row(6, 1, f"chat {model}", "client", 150 + chat_ms, chat_ms * 0.5,
            _genai(operation="chat", provider="openai", request_model=model,
                   response_model=model, agent_name="reviewer", input_tokens=in_tok // 3,
                   output_tokens=out_tok // 4), {"gen_ai.operation.name": "chat"}),
    ]


def fill(store: SpanStore, spans: int, now: datetime, batch: int = 20_000) -> dict[str, Any]:
    traces = spans // SPANS_PER_TRACE
    first = now - timedelta(days=7)
    gap = timedelta(days=7) / traces
    rng = random.Random(7)
    t0, rows, inserted = time.perf_counter(), [], 0
    for i in range(traces):  # in time order, as ingest would
        rows += trace_rows(i, first + gap * i, rng)
        if len(rows) >= batch or i == traces - 1:
            inserted += store.insert(rows)
            rows = []
    return {"spans": inserted, "traces": traces, "seconds": round(time.perf_counter() - t0, 1),
            "db_mib": round(store.path.stat().st_size / 2**20, 1)}


# --------------------------------------------------------------------------- API timings

def stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"n": len(s), "p50_ms": round(statistics.median(s), 1),
            "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 1),
            "max_ms": round(s[-1], 1)}


async def api_timings(records: Records, now: datetime, reps: int) -> dict[str, Any]:
    app = create_app(records)
    rng = random.Random(11)
    iso = lambda d: (now - d).isoformat()  # noqa: E731
    week, day, hour = timedelta(days=7), timedelta(days=1), timedelta(hours=1)
    searches: dict[str, Callable[[], dict[str, Any]]] = {
        "1h, no filter": lambda: {"start": iso(hour), "end": now.isoformat()},
        "24h, service": lambda: {"start": iso(day), "end": now.isoformat(),
                                 "service": rng.choice(SERVICES)},
        "7d, model + status=error": lambda: {"start": iso(week), "end": now.isoformat(),
                                             "model": rng.choice(MODELS), "status": "error"},
        "7d, text, many hits": lambda: {"start": iso(week), "end": now.isoformat(),
                                        "text": rng.choice(TOPICS).upper()},
        "7d, text, rare (scans all)": lambda: {"start": iso(week), "end": now.isoformat(),
                                               "text": f"TICKET {rng.randrange(10**6)}:"},
        "7d, min duration 6 s": lambda: {"start": iso(week), "end": now.isoformat(),
                                         "min_duration_ms": 6000},
        "7d, no filter": lambda: {"start": iso(week), "end": now.isoformat()},
    }
    out: dict[str, Any] = {"search": {}, "other": {}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://daemon", timeout=60) as c:
        all_search: list[float] = []
        ids: list[str] = []
        for label, params in searches.items():
            ms = []
            for _ in range(reps):
                t0 = time.perf_counter()
                r = await c.get("/api/v1/traces", params=params())
                ms.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                ids += [t["trace_id"] for t in r.json()["traces"]]
            out["search"][label] = {**stats(ms), "rows_last": len(r.json()["traces"])}
            all_search += ms
        out["search_all"] = stats(all_search)
        view = []
        for trace_id in rng.sample(sorted(set(ids)), min(reps * 4, len(set(ids)))):
            t0 = time.perf_counter()
            r = await c.get(f"/api/v1/traces/{trace_id}")
            view.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and len(r.json()["spans"]) == SPANS_PER_TRACE
        out["trace_view"] = stats(view)
        for label, url, params in [
            ("facets 7d (Overview, Traces, Cost filters)", "/api/v1/facets",
             {"start": iso(week), "end": now.isoformat()}),
            ("graph 1h (Agents)", "/api/v1/graph", {"start": iso(hour), "end": now.isoformat()}),
            ("graph 24h (Agents)", "/api/v1/graph", {"start": iso(day), "end": now.isoformat()}),
            ("cost 7d (Cost)", "/api/v1/cost", {"start": iso(week), "end": now.isoformat()}),
            ("storage (Stack)", "/api/v1/storage", {}),
        ]:
            ms = []
            for _ in range(max(3, reps // 3)):
                t0 = time.perf_counter()
                (await c.get(url, params=params)).raise_for_status()
                ms.append((time.perf_counter() - t0) * 1000)
            out["other"][label] = stats(ms)
    return out


# --------------------------------------------------------------------------- metrics

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _series(now: datetime, step_s: int) -> list[dict[str, Any]]:
    """7 days of the derived series, cumulative counters at ``step_s``."""
    end = int(now.timestamp())
    ts = list(range(end - 7 * DAY, end, step_s))
    ms = [t * 1000 for t in ts]
    rng = random.Random(3)
    buckets = ["0.25", "0.5", "1", "2", "4", "8", "15", "+Inf"]
    out = []

    def counter(labels: dict[str, str], per_s: float) -> None:
        total, values = 0.0, []
        for _ in ts:
            total += per_s * step_s * rng.uniform(0.5, 1.5)
            values.append(round(total, 3))
        out.append({"metric": labels, "values": values, "timestamps": ms})

    for service in SERVICES[:3]:
        for model in MODELS[:4]:
            base = {"service_name": service, "gen_ai_request_model": model,
                    "gen_ai_provider_name": "openai"}
            for status, rate in (("STATUS_CODE_UNSET", 0.5), ("STATUS_CODE_ERROR", 0.02)):
                counter({"__name__": "llm_calls_total", **base, "gen_ai_operation_name": "chat",
                         "status_code": status}, rate)
            counter({"__name__": "llm_usage_input_tokens_total", **base}, 400)
            counter({"__name__": "llm_usage_output_tokens_total", **base}, 60)
            for hist, scale in (("llm_duration_seconds", 1.0),
                                ("llm_time_to_first_token_seconds", 0.2)):
                for i, le in enumerate(buckets):
                    share = min(1.0, (i + 1) / (len(buckets) - 1) * scale + 0.1)
                    counter({"__name__": f"{hist}_bucket", **base,
                             "gen_ai_operation_name": "chat", "le": le}, 0.5 * share)
        for agent in AGENTS:
            counter({"__name__": "llm_calls_total", "service_name": service,
                     "gen_ai_agent_name": agent, "gen_ai_operation_name": "invoke_agent",
                     "status_code": "STATUS_CODE_UNSET"}, 0.2)
        for name in ("groundedness", "relevance"):
            counter({"__name__": f"llm_evaluation_{name}_sum", "service_name": service}, 0.4)
            counter({"__name__": f"llm_evaluation_{name}_count", "service_name": service}, 0.5)
    return out


def metrics_timings(daemon_call: Callable[[], float], now: datetime,
                    step_s: int) -> dict[str, Any]:
    binary = Settings().bin_dir / "victoria-metrics"
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([str(binary), f"-httpListenAddr=127.0.0.1:{port}",
                                 f"-storageDataPath={data}", "-retentionPeriod=1",
                                 "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=120, trust_env=False) as c:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if c.get("/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, "VictoriaMetrics did not start"
                    time.sleep(0.2)
                series = _series(now, step_s)
                samples = sum(len(s["values"]) for s in series)
                t0 = time.perf_counter()
                for i in range(0, len(series), 20):
                    body = "\n".join(json.dumps(s) for s in series[i:i + 20])
                    c.post("/api/v1/import", content=body).raise_for_status()
                c.get("/internal/force_flush").raise_for_status()
                import_s = time.perf_counter() - t0
            source = promql.Source("VictoriaMetrics", url, "bench")
            window = Window("7 days", now - timedelta(days=7), now)
            runs = []
            for _ in range(3):  # first is cold; VictoriaMetrics caches results after
                runs.append(_overview_calls(source, window, daemon_call))
            return {"series": len(series), "samples": samples, "resolution_s": step_s,
                    "import_s": round(import_s, 1), "runs": runs}
        finally:
            proc.terminate()
            proc.wait(30)


def _overview_calls(source: promql.Source, window: Window,
                    daemon_call: Callable[[], float]) -> dict[str, Any]:
    """Exactly what the Overview page asks for a 7-day range, in its order."""
    t_all = time.perf_counter()
    facets_ms = daemon_call()
    metrics = promql.Metrics(source, timeout=30)
    f = Filters()
    charts: list[Chart] = list(overview(f, window.rate_window))
    per_chart, points = {}, 0
    for chart in charts:
        t0 = time.perf_counter()
        for s in chart.series:
            points += len(metrics.range(s.promql, window, s.legend))
        per_chart[chart.title] = round((time.perf_counter() - t0) * 1000, 1)
    t0 = time.perf_counter()
    names = evaluation_names(metrics.metric_names("llm_evaluation_", window))
    for n in names:
        points += len(metrics.range(evaluation(n, f, window.rate_window).promql, window))
    per_chart["Evaluation scores (+ metric names)"] = round((time.perf_counter() - t0) * 1000, 1)
    return {"total_ms": round((time.perf_counter() - t_all) * 1000, 1),
            "daemon_facets_ms": round(facets_ms, 1), "promql_ms": per_chart,
            "points": points, "evaluations": names}


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--metrics-step", type=int, default=15)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = SpanStore(Path(tmp) / "spans.duckdb")
        settings = Settings(data_dir=Path(tmp))
        loaded = fill(store, args.spans, now)
        print(f"inserted {loaded['spans']:,} spans in {loaded['seconds']} s", flush=True)
        records = Records.open(store, settings)
        api = asyncio.run(api_timings(records, now, args.reps))
        print(json.dumps(api, indent=1), flush=True)

        def facets_call() -> float:
            async def go() -> float:
                app = create_app(records)
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                             base_url="http://daemon") as c:
                    t0 = time.perf_counter()
                    (await c.get("/api/v1/facets", params={
                        "start": (now - timedelta(days=7)).isoformat(),
                        "end": now.isoformat()})).raise_for_status()
                    return (time.perf_counter() - t0) * 1000
            return asyncio.run(go())

        overview_data = metrics_timings(facets_call, now, args.metrics_step)
        print(json.dumps(overview_data, indent=1), flush=True)
        store.close()
    worst_overview = max(r["total_ms"] for r in overview_data["runs"])
    result = {
        "benchmark": "console data calls",
        "when": now.isoformat(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "span_store": loaded,
        "api": api,
        "overview_7d": overview_data,
        "goals": {
            "search_p95_ms": api["search_all"]["p95_ms"],
            "trace_view_p95_ms": api["trace_view"]["p95_ms"],
            "search_and_view_p95_under_500ms": api["search_all"]["p95_ms"] < 500
            and api["trace_view"]["p95_ms"] < 500,
            "overview_7d_worst_ms": worst_overview,
            "overview_7d_under_2s": worst_overview < 2000,
        },
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "console.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["goals"], indent=1))


if __name__ == "__main__":
    main()
