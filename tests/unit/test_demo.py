"""Demo traffic through an in-memory exporter: every scenario's distinguishing
signals appear after its onset and not before, nothing else moves, a seed
reproduces the traffic, and the apps emit every GenAI attribute we read."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from appliance.demo import groundtruth, runner
from appliance.demo.names import ScenarioName
from appliance.demo.scenarios import SCENARIOS, SERVICES
from appliance.demo.sink import Sink
from appliance.demo.traffic import Traffic
from appliance.errors import InvalidRequest
from appliance.ingest import conventions

N, AT, STEP = 500, 125.0, 0.5  # 500 traces at 2/s; onset after 250 of them
BASE_NS = 1_700_000_000 * 10**9


@dataclass
class Trace:
    service: str
    after: bool  # sent after the scenario's onset
    spans: list[ReadableSpan]

    @property
    def root(self) -> ReadableSpan:
        return next(s for s in self.spans if s.parent is None)


@cache
def generate(scenario: ScenarioName | None, seed: int = 3,
             service: str | None = None) -> tuple[Trace, ...]:
    mem = InMemorySpanExporter()
    traffic = Traffic(Sink(lambda: mem, batch=False), seed,
                      SCENARIOS[scenario] if scenario else None, AT, service)
    out = []
    for i in range(N):
        sent = traffic.step(i * STEP, BASE_NS + int(i * STEP * 1e9))
        out.append(Trace(sent.service, i * STEP >= AT, list(mem.get_finished_spans())))
        mem.clear()
    return tuple(out)


def fingerprint(t: Trace, with_resource: bool = False) -> list[Any]:
    """Everything about a trace but its ids and wall-clock placement."""
    ids = {s.context.span_id: i for i, s in enumerate(t.spans)}
    t0 = t.root.start_time
    return [(s.name, s.kind, ids.get(s.parent.span_id) if s.parent else None,
             sorted(s.attributes.items()), s.status.status_code,
             round((s.start_time - t0) / 1e3), round((s.end_time - s.start_time) / 1e3),
             [(e.name, sorted(e.attributes.items())) for e in s.events],
             sorted(s.resource.attributes.items()) if with_resource else None)
            for s in t.spans]


def spans(traces: tuple[Trace, ...], service: str | None = None, after: bool | None = None,
          op: str | None = None) -> list[ReadableSpan]:
    return [s for t in traces if (service is None or t.service == service)
            and (after is None or t.after == after) for s in t.spans
            if op is None or s.attributes.get("gen_ai.operation.name") == op]


def evals(span: ReadableSpan) -> dict[str, float]:
    return {e.attributes["gen_ai.evaluation.name"]: e.attributes["gen_ai.evaluation.score.value"]
            for e in span.events if e.name == "gen_ai.evaluation.result"}


def mean_eval(traces: tuple[Trace, ...], service: str, after: bool, name: str) -> float:
    return mean(evals(s)[name] for s in spans(traces, service, after, "chat") if evals(s))


def error_rate(ss: list[ReadableSpan]) -> float:
    return sum(1 for s in ss if s.status.status_code is StatusCode.ERROR) / len(ss)


def attr(ss: list[ReadableSpan], key: str) -> list[Any]:
    return [s.attributes[key] for s in ss if key in s.attributes]


# -- each scenario: the signal appears after the onset and not before ----------------------

def test_hallucination() -> None:
    t = generate(ScenarioName.hallucination)
    for name in ("groundedness", "faithfulness"):
        before, after = mean_eval(t, "rag-api", False, name), mean_eval(t, "rag-api", True, name)
        assert before > 0.8 and after < 0.6, (name, before, after)
    # retrieval stays healthy: that is what tells it from retrieval drift
    before = mean_eval(t, "rag-api", False, "retrieval_relevance")
    after = mean_eval(t, "rag-api", True, "retrieval_relevance")
    assert before > 0.75 and abs(before - after) < 0.05
    tops = [[s.attributes["tracehold.retrieval.scores"][0]
             for s in spans(t, "rag-api", a, "retrieval")] for a in (False, True)]
    assert abs(mean(tops[0]) - mean(tops[1])) < 0.03
    models = [set(attr(spans(t, "rag-api", a, "chat"), "gen_ai.response.model"))
              for a in (False, True)]
    assert not any(m.endswith("-q4") for m in models[0])
    assert models[1] == {"gpt-4o-mini-q4"}
    temps = [set(attr(spans(t, "rag-api", a, "chat"), "gen_ai.request.temperature"))
             for a in (False, True)]
    assert temps == [{0.2}, {0.9}]


def test_retrieval_drift() -> None:
    t = generate(ScenarioName.retrieval_drift)
    ret = [spans(t, "rag-api", a, "retrieval") for a in (False, True)]
    tops = [mean(s.attributes["tracehold.retrieval.scores"][0] for s in r) for r in ret]
    assert tops[0] > 0.8 and tops[1] < 0.55, tops
    before = mean_eval(t, "rag-api", False, "retrieval_relevance")
    after = mean_eval(t, "rag-api", True, "retrieval_relevance")
    assert before > 0.75 and after < 0.5
    versions = [set(attr(r, "tracehold.index.version")) for r in ret]
    assert len(versions[0]) == len(versions[1]) == 1 and versions[0] != versions[1]
    for r, mismatched in zip(ret, (False, True), strict=True):
        for s in r:
            differs = s.attributes["tracehold.embedding.model"] != s.attributes[
                "tracehold.index.embedding_model"]
            assert differs is mismatched


def test_coherence_degradation() -> None:
    t = generate(ScenarioName.coherence_degradation)
    for name, direction in (("coherence", -1), ("relevance", -1), ("repetition", 1)):
        before = mean_eval(t, "chat-svc", False, name)
        after = mean_eval(t, "chat-svc", True, name)
        assert direction * (after - before) > 0.15, (name, before, after)

    def by_turn(after: bool, turns: range) -> float:
        return mean(evals(s)["coherence"] for s in spans(t, "chat-svc", after, "chat")
                    if evals(s) and s.attributes["tracehold.conversation.turn"] in turns)

    # quality falls with the turn index after the onset; flat before
    assert by_turn(True, range(1, 3)) - by_turn(True, range(6, 13)) > 0.2
    assert abs(by_turn(False, range(1, 3)) - by_turn(False, range(6, 13))) < 0.05


def _max_repeat(trace: Trace) -> int:
    calls = Counter((s.attributes["gen_ai.tool.name"], s.attributes["gen_ai.tool.call.arguments"])
                    for s in trace.spans
                    if s.attributes.get("gen_ai.operation.name") == "execute_tool")
    return max(calls.values(), default=0)


def test_agent_loop() -> None:
    t = generate(ScenarioName.agent_loop)
    agents = [[x for x in t if x.service == "agents-svc" and x.after == a] for a in (False, True)]
    assert max(_max_repeat(x) for x in agents[0]) <= 3
    loops = [x for x in agents[1] if _max_repeat(x) >= 40]
    assert len(loops) >= len(agents[1]) // 2
    assert {x.root.attributes.get("error.type") for x in loops} == {"max_iterations_exceeded"}
    assert max(len(x.spans) for x in loops) > 5 * max(len(x.spans) for x in agents[0])
    assert "max_iterations_exceeded" not in {x.root.attributes.get("error.type")
                                              for x in agents[0]}


@pytest.mark.parametrize("service", ["rag-api", "chat-svc"])
def test_prompt_regression(service: str) -> None:
    t = generate(ScenarioName.prompt_regression, service=service)
    chats = [spans(t, service, a, "chat") for a in (False, True)]
    assert [set(attr(c, "tracehold.prompt.template.version")) for c in chats] == [{"v6"}, {"v7"}]

    def refusals(c: list[ReadableSpan]) -> float:
        return sum(1 for s in c if s.attributes.get("gen_ai.response.finish_reasons")
                   == ("content_filter",)) / len(c)

    def format_errors(after: bool) -> float:
        roots = [x.root for x in t if x.service == service and x.after == after]
        return sum(1 for r in roots if r.attributes.get("error.type") == "format_error") / len(
            roots)

    assert refusals(chats[0]) < 0.03 and refusals(chats[1]) > 0.1
    assert format_errors(False) < 0.03 and format_errors(True) > 0.07
    other = "chat-svc" if service == "rag-api" else "rag-api"
    assert set(attr(spans(t, other, True, "chat"), "tracehold.prompt.template.version")) == {"v6"}


def test_context_overflow() -> None:
    t = generate(ScenarioName.context_overflow)
    chats = [spans(t, "rag-api", a, "chat") for a in (False, True)]
    ratios = [[s.attributes["gen_ai.usage.input_tokens"]
               / s.attributes["tracehold.model.context_window"]
               for s in c if "gen_ai.usage.input_tokens" in s.attributes] for c in chats]
    assert max(ratios[0]) < 0.1 and mean(ratios[1]) > 0.9
    finish = [Counter(r for s in c for r in s.attributes.get("gen_ai.response.finish_reasons", ()))
              for c in chats]
    assert finish[0]["length"] == 0 and finish[1]["length"] > 0.3 * len(chats[1])
    errors = [Counter(attr(c, "error.type"))["context_length_exceeded"] for c in chats]
    assert errors[0] == 0 and errors[1] > 0.1 * len(chats[1])
    top_k = [set(attr(spans(t, "rag-api", a, "retrieval"), "tracehold.retrieval.top_k"))
             for a in (False, True)]
    assert top_k == [{5}, {48}]


def test_provider_error() -> None:
    t = generate(ScenarioName.provider_error)
    for service in SERVICES:
        def model_calls(after: bool, provider: str, svc: str = service) -> list[ReadableSpan]:
            return [s for s in spans(t, svc, after)
                    if s.attributes.get("gen_ai.provider.name") == provider
                    and s.attributes.get("gen_ai.operation.name") in ("chat", "embeddings")]

        assert error_rate(model_calls(False, "openai")) < 0.06
        assert error_rate(model_calls(True, "openai")) > 0.25, service
        failed = [s for s in model_calls(True, "openai")
                  if s.status.status_code is StatusCode.ERROR]
        assert {s.attributes["error.type"] for s in failed} <= {"429", "503", "500", "timeout"}
        assert {s.attributes.get("http.response.status_code") for s in failed} >= {429, 503}
        if service != "rag-api":  # rag-api calls anthropic for nothing
            assert error_rate(model_calls(True, "anthropic")) < 0.08
    # retries are sibling spans of the failed attempt
    retries = [s for s in spans(t, after=True) if s.attributes.get("http.request.resend_count")]
    assert retries
    trace_of = {s.context.span_id: x for x in t for s in x.spans}
    for retry in retries[:20]:
        siblings = [s for s in trace_of[retry.context.span_id].spans
                    if s.parent == retry.parent and s.name == retry.name]
        assert any(s.status.status_code is StatusCode.ERROR for s in siblings)


def test_latency_cost_regression() -> None:
    t, base = generate(ScenarioName.latency_cost_regression), generate(None)
    after = [spans(x, "chat-svc", True, "chat") for x in (t, base)]

    def ratio(key: str) -> float:
        return mean(attr(after[0], key)) / mean(attr(after[1], key))

    assert 2.0 < ratio("gen_ai.response.time_to_first_chunk") < 3.0
    assert 2.0 < ratio("gen_ai.usage.output_tokens") < 3.0
    durations = [mean(s.end_time - s.start_time for s in a
                      if s.status.status_code is not StatusCode.ERROR) for a in after]
    assert 2.0 < durations[0] / durations[1] < 3.0
    # with no rise in errors: the very same calls fail as without the scenario
    assert [s.attributes.get("error.type") for s in after[0]] == [
        s.attributes.get("error.type") for s in after[1]]
    before = [mean(attr(spans(x, "chat-svc", False, "chat"), "gen_ai.usage.output_tokens"))
              for x in (t, base)]
    assert before[0] == before[1]


def test_normal_changes_only_the_service_version() -> None:
    t, base = generate(ScenarioName.normal), generate(None)
    assert [fingerprint(x) for x in t] == [fingerprint(x) for x in base]
    versions = {(x.service, x.after, s.resource.attributes["service.version"])
                for x in t for s in x.spans}
    assert ("chat-svc", True, "1.5.0") in versions
    assert {v for svc, after, v in versions if svc != "chat-svc" or not after} == {"1.4.2"}
    assert {v for svc, after, v in versions if svc == "chat-svc" and after} == {"1.5.0"}


@pytest.mark.parametrize("scenario", list(ScenarioName))
def test_nothing_moves_before_the_onset_or_in_other_services(scenario: ScenarioName) -> None:
    t, base = generate(scenario), generate(None)
    target = SCENARIOS[scenario].target(None)
    for x, b in zip(t, base, strict=True):
        assert x.service == b.service
        if not x.after or target not in ("*", x.service):
            assert fingerprint(x, with_resource=True) == fingerprint(b, with_resource=True)


# -- determinism, coverage of the conventions --------------------------------------------

def test_a_seed_reproduces_the_traffic() -> None:
    def run(seed: int) -> list[Any]:
        return [fingerprint(x, with_resource=True) for x in generate.__wrapped__(None, seed)]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_apps_emit_every_genai_attribute_we_read() -> None:
    t = generate(None)
    per_service = {svc: {k for s in spans(t, svc) for k in s.attributes} for svc in SERVICES}
    common = {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
              "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
              "gen_ai.response.time_to_first_chunk", "gen_ai.response.finish_reasons",
              "gen_ai.input.messages", "gen_ai.output.messages", "error.type"}
    for svc, keys in per_service.items():
        assert common <= keys, (svc, common - keys)
    assert {"gen_ai.agent.name", "gen_ai.tool.name", "gen_ai.tool.call.arguments"} <= per_service[
        "agents-svc"]
    assert {"gen_ai.conversation.id", "tracehold.conversation.turn"} <= per_service["chat-svc"]
    assert {"gen_ai.data_source.id", "tracehold.index.version", "tracehold.embedding.model",
            "tracehold.retrieval.scores", "tracehold.prompt.template.version",
            "tracehold.index.embedding_model", "tracehold.retrieval.top_k",
            "tracehold.model.context_window"} <= per_service["rag-api"]
    every = set().union(*per_service.values())
    assert {f.attribute for f in conventions.FIELDS} <= every
    names = {e.attributes[conventions.EVALUATION_NAME] for s in spans(t) for e in s.events
             if e.name == conventions.EVALUATION_EVENT}
    assert {"groundedness", "relevance", "faithfulness", "coherence",
            "retrieval_relevance"} <= names
    ops = {s.attributes.get("gen_ai.operation.name") for s in spans(t)}
    assert {"chat", "embeddings", "retrieval", "invoke_agent", "execute_tool"} <= ops
    for s in spans(t, op="chat"):
        assert s.kind.name == "CLIENT"
        json.loads(str(s.attributes.get("gen_ai.input.messages", "[]")))


# -- the run loop, ground truth, options --------------------------------------------------

class FakeClock:
    """Time that passes only when the loop waits, so a run takes no real time."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


