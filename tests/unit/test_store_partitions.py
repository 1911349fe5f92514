"""The partitioned span store (appliance.store.partitions behind SpanStore): queries give
the same answers from the hot table, from sealed partitions and from a mix; retention
drops whole partitions; a store written by the previous version is migrated; kill -9
inside a seal or a retention drop loses and duplicates nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import SpanRow, to_rows
from appliance.settings import Price, Settings
from appliance.store import queries
from appliance.store import spans as spans_module
from appliance.store.callgraph import call_graph
from appliance.store.costs import CostQuery
from appliance.store.queries import TimeRange, TraceFilter, facets, search_traces
from appliance.store.spans import SpanStore
from appliance.store.storage import storage_report
from tests.genai_traces import MS, AgentTrace, export

NOW_NS = time.time_ns()
HOUR_NS = 3600 * 10**9
END = datetime.now(UTC) + timedelta(minutes=5)


def _traces() -> list[AgentTrace]:
    """The console query tests' traces, spread over the last two days (two or three UTC
    days, so a seal makes several partitions)."""
    out = []
    for i in range(24):
        out.append(AgentTrace(
            service=("rag-api", "batch", "chat")[i % 3],
            model=("gpt-4o", "claude-3-haiku", "mystery-7b")[i % 3 if i % 5 else 0],
            tool_error=i % 4 == 1, chat_error=i % 7 == 3,
            input_tokens=500 + 37 * i, output_tokens=20 + 5 * i,
            prompt=f"question {i} about leave", start_ns=NOW_NS - (i * 2 + 1) * HOUR_NS
            - (i % 5) * 60_000 * MS))
    return out


TRACES = _traces()
ROWS = to_rows(export(TRACES), IngestLimits(), datetime.now(UTC)).rows


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Any]:
    opened: list[SpanStore] = []

    def make(name: str) -> SpanStore:
        s = SpanStore(tmp_path / f"{name}.duckdb")
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def answers(store: SpanStore) -> dict[str, Any]:
    """Everything the console and the API read, on the data above (floats rounded: a sum
    depends on the order the rows are scanned in, in its last bits)."""
    end = END
    day, week = TimeRange(end - timedelta(days=1), end), TimeRange(end - timedelta(days=7), end)
    searches = {
        "week": TraceFilter(week, limit=100), "day": TraceFilter(day, limit=100),
        "service": TraceFilter(week, service="batch", limit=100),
        "model": TraceFilter(week, model="claude-3-haiku", limit=100),
        "error": TraceFilter(week, status="error", limit=100),
        "unset": TraceFilter(week, status="unset", limit=100),
        "text": TraceFilter(week, text="question 7 ", limit=100),
        "duration": TraceFilter(week, min_duration_ms=1799, limit=100),
        "limit": TraceFilter(week, limit=5),
    }
    prices = {"gpt-4o": Price(input_per_million=2.5, output_per_million=10)}
    return _rounded({
        "search": {k: search_traces(store, f) for k, f in searches.items()},
        "traces": {t.trace_hex: store.trace(t.trace_hex) for t in TRACES},
        "facets": [facets(store, day), facets(store, week)],
        "graph": [call_graph(store, day), call_graph(store, week)],
        "cost": [CostQuery(store, prices, week).report(),
                 CostQuery(store, prices, day, service="rag-api").report()],
        "count": store.count(), "stats": {k: v for k, v in store.stats().items()
                                          if k in ("span_count", "trace_count",
                                                   "oldest_start", "newest_start")},
        "spans": store.spans(1000),
    })


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def test_message_text_is_stored_once_and_read_back(make_store: Any) -> None:
    store = make_store("slim")
    store.insert(ROWS)
    for sealed in (False, True):
        for t in TRACES:
            got = {s["span_id"]: s for s in store.trace(t.trace_hex)}
            for row in ROWS:
                if row.trace_id == t.trace_hex:
                    assert got[row.span_id]["attributes"] == row.attributes, sealed
                    assert "messages_moved" not in got[row.span_id]
        store.seal()
    stored = store.read("SELECT attributes, messages_moved, input_messages FROM spans "
                        "WHERE input_messages IS NOT NULL")
    assert stored and all(r["messages_moved"] for r in stored)
    assert not any("gen_ai.input.messages" in r["attributes"] for r in stored)


def test_an_alias_or_a_non_text_value_is_kept_as_sent(make_store: Any) -> None:
    store = make_store("alias")
    chat = next(r for r in ROWS if r.genai["input_messages"])
    alias = dataclasses.replace(chat, span_id="a" * 16, attributes={
        k: v for k, v in chat.attributes.items() if k != "gen_ai.input.messages"}
        | {"gen_ai.prompt": chat.genai["input_messages"]})
    other = dataclasses.replace(chat, span_id="b" * 16, attributes={
        **chat.attributes, "gen_ai.output.messages": ["not", "text"]})
    store.insert([alias, other])
    store.seal()
    got = {s["span_id"]: s["attributes"] for s in store.trace(chat.trace_id)}
    assert got["a" * 16] == alias.attributes and got["b" * 16] == other.attributes


def test_queries_answer_the_same_from_hot_sealed_and_mixed(make_store: Any) -> None:
    hot = make_store("hot")
    hot.insert(ROWS)
    expected = answers(hot)
    assert expected["count"] == len(ROWS) and expected["search"]["error"]
    assert expected["graph"][1]["edges"] and expected["cost"][0]["totals"]["cost"]

    sealed = make_store("sealed")
    sealed.insert(ROWS)
    assert sealed.seal().rows == len(ROWS)
    assert sealed.stats()["hot_rows"] == 0 and sealed.stats()["partitions"] >= 2
    assert answers(sealed) == expected

    # a mix: half sealed, the rest hot, and every span of the first half sent again
    mixed = make_store("mixed")
    half = len(ROWS) // 2
    mixed.insert(ROWS[:half])
    mixed.seal()
    mixed.insert([*ROWS[half:], *ROWS[:half]])
    assert answers(mixed) == expected
    done = mixed.seal()
    assert (done.rows, done.duplicates) == (len(ROWS) - half, half)
    assert answers(mixed) == expected


def _summaries_consistent(store: SpanStore) -> bool:
    """``span_traces`` holds, per trace, exactly the sealed spans (count, first start)."""
    summary = store.read("SELECT trace_id, sum(spans) AS n, min(first) AS first FROM "
                         "span_traces GROUP BY trace_id ORDER BY trace_id")
    sealed = store.read("SELECT trace_id, count(*) AS n, min(start_time) AS first FROM "
                        "spans_sealed GROUP BY trace_id ORDER BY trace_id")
    multi = store.read("SELECT trace_id FROM span_traces GROUP BY trace_id "
                       "HAVING count(*) > 1 AND NOT bool_and(multi)")
    return summary == sealed and not multi


def _search_by_definition(store: SpanStore, f: TraceFilter) -> list[str]:
    """Trace search as first written: every span in the range, grouped by trace."""
    having, params = [], []
    if f.service:
        having.append("bool_or(service_name = ?)")
        params.append(f.service)
    if f.model:
        having.append("bool_or(request_model = ? OR response_model = ?)")
        params += [f.model, f.model]
    if f.text:
        having.append("bool_or(input_messages ILIKE ? OR output_messages ILIKE ?)")
        params += [f"%{f.text}%"] * 2
    if f.status:
        having.append(queries._STATUS_SQL[f.status])
    if f.min_duration_ms is not None:
        having.append("date_diff('microsecond', min(start_time), max(end_time)) / 1000.0 >= ?")
        params.append(f.min_duration_ms)
    clause = f"HAVING {' AND '.join(having)}" if having else ""
    return [r["trace_id"] for r in store.read(
        "SELECT trace_id, min(start_time) AS first FROM spans WHERE start_time >= ? AND "
        f"start_time < ? GROUP BY trace_id {clause} ORDER BY first DESC, trace_id LIMIT ?",
        [*f.range.params, *params, f.limit])]


def test_search_matches_its_definition_at_range_edges_and_split_traces(make_store: Any
                                                                       ) -> None:
    """Ranges whose edges cut through traces, and traces whose spans are in two seals,
    or sealed and hot, or sent again: the summary-based search gives the answer of the
    span-level definition, for every filter kind and a short page."""
    store = make_store("split")
    by_trace: dict[str, list[SpanRow]] = {}
    for r in ROWS:
        by_trace.setdefault(r.trace_id, []).append(r)
    first, second, hot = [], [], []
    for k, spans in enumerate(by_trace.values()):
        half = len(spans) // 2
        first += spans if k % 3 == 0 else spans[:half]
        (second if k % 3 == 1 else hot).extend([] if k % 3 == 0 else spans[half:])
    store.insert(first)
    store.seal()
    store.insert(second)
    store.seal()
    store.insert([*hot, *first[:10]])  # hot spans, and retries of sealed ones
    assert _summaries_consistent(store)
    assert store.read("SELECT count(*) AS n FROM span_traces WHERE multi")[0]["n"] > 0
    starts = sorted(sorted(r.start_time for r in spans) for spans in by_trace.values())
    ranges = [TimeRange(END - timedelta(days=7), END)]
    for a, b in ((0, 5), (3, 11), (7, 20), (12, 23)):  # cut inside traces a and b
        ranges.append(TimeRange(starts[a][1], starts[b][-1]))
        ranges.append(TimeRange(starts[a][-1], starts[b][1] + timedelta(microseconds=1)))
    checked = 0
    for rng in ranges:
        for f in (TraceFilter(rng, limit=100), TraceFilter(rng, limit=3),
                  TraceFilter(rng, service="batch", limit=100),
                  TraceFilter(rng, model="claude-3-haiku", limit=100),
                  TraceFilter(rng, status="error", limit=100),
                  TraceFilter(rng, status="ok", limit=4),
                  TraceFilter(rng, status="unset", limit=100),
                  TraceFilter(rng, text="QUESTION 1", limit=2),
                  TraceFilter(rng, min_duration_ms=1799, limit=100)):
            expected = _search_by_definition(store, f)
            assert [r["trace_id"] for r in search_traces(store, f)] == expected, f
            checked += bool(expected)
    assert checked > 40


def test_retention_drops_whole_partitions(make_store: Any) -> None:
    store = make_store("retention")
    now = datetime.now(UTC)
    base = ROWS[0]

    def row(n: int, start: datetime) -> SpanRow:
        return dataclasses.replace(base, trace_id=f"{n:032x}", span_id=f"{n + 1:016x}",
                                   start_time=start, end_time=start + timedelta(seconds=1))

    old = [row(i, now - timedelta(days=40, minutes=i)) for i in range(3)]
    recent = [row(10 + i, now - timedelta(days=29)) for i in range(2)]
    store.insert(old + recent)
    store.seal()
    tables = {r["name"] for r in store.read("SELECT name FROM span_partitions")}
    assert store.apply_retention(30) == 3
    left = {r["name"] for r in store.read("SELECT name FROM span_partitions")}
    assert left < tables and store.count() == 2
    existing = {r["table_name"] for r in store.read(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'spans_p%'")}
    assert existing == left  # the tables themselves are gone, not emptied
    # a late retry of an expired span does not bring its partition back
    store.insert(old[:1])
    done = store.seal()
    assert (done.rows, done.expired) == (0, 1) and store.count() == 2
    assert {r["name"] for r in store.read("SELECT name FROM span_partitions")} == left
    assert {r["part"] for r in store.read("SELECT DISTINCT part FROM span_traces")} == left
    assert store.apply_retention(0) == 2 and store.count() == 0
    assert store.read("SELECT count(*) AS n FROM span_traces") == [{"n": 0}]


def test_bytes_per_span_in_stats_and_the_storage_report(make_store: Any, tmp_path: Path
                                                        ) -> None:
    store = make_store("bytes")
    assert store.stats()["bytes_per_span"] is None  # empty: no ratio
    store.insert(ROWS)
    store.seal()
    stats = store.stats()
    assert stats["bytes_per_span"] == pytest.approx(stats["db_bytes"] / len(ROWS), abs=0.1)
    report = storage_report(store, Settings(data_dir=tmp_path))
    assert report["bytes_per_span"] == pytest.approx(stats["bytes_per_span"], rel=0.05)
    assert report["partitions"] == stats["partitions"] >= 1
    assert report["text_index_behind"] == stats["text_index_behind"] == len(ROWS)


def test_timer_seal_waits_for_its_interval(make_store: Any) -> None:
    store = make_store("timer")
    store.insert(ROWS[:10])
    assert store.seal_if_idle(3600) is None and store.stats()["hot_rows"] == 10
    sealed = store.seal_if_idle(0)
    assert sealed is not None and sealed.rows == 10 and store.count() == 10


def test_row_count_triggers_a_seal(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "s.duckdb", seal_rows=50)
    try:
        store.insert(ROWS[:40])
        assert store.stats()["hot_rows"] == 40
        store.insert(ROWS[40:60])
        assert store.stats()["hot_rows"] == 0 and store.count() == 60
    finally:
        store.close()


# --------------------------------------------------------------------------- migration

def _write_v1_store(path: Path, rows: list[SpanRow]) -> None:
    """A file as the previous Tracehold wrote it: schema version 1, one ``spans`` table
    keyed on (trace_id, span_id), the message text inside the attributes JSON."""
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, "
                    "applied_at TIMESTAMPTZ NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (1, now())")
        con.execute("CREATE TABLE component_schema (component VARCHAR PRIMARY KEY, "
                    "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
        con.execute("INSERT INTO component_schema VALUES ('spans', 1, now())")
        for sql in spans_module.MIGRATIONS[0]:
            assert isinstance(sql, str)
            con.execute(sql)
        table = spans_module._table(rows).drop_columns(["messages_moved"])
        full = [json.dumps(r.attributes) for r in rows]
        table = table.set_column(table.schema.get_field_index("attributes"), "attributes",
                                 pa.array(full, type=pa.string()))
        con.register("_old", table)
        con.execute("INSERT INTO spans SELECT * FROM _old")
    finally:
        con.close()


def test_a_store_written_by_the_previous_version_is_migrated(tmp_path: Path,
                                                             make_store: Any) -> None:
    path = tmp_path / "old.duckdb"
    _write_v1_store(path, ROWS)
    reference = make_store("reference")
    reference.insert(ROWS)
    expected = answers(reference)

    store = SpanStore(path)
    try:
        assert store.count() == len(ROWS)
        assert answers(store) == expected
        for row in ROWS[:20]:
            (span,) = [s for s in store.trace(row.trace_id) if s["span_id"] == row.span_id]
            assert span["attributes"] == row.attributes
        names = [r["name"] for r in store.read("SELECT name FROM span_partitions")]
        assert names and all(n.startswith("spans_p") for n in names)
        assert store.read("SELECT version FROM component_schema WHERE component = 'spans'"
                          ) == [{"version": len(spans_module.MIGRATIONS)}]
        assert _summaries_consistent(store)
        store.insert(ROWS[:30])  # retries of migrated spans: still once
        store.seal()
        assert store.count() == len(ROWS)
    finally:
        store.close()
    store = SpanStore(path)  # and it opens again as version 3
    try:
        assert store.count() == len(ROWS)
    finally:
        store.close()


# --------------------------------------------------------------------------- kill -9

_CHILD = textwrap.dedent("""
    import dataclasses, json, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from appliance.store import partitions
    from appliance.store.spans import SpanStore
    from tests.unit.test_store_partitions import ROWS

    what = sys.argv[2]
    store = SpanStore(Path(sys.argv[1]), seal_rows=10**9)
    now = datetime.now(UTC)
    old = [dataclasses.replace(r, span_id=f"{i:016x}", start_time=now - timedelta(days=40),
                               end_time=now - timedelta(days=40)) for i, r in
           enumerate(ROWS[:20])]
    for batch in (ROWS[:60], old, ROWS[40:], ROWS[:60]):  # the last: a retried batch
        store.insert(batch)
        print("acked", json.dumps([[r.trace_id, r.span_id] for r in batch]), flush=True)
    if what == "retention":
        store.seal()

    def stop_here(name):
        if name == what:
            print("ready", name, flush=True)
            sys.stdin.readline()  # blocks until killed

    partitions.before_commit = stop_here
    store.seal() if what == "seal" else store.apply_retention(30)
    print("committed", flush=True)
