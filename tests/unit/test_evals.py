"""The built-in evaluators on the real embedder and a real DuckDB store: bad input is a
clear "not scored" with the reason, never a crash; the app's own score always wins, in
what gets scored and in what the detectors read; the detectors read the built-in
scores; the CLI scores a stored window."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from appliance.cli.main import build, main
from appliance.daemon import start_background
from appliance.demo.replay import replay
from appliance.detect import quality
from appliance.evals import text
from appliance.evals.content import call_of
from appliance.evals.evaluators import Call, Evaluators
from appliance.evals.metrics import EvalMetrics
from appliance.evals.runner import score_window
from appliance.evals.store import EvalStore, Evaluation
from appliance.evals.worker import EvalWorker
from appliance.rca.embed import Embedder
from appliance.settings import EVALUATORS, Settings
from appliance.store.spans import _NAMES, SpanStore
from tests.casework import app_for, open_records

QUESTION = "How many days of annual leave does a new hire get?"
CONTEXT = ("Every full-time employee earns 28 days of paid annual leave per year.",
           "During the first year the leave is reduced in proportion to the start date.")
ANSWER = "A new hire earns 28 days of annual leave, prorated in the first year."


@pytest.fixture(scope="module")
def evaluators() -> Evaluators:
    return Evaluators(Embedder())


def _by_name(scores: list) -> dict:  # type: ignore[type-arg]
    return {s.name: s for s in scores}


def test_the_evaluators_are_the_settings_list() -> None:
    assert set(Evaluators.VERSIONS) == set(EVALUATORS)
    assert Evaluators.version("groundedness") == "tracehold/groundedness-1"
    with pytest.raises(ValueError, match="unknown evaluators"):
        Settings(evals_evaluators=["groundedness", "vibes"])


def test_a_supported_answer_scores_high_and_a_changed_number_low(
        evaluators: Evaluators) -> None:
    good = _by_name(evaluators.evaluate(Call(QUESTION, ANSWER, CONTEXT)))
    bad = _by_name(evaluators.evaluate(Call(QUESTION, ANSWER.replace("28", "40"), CONTEXT)))
    assert good["groundedness"].score is not None and good["groundedness"].score > 0.7
    assert bad["groundedness"].score is not None and bad["groundedness"].score < 0.3
    assert good["relevance"].score > 0.5  # type: ignore[operator]
    mixed = evaluators.retrieval_relevance(Call(
        QUESTION, ANSWER, (*CONTEXT, "The guest Wi-Fi password changes every Monday.")))
    chunks = mixed.detail["chunks"]
    assert len(chunks) == 3 and min(chunks[:2]) > chunks[2]  # the off-topic chunk lowest
    assert good["repetition"].score == 0 and good["coherence"].score == 1
    assert good["refusal"].score == 0
    assert not good["format_validity"].scored  # no JSON was asked for


@pytest.mark.parametrize(("answer", "reason"), [
    ("", "empty output"),
    ("   \n", "empty output"),
    ("x" * (1024 * 1024), "output over 64 KiB"),
    (b"caf\xe9 au lait".decode("utf-8", "replace"), "output is not valid UTF-8 text"),
    ("\udce9t\udce9", "output is not valid UTF-8 text"),  # surrogateescape'd bytes
])
def test_bad_output_is_not_scored_with_the_reason(evaluators: Evaluators, answer: str,
                                                  reason: str) -> None:
    scores = evaluators.evaluate(Call(QUESTION, answer, CONTEXT, "reply as JSON"))
    assert [s.name for s in scores] == list(EVALUATORS)
    assert all(s.score is None and s.reason == reason for s in scores)


def test_no_context_and_another_language_are_not_scored(evaluators: Evaluators) -> None:
    none = _by_name(evaluators.evaluate(Call(QUESTION, ANSWER, ())))
    assert none["groundedness"].reason == "no retrieved context"
    assert none["retrieval_relevance"].reason == "no retrieved context"
    assert none["relevance"].scored and none["coherence"].scored
    german = _by_name(evaluators.evaluate(Call(
        "Wie viele Urlaubstage bekommt ein neuer Mitarbeiter?",
        "Ein neuer Mitarbeiter bekommt 28 Tage Urlaub, im ersten Jahr anteilig.", CONTEXT)))
    for name in ("groundedness", "relevance", "retrieval_relevance"):
        assert german[name].score is None and german[name].reason == "not English", name
    assert german["repetition"].scored  # text statistics need no language
    japanese = evaluators.evaluate(Call(QUESTION, "新入社員は年間28日の有給休暇を取得します。",
                                        CONTEXT), ["groundedness"])
    assert japanese[0].reason == "not English"


def test_refusals_repeats_and_json(evaluators: Evaluators) -> None:
    refusal = _by_name(evaluators.evaluate(Call(
        QUESTION, "I'm sorry, but I can't help with that request.", CONTEXT)))
    assert refusal["refusal"].score == 1 and refusal["relevance"].score == 0
    assert refusal["groundedness"].reason == "a refusal makes no claim"
    looped = _by_name(evaluators.evaluate(Call(
        QUESTION, ANSWER + " As said above, see above." * 4, CONTEXT)))
    assert looped["repetition"].score > 0.5 and looped["coherence"].score < 0.5  # type: ignore
    cut = _by_name(evaluators.evaluate(Call(QUESTION, ANSWER + " and then the the the the",
                                            CONTEXT)))
    assert cut["coherence"].detail["ending"] == 1.0
    asked = "Answer the question. Reply as JSON."
    ok = evaluators.evaluate(Call(QUESTION, '```json\n{"days": 28}\n```', CONTEXT, asked),
                             ["format_validity"])
    broken = evaluators.evaluate(Call(QUESTION, '{"days": 28', CONTEXT, asked),
                                 ["format_validity"])
    assert ok[0].score == 1 and broken[0].score == 0


def test_text_helpers() -> None:
    assert text.numbers("Pay is on the 25th, 1,500 EUR, up to two monitors, 0.30 EUR/km") == {
        "25", "1500", "two", "0.30"}
    assert text.names("Book it in Workday. Report it to the IT desk in Berlin.") == {
        "Workday", "IT", "Berlin"}
    assert text.english("The invoice is overdue and must be paid.") is True
    assert text.english("Die Rechnung ist überfällig und muss bezahlt werden.") is False
    assert text.english("ok") is None


def test_a_call_reads_the_trace_s_retrieved_chunks_and_the_last_user_message() -> None:
    span = {"input_messages": json.dumps([
        {"role": "system", "parts": [{"type": "text", "content": "Reply as JSON."}]},
        {"role": "user", "parts": [{"type": "text",
                                    "content": f"{QUESTION}\n\nContext:\nin the prompt"}]}]),
        "output_messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": ANSWER}]}]), "attributes": "{}", "events": "[]"}
    retrieval = {"attributes": json.dumps({"tracehold.retrieval.documents": json.dumps(
        [{"id": "a", "text": CONTEXT[0]}, {"id": "b", "text": CONTEXT[1]}])}), "events": "[]"}
    call = call_of(span, [retrieval])
    assert (call.question, call.answer, list(call.context)) == (QUESTION, ANSWER, list(CONTEXT))
    assert "JSON" in call.prompt
    assert list(call_of(span).context) == ["in the prompt"]  # no retrieval span: the prompt's


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory,
           evaluators: Evaluators) -> Iterator[tuple[SpanStore, SpanStore]]:
    """Two minutes of demo traffic with the apps' own scores, and without; both scored."""
    root = tmp_path_factory.mktemp("evals")
    stores = []
    for app_scores in (True, False):
        store = SpanStore(root / f"{app_scores}.duckdb")
        r = replay(store, root, 120, 1.5, seed=4, app_scores=app_scores)
        score_window(store, evaluators.encoder, EVALUATORS, r.start,
                     r.start + timedelta(seconds=300))
        stores.append(store)
    yield stores[0], stores[1]
    for s in stores:
        s.close()