def test_run_logs_the_onset_as_ground_truth(tmp_path: Path) -> None:
    mem, clock, lines = InMemorySpanExporter(), FakeClock(), []
    start = clock.now
    opts = runner.Options(rate=5, duration=30, seed=1, scenario=ScenarioName.hallucination,
                          at=10, progress_every=5)
    summary = runner.run(opts, Sink(lambda: mem, batch=False), tmp_path, lines.append,
                         threading.Event(), clock=clock, wait=clock.wait)
    truth = groundtruth.read(tmp_path)
    assert len(truth) == 1
    assert truth[0]["scenario"] == "hallucination" and truth[0]["service"] == "rag-api"
    assert truth[0]["seed"] == 1
    assert datetime.fromisoformat(truth[0]["onset"]) == datetime.fromtimestamp(start + 10, UTC)
    assert summary["ground_truth"] == truth[0]
    assert any("ground truth" in line for line in lines)
    assert summary["spans_sent"] == len(mem.get_finished_spans()) == summary["acknowledged"]
    assert summary["failed"] == summary["dropped"] == 0
    assert summary["traces"] == sum(v["traces"] for v in summary["services"].values())
    assert 100 < summary["traces"] < 200  # Poisson arrivals at 5/s for 30 s
    # the same seed, the same run
    again = runner.run(opts, Sink(lambda: InMemorySpanExporter(), batch=False), tmp_path,
                       lambda _: None, threading.Event(), clock=FakeClock(),
                       wait=FakeClock().wait)
    assert again["traces"] > 0 and len(groundtruth.read(tmp_path)) == 2