""")


@pytest.mark.parametrize("what", ["seal", "retention"])
def test_kill_9_inside_a_seal_or_a_retention_drop(tmp_path: Path, what: str) -> None:
    path = tmp_path / "killed.duckdb"
    root = Path(__file__).resolve().parents[2]
    acked: list[tuple[str, str]] = []
    with subprocess.Popen([sys.executable, "-c", _CHILD, str(path), what], cwd=root,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("acked"):
                acked += [(t, s) for t, s in json.loads(line.split(" ", 1)[1])]
            if line.startswith("ready"):
                break
        else:
            pytest.fail(f"the child ended before its {what} reached the commit")
        child.send_signal(signal.SIGKILL)  # inside the transaction, before its commit
        assert child.wait(timeout=30) == -signal.SIGKILL
    assert len(acked) == 60 + 20 + len(ROWS) - 40 + 60
    store = SpanStore(path)
    try:
        unique = len(ROWS) + 20
        assert len(set(acked)) == unique
        stored = {(r["trace_id"], r["span_id"]): r["n"] for r in store.read(
            "SELECT trace_id, span_id, count(*) AS n FROM spans GROUP BY ALL")}
        assert stored == dict.fromkeys(acked, 1)  # every acknowledged span, each once
        assert _summaries_consistent(store)  # the trace summaries as the sealed spans
        # the interrupted work is done again, completely
        if what == "seal":
            assert store.seal().rows == unique
            assert store.count() == unique
        else:
            assert store.apply_retention(30) == 20
            assert store.count() == len(ROWS)
        assert _summaries_consistent(store)
    finally:
        store.close()