def test_the_app_s_own_scores_are_not_recomputed(scored: tuple[SpanStore, SpanStore]) -> None:
    with_app, _ = scored
    overlap = with_app.read(
        "SELECT count(*) AS n FROM spans s JOIN evaluations e USING (trace_id, span_id) "
        "WHERE e.name IN ('groundedness', 'relevance', 'coherence', 'retrieval_relevance', "
        "'repetition') AND (map_contains(s.eval_scores, e.name) "
        "OR (e.name = 'groundedness' AND map_contains(s.eval_scores, 'faithfulness')))")
    assert overlap[0]["n"] == 0
    # what the app does not score, we do (rag-api sends no repetition score)
    ours = with_app.read("SELECT count(*) AS n FROM evaluations WHERE name = 'repetition' "
                         "AND service_name = 'rag-api' AND score IS NOT NULL")
    assert ours[0]["n"] > 20


def test_the_detectors_read_built_in_scores_and_the_app_s_win(
        scored: tuple[SpanStore, SpanStore]) -> None:
    with_app, without = scored
    # Without app scores, the detectors' groundedness is exactly ours.
    rows = without.read(
        f"SELECT {quality.GROUNDED} AS g, e.score FROM spans JOIN evaluations e "
        "USING (trace_id, span_id) WHERE e.name = 'groundedness' AND e.score IS NOT NULL")
    assert len(rows) > 20 and all(r["g"] == r["score"] for r in rows)
    assert without.read("SELECT count(*) AS n FROM spans WHERE cardinality(eval_scores) > 0 "
                        "OR retrieval_scores IS NOT NULL")[0]["n"] == 0
    # With them, a built-in groundedness (forced in here) never replaces the app's.
    span = with_app.read("SELECT trace_id, span_id, eval_scores['groundedness'] AS app "
                         "FROM spans WHERE eval_scores['groundedness'] IS NOT NULL LIMIT 1")[0]
    EvalStore(with_app.db).put([Evaluation(span["trace_id"], span["span_id"], "groundedness",
                                           0.0123, "tracehold/groundedness-1")])
    got = with_app.read(f"SELECT {quality.GROUNDED} AS g FROM spans WHERE trace_id = ? "
                        "AND span_id = ?", [span["trace_id"], span["span_id"]])
    assert got[0]["g"] == span["app"] != 0.0123