def test_provider_error_ground_truth_names_every_service(tmp_path: Path) -> None:
    clock = FakeClock()
    opts = runner.Options(rate=2, duration=5, seed=2, scenario=ScenarioName.provider_error, at=1)
    runner.run(opts, Sink(lambda: InMemorySpanExporter(), batch=False), tmp_path,
               lambda _: None, threading.Event(), clock=clock, wait=clock.wait)
    (truth,) = groundtruth.read(tmp_path)
    assert truth["service"] == "*" and truth["services"] == list(SERVICES)
    assert truth["provider"] == "openai"


@pytest.mark.parametrize(("opts", "message"), [
    (runner.Options(service="rag-api"), "give --scenario"),
    (runner.Options(scenario=ScenarioName.provider_error, service="rag-api"), "does not apply"),
    (runner.Options(scenario=ScenarioName.agent_loop, service="chat-svc"), "can target"),
    (runner.Options(scenario=ScenarioName.normal, service="nope"), "unknown service"),
    (runner.Options(scenario=ScenarioName.normal, duration=10, at=60), "after the run ends"),
    (runner.Options(rate=0), "--rate"),
])
def test_bad_options_are_refused_clearly(opts: runner.Options, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        opts.check()


def test_daily_shape_peaks_in_the_afternoon() -> None:
    def at(hour: int) -> float:
        return runner.daily_factor(datetime(2024, 6, 1, hour, tzinfo=UTC).timestamp())

    assert at(14) == pytest.approx(1.6) and at(2) == pytest.approx(0.4)
    assert mean(at(h) for h in range(24)) == pytest.approx(1.0)


def test_scenarios_are_the_taxonomy_and_normal() -> None:
    from appliance.domain.taxonomy import FailureType

    assert [s.value for s in ScenarioName] == [t.value for t in FailureType] + ["normal"]