def test_a_re_run_scores_nothing_twice(scored: tuple[SpanStore, SpanStore],
                                       evaluators: Evaluators) -> None:
    _, without = scored
    before = EvalStore(without.db).count()
    start = without.read("SELECT min(start_time) AS t FROM spans")[0]["t"]
    again = score_window(without, evaluators.encoder, EVALUATORS, start,
                         start + timedelta(hours=1))
    assert again.calls == 0 and EvalStore(without.db).count() == before


def test_cli_scores_a_stored_window_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = SpanStore(tmp_path / "spans.duckdb")
    r = replay(store, tmp_path, 60, 1.5, seed=2, app_scores=False)
    store.close()
    start, end = r.start.isoformat(), (r.start + timedelta(minutes=5)).isoformat()
    result = CliRunner().invoke(build(), ["evals", "run", "--from", start, "--to", end,
                                          "--service", "rag-api", "--json",
                                          "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["evaluated"] == summary["calls"] > 0 and summary["scores"] > 0
    monkeypatch.setattr(sys, "argv", ["tracehold", "evals", "run", "--from", end, "--to",
                                      start, "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: --to (") and "must be after --from" in err


def test_the_worker_scores_new_calls_within_its_budget(tmp_path: Path,
                                                       evaluators: Evaluators) -> None:
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        r = replay(store, tmp_path, 60, 1.5, seed=9, app_scores=False)
        calls = store.read("SELECT count(*) AS n FROM spans WHERE operation = 'chat' "
                           "AND output_messages IS NOT NULL")[0]["n"]
        worker = EvalWorker(store, evaluators.encoder,
                            Settings(evals_sample_rate=1.0, evals_cpu_budget=0.5))
        worker.cursor = r.start - timedelta(seconds=1)
        worker.runner.cost_per_call = 2.5  # as if calls were dear: 5 s x 0.5 / 2.5 = 1 call
        first = worker.run_once(now=r.start + timedelta(seconds=120))
        assert (first.sampled, first.evaluated, first.over_budget) == (calls, 1, calls - 1)
        assert worker.run_once(now=r.start + timedelta(seconds=121)).calls == 0  # moved on
        worker.runner.cost_per_call = 0.001
        worker.cursor = r.start - timedelta(seconds=1)  # the skipped ones, cheap this time
        again = worker.run_once(now=r.start + timedelta(seconds=122))
        assert again.evaluated == calls - 1 and again.over_budget == 0
    finally:
        store.close()


def test_a_retried_span_is_scored_once_with_its_chunks_once(tmp_path: Path,
                                                            evaluators: Evaluators) -> None:
    """The runner reads stored copies, not the deduplicating view (bench/results/
    evals-ingest.json): a trace delivered three times (sealed, then twice hot) is one
    call, scored once, against its two chunks, not six."""
    from appliance.api.ingest import _ingest
    from appliance.evals.runner import EvalRunner
    from appliance.ingest.limits import IngestLimits
    from tests.genai_traces import AgentTrace, export

    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        body = export([AgentTrace(evaluations={})]).SerializeToString()
        t0 = datetime.now(UTC)
        for sealed_first in (True, False, False):
            _ingest(store, body, "application/x-protobuf", None, IngestLimits())
            if sealed_first:
                store.seal()
        assert store.read("SELECT count(*) AS n FROM spans_hot")[0]["n"] == 12
        runner = EvalRunner(store, EvalStore(store.db), evaluators)
        stats = runner.run("received_at >= ?", [t0 - timedelta(seconds=1)], max_calls=10)
        assert (stats.calls, stats.sampled, stats.evaluated, stats.over_budget) == (1, 1, 1, 0)
        chunks = store.read("SELECT detail FROM evaluations WHERE name = "
                            "'retrieval_relevance'")[0]["detail"]
        assert len(json.loads(chunks)["chunks"]) == 2, chunks
        assert runner.run("received_at >= ?", [t0 - timedelta(seconds=1)]).calls == 0
    finally:
        store.close()


def test_built_in_scores_are_exported_as_the_collector_s_histograms(
        scored: tuple[SpanStore, SpanStore]) -> None:
    _, without = scored
    names = Settings().evaluation_names
    metrics = EvalMetrics(without.db, names, since=datetime(2000, 1, 1, tzinfo=UTC))
    metrics.collect(datetime.now(UTC) + timedelta(seconds=5))
    text = metrics.exposition()
    rows = without.read(
        "SELECT count(*) AS n, sum(score) AS s FROM evaluations e JOIN spans USING "
        "(trace_id, span_id) WHERE e.name = 'groundedness' AND score IS NOT NULL "
        "AND e.service_name = 'rag-api'")[0]
    labels = ('service_name="rag-api",gen_ai_operation_name="chat",'
              'gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini",'
              'source="tracehold/groundedness-1"')
    assert f'llm_evaluation_groundedness_count{{{labels}}} {rows["n"]}' in text
    assert f'llm_evaluation_groundedness_bucket{{{labels},le="+Inf"}} {rows["n"]}' in text
    assert "# TYPE llm_evaluation_groundedness histogram" in text
    assert "llm_evaluation_refusal" not in text  # not one of the collector's names
    metrics.collect(datetime.now(UTC) + timedelta(seconds=10))
    assert metrics.exposition() == text  # nothing new: counts do not grow twice

    async def scrape() -> httpx.Response:
        app = app_for(without)
        app.state.evals_metrics = metrics
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.get("/metrics")

    served = asyncio.run(scrape())
    assert served.status_code == 200 and served.text == text
    assert served.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_the_histograms_count_every_score_of_sealed_and_hot_spans_once(
        tmp_path: Path, evaluators: Evaluators) -> None:
    """The labels come from the scored traces' spans read between their start-time bounds
    (not a join with every stored span): the counts per series equal that join's, with
    the scored spans split between a sealed partition and the hot table."""
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        start = datetime.now(UTC) - timedelta(seconds=120)
        replay(store, tmp_path, 60, 1.5, seed=5, start=start, app_scores=False)
        store.seal()
        replay(store, tmp_path, 60, 1.5, seed=6, start=start + timedelta(seconds=60),
               app_scores=False)
        score_window(store, evaluators.encoder, EVALUATORS, start - timedelta(seconds=5),
                     datetime.now(UTC) + timedelta(seconds=5))
        hot = store.read("SELECT count(*) AS n FROM evaluations e JOIN spans_hot h "
                         "USING (trace_id, span_id)")[0]["n"]
        assert hot > 0 and store.read("SELECT count(*) AS n FROM span_partitions")[0]["n"]
        # Retried copies of scored spans, sealed and hot, as the collector's retries store
        # them: each still counts once.
        scored = ("(trace_id, span_id) IN (SELECT (trace_id, span_id) FROM evaluations "
                  "WHERE score IS NOT NULL)")
        with store.db.transaction() as con:
            for source in ("spans_sealed", "spans_hot"):
                con.execute(f"INSERT INTO spans_hot ({_NAMES}) SELECT {_NAMES} FROM "
                            f"{source} WHERE {scored} LIMIT 15")
        assert store.read(f"SELECT count(*) - count(DISTINCT (trace_id, span_id)) AS n "
                          f"FROM spans_hot WHERE {scored}")[0]["n"] == 15
        assert store.read("SELECT count(*) AS n FROM spans_hot h SEMI JOIN spans_sealed s "
                          "USING (trace_id, span_id)")[0]["n"] == 15
        names = Settings().evaluation_names
        metrics = EvalMetrics(store.db, names, since=datetime(2000, 1, 1, tzinfo=UTC))
        metrics.collect(datetime.now(UTC) + timedelta(seconds=5))
        joined = store.read(
            "SELECT e.name, s.service_name, s.request_model, count(*) AS n FROM evaluations e "
            "JOIN spans s USING (trace_id, span_id) WHERE e.score IS NOT NULL AND "
            "list_contains(?, e.name) GROUP BY ALL", [names])
        assert joined
        got: dict[tuple[str, str, str], float] = {}
        for (name, labels), series in metrics._series.items():
            named = dict(labels)
            key = (name, named["service_name"], named.get("gen_ai_request_model", "None"))
            got[key] = got.get(key, 0) + series[-2]  # the +Inf count
        assert got == {(r["name"], r["service_name"], str(r["request_model"])): r["n"]
                       for r in joined}
    finally:
        store.close()


def test_an_open_case_s_window_is_scored_whole(tmp_path: Path, evaluators: Evaluators) -> None:
    """Beside a tiny sample of new calls, every call of the focus window (an open case's)
    is scored; what one round's budget leaves, the next round takes."""
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        r = replay(store, tmp_path, 60, 1.5, seed=9, app_scores=False)
        in_window = store.read(
            "SELECT count(*) AS n FROM spans WHERE operation = 'chat' AND service_name = "
            "'rag-api' AND output_messages IS NOT NULL")[0]["n"]
        window = [("rag-api", r.start, r.start + timedelta(seconds=120))]
        worker = EvalWorker(store, evaluators.encoder,
                            Settings(evals_sample_rate=0.01, evals_cpu_budget=1.0),
                            focus=lambda: window)
        worker.cursor = r.start - timedelta(seconds=1)
        worker.runner.cost_per_call = 5.0 / (in_window - 3)  # the budget: all but 3 calls
        first = worker.run_once(now=r.start + timedelta(seconds=120))
        assert first.evaluated <= 3  # the sample of new calls gets what the focus left
        assert worker.totals.evaluated == in_window - 3 + first.evaluated
        worker.runner.cost_per_call = 0.001
        worker.run_once(now=r.start + timedelta(seconds=121))
        scored = store.read("SELECT count(DISTINCT span_id) AS n FROM evaluations "
                            "WHERE service_name = 'rag-api'")[0]["n"]
        assert scored == in_window
    finally:
        store.close()


def test_the_daemon_s_background_work_scores_arriving_calls(tmp_path: Path) -> None:
    """start_background (the composition root's) loads the embedder on the evaluators'
    thread and scores calls as they arrive, while the detectors and RCA are off."""
    records = open_records(tmp_path, evals_interval_s=1, evals_sample_rate=1.0,
                           evals_cpu_budget=1.0, rca_enabled=False,
                           detect={"enabled": False})
    stop = threading.Event()
    try:
        start_background(records, stop)
        # Traffic that arrives over the next seconds (simulated arrival times from now on).
        replay(records.store, tmp_path, 8, 2.0, seed=5, app_scores=False,
               start=datetime.now(UTC))
        deadline = time.monotonic() + 90
        while EvalStore(records.store.db).count() == 0:
            assert time.monotonic() < deadline, "the worker scored nothing"
            time.sleep(0.2)
    finally:
        stop.set()
        records.store.close()


def test_scores_are_kept_as_long_as_spans(store: SpanStore) -> None:
    evals = EvalStore(store.db)
    old, new = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    evals.put([Evaluation("a" * 32, "b" * 16, "groundedness", 0.5, "v")], at=old)
    evals.put([Evaluation("a" * 32, "c" * 16, "groundedness", 0.5, "v")], at=new)
    assert evals.apply_retention(30, now=new + timedelta(days=1)) == 1
    assert [r["span_id"] for r in evals.for_trace("a" * 32)] == ["c" * 16]


def test_the_daemon_scores_a_window_on_request(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        r = replay(store, tmp_path, 30, 1.5, seed=3, app_scores=False)
        window = {"from": r.start.isoformat(),
                  "to": (r.start + timedelta(minutes=2)).isoformat(), "service": "chat-svc"}

        async def post(body: dict[str, str]) -> httpx.Response:
            transport = httpx.ASGITransport(app=app_for(store))
            async with httpx.AsyncClient(transport=transport, base_url="http://daemon",
                                         timeout=120) as c:
                return await c.post("/api/v1/evals/run", json=body)

        ok = asyncio.run(post(window))
        assert ok.status_code == 200 and ok.json()["evaluated"] == ok.json()["calls"] > 0
        backwards = asyncio.run(post({**window, "from": window["to"], "to": window["from"]}))
        assert backwards.status_code == 400 and backwards.json()["type"] == "invalid_request"
    finally:
        store.close()
