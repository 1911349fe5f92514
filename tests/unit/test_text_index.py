"""The text index (appliance.store.textindex): a block's filter holds every sequence of
its text, the trace search gives the answers of its definition with the index built
(while the index lets a rare text skip most blocks), and the filters follow the
partitions: what seals add gets indexed, retention forgets dropped partitions, a build
that lost a race writes nothing, and a store of the previous version is migrated."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from appliance import daemon
from appliance.ingest.rows import SpanRow
from appliance.store import queries, textindex
from appliance.store.queries import TimeRange, TraceFilter, search_traces
from appliance.store.spans import SpanStore
from tests.supervising import wait_for
from tests.unit.test_store_partitions import ROWS, _search_by_definition

BLOCK = 64
WORDS = ["refund", "policy", "Größe", "naïve", "日本語", "ÉCOLE", "leave", "tool",
         "timeout", "answer", "the", "of", "Straße", "İstanbul"]
CHAT = next(r for r in ROWS if r.genai["input_messages"])
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textindex, "BLOCK_ROWS", BLOCK)


def _span(n: int, start: datetime, rng: random.Random) -> SpanRow:
    """A chat span of its own trace (every third shares its trace with the one before)
    whose input holds ``ticket <8 digits>:`` and whose output is words."""
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 12)))
    ticket = f"Ticket {n * 7919 % 10**8:08d}: {words}"
    output = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 8))) or None
    genai = {**CHAT.genai, "input_messages": ticket, "output_messages": output}
    return dataclasses.replace(CHAT, trace_id=f"{n - (n % 3 == 2):032x}",
                               span_id=f"{n + 1:016x}", start_time=start,
                               service_name=("rag-api", "batch", "chat")[n % 3],
                               end_time=start + timedelta(seconds=1), genai=genai)


def _spans(count: int, first: int = 0, seed: int = 1) -> list[SpanRow]:
    rng = random.Random(seed)
    # over the last ~40 hours: two or three UTC days, so several partitions
    return [_span(n, NOW - timedelta(minutes=(first + count - n) * 2400 / count), rng)
            for n in range(first, first + count)]


def _index_all(store: SpanStore) -> int:
    indexer, total = textindex.Indexer(store.db, cpu_share=1.0, chunk_blocks=3), 0
    while indexed := indexer.step()[0]:
        total += indexed
    return total


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    s = SpanStore(tmp_path / "spans.duckdb")
    yield s
    s.close()


def _holds(size: int, filt: bytes, grams: list[int]) -> bool:
    bits = np.unpackbits(np.frombuffer(filt, dtype=np.uint8), bitorder="big")
    return all(bits[g >> (64 - size)] for g in grams)


def test_a_block_filter_holds_every_sequence_of_its_text() -> None:
    rng = random.Random(7)
    for _ in range(30):
        values = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(0, 40)))
                  for _ in range(rng.randrange(1, 20))]
        size, filt = textindex.block_filter(np.frombuffer(v, dtype=np.uint8)
                                            for v in values)
        assert textindex.MIN_BITS <= size <= textindex.MAX_BITS
        assert len(filt) == (1 << size) // 8
        for v in values:
            for i in range(len(v)):
                for j in range(i + textindex.N, len(v) + 1):
                    assert _holds(size, filt, textindex.text_grams(v[i:j])), (v, i, j)
    # sparse text folds to a small filter that still tells texts apart
    size, filt = textindex.block_filter([np.frombuffer(b"ticket 12345678:", np.uint8)])
    assert size == textindex.MIN_BITS
    assert not _holds(size, filt, textindex.text_grams(b"ticket 87654321:"))


@pytest.mark.parametrize("slices", ["defaults", "narrowed", "one-wide"])
def test_search_with_the_index_answers_as_its_definition(
        store: SpanStore, slices: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if slices == "narrowed":  # the first slice cut to hold about 3 traces
        monkeypatch.setattr(queries, "_FIRST_SLICE_TRACES", 3)
    if slices == "one-wide":  # hundreds of traces in a slice: newest first, in chunks
        monkeypatch.setattr(queries, "_FIRST_SLICE", timedelta(days=30))
        monkeypatch.setattr(queries, "_FIRST_SLICE_TRACES", 10**6)
        monkeypatch.setattr(queries, "_EXACT_ALL", 4)
        monkeypatch.setattr(queries, "_EXACT_CHUNK", 3)
    rows = _spans(1500)
    # long traces: begun 30 hours ago, with a span a minute old (their first start in a
    # 20-hour range is among its newest)
    rng = random.Random(4)
    for k, age in enumerate((30 * 60, 1, 30 * 60 + 1, 2)):
        span = _span(9000 + k // 2 * 3 + 1 + k % 2, NOW - timedelta(minutes=age), rng)
        rows.insert(0, dataclasses.replace(span, genai={
            **span.genai, "input_messages": f"refund the long trace {k}"}))
    store.insert(rows[:1200])
    store.seal()
    store.insert([*rows[1200:], *rows[:40]])  # hot spans, and retries of sealed ones
    indexed = _index_all(store)
    sealed = store.read("SELECT sum(rows) AS n FROM span_partitions")[0]["n"]
    assert sealed - 4 * BLOCK < indexed <= sealed and indexed % BLOCK == 0

    week = TimeRange(NOW - timedelta(days=7), NOW + timedelta(minutes=5))
    day = TimeRange(NOW - timedelta(hours=20), NOW + timedelta(minutes=5))
    rng = random.Random(3)
    texts = ["ticket 99999999:", "TICKET 00000000:", "nothing like this", "ab", "Größe",
             "GRÖSSE", "größe naïve", "日本語", "İstanbul", "istanbul", "straße",
             "refund policy", "timeout timeout timeout", "e t", "ü"]
    texts += [rng.choice(rows[:1200]).genai["input_messages"][rng.randrange(0, 9):][:14]
              for _ in range(6)]  # texts stored in sealed, indexed spans
    texts += [r.genai["input_messages"][:16] for r in rows[1200:1203]]  # hot spans
    checked = 0
    for text in texts:
        for rng_ in (week, day):
            for f in (TraceFilter(rng_, text=text, limit=100),
                      TraceFilter(rng_, text=text, limit=2),
                      TraceFilter(rng_, text=text, service="batch", limit=3)):
                expected = _search_by_definition(store, f)
                assert queries._search_text(store, f) == expected, f
                # the page shows each trace's summary over all its spans, ordered by its
                # first start over all of them: a long trace begun before the range moves
                assert sorted(r["trace_id"] for r in search_traces(store, f)) == sorted(
                    expected), f
                checked += bool(expected)
    assert checked > 60

    # ... and a rare text reads only a few blocks of each indexed partition
    # (a partition with no full block yet, e.g. a day begun minutes ago, is read whole)
    parts = [r["name"] for r in store.read("SELECT name FROM span_partitions")]
    indexed_parts = {r["part"] for r in store.read(f"SELECT DISTINCT part FROM {textindex.TABLE}")}
    conds = textindex.candidate_rows(store.db, parts, b"ticket 99999999:")
    assert indexed_parts and set(conds) == indexed_parts
    part = max(conds, key=lambda p: store.read(f"SELECT count(*) AS n FROM {p}")[0]["n"])
    found = store.read(f"SELECT count(*) AS n FROM {part} WHERE {conds[part]}")
    assert found[0]["n"] < store.read(f"SELECT count(*) AS n FROM {part}")[0]["n"] / 4


def test_the_indexer_follows_seals_and_retention(store: SpanStore) -> None:
    old = [dataclasses.replace(s, start_time=s.start_time - timedelta(days=40),
                               end_time=s.end_time - timedelta(days=40))
           for s in _spans(300, first=5000, seed=5)]
    store.insert([*old, *_spans(400)])
    store.seal()
    behind = store.stats()["text_index_behind"]
    assert behind == 700
    _index_all(store)
    assert store.stats()["text_index_behind"] < 700 - 4 * BLOCK

    store.insert(_spans(300, first=400, seed=2))  # more rows for the same partitions
    store.seal()
    before = store.stats()["text_index_behind"]
    assert _index_all(store) > 0 and store.stats()["text_index_behind"] < before

    assert store.apply_retention(30) == 300
    kept = {r["part"] for r in store.read(f"SELECT DISTINCT part FROM {textindex.TABLE}")}
    assert kept and kept <= {r["name"] for r in store.read("SELECT name FROM span_partitions")}
    assert store.stats()["text_index_behind"] >= 0


def test_a_build_that_lost_its_race_writes_nothing(store: SpanStore) -> None:
    store.insert(_spans(400))
    store.seal()
    part = store.read("SELECT name FROM span_partitions ORDER BY rows DESC LIMIT 1"
                      )[0]["name"]
    assert textindex.build(store.db, part, 0, 1) == BLOCK
    assert textindex.build(store.db, part, 0, 1) == 0  # indexed meanwhile
    assert textindex.build(store.db, part, BLOCK, 10_000) == 0  # not that many rows
    assert textindex.build(store.db, "spans_p19700101", 0, 1) == 0  # dropped
    assert store.read(f"SELECT count(*) AS n FROM {textindex.TABLE}")[0]["n"] == 1


def test_the_indexer_yields_while_ingest_keeps_the_store_busy(store: SpanStore) -> None:
    store.insert(_spans(600))
    store.seal()
    assert store.busy_seconds > 0  # the insert and its seal counted
    busy = [store.busy_seconds]
    indexer = textindex.Indexer(store.db, cpu_share=1.0, busy=lambda: busy[0])
    busy[0] += 3600  # an hour of storing since: busy whatever the elapsed time
    assert indexer.step() == (0, 0.0)
    assert textindex.indexed_rows(store.db) == 0
    assert indexer.step()[0] > 0  # nothing stored since the last look


def test_the_daemon_builds_the_index_in_the_background(store: SpanStore) -> None:
    store.insert(_spans(600))
    store.seal()
    stop = threading.Event()
    worker = threading.Thread(target=daemon._text_index_loop, args=(store, 0.5, stop))
    worker.start()
    try:
        wait_for(lambda: store.stats()["text_index_behind"] < 3 * BLOCK, timeout=60)
    finally:
        stop.set()
        worker.join()


@pytest.mark.parametrize("version", [3, 4])
def test_a_store_of_a_previous_version_gets_the_index_table(tmp_path: Path,
                                                            version: int) -> None:
    """Version 3 had no index; version 4 kept each filter whole (``V4_TABLE``)."""
    path = tmp_path / "old.duckdb"
    s = SpanStore(path)
    s.insert(_spans(200))
    s.seal()
    with s.db.transaction() as con:  # as that version left it
        con.execute(f"DROP TABLE {textindex.TABLE}")
        if version == 4:
            con.execute(textindex.V4_DDL)
            con.execute(f"INSERT INTO {textindex.V4_TABLE} SELECT name, 0, {BLOCK}, 12, "
                        "repeat('0', 4096)::BIT FROM span_partitions")
        con.execute("UPDATE component_schema SET version = ? WHERE component = 'spans'",
                    [version])
    s.close()
    s = SpanStore(path)
    try:
        tables = {r["table_name"] for r in s.read("SELECT table_name FROM duckdb_tables()")}
        assert textindex.TABLE in tables and textindex.V4_TABLE not in tables
        assert s.count() == 200 and s.stats()["text_index_behind"] == 200
        assert _index_all(s) > 0
        f = TraceFilter(TimeRange(NOW - timedelta(days=3), NOW + timedelta(minutes=1)),
                        text="ticket 00007919:")
        assert [r["trace_id"] for r in search_traces(s, f)] == _search_by_definition(s, f)
    finally:
        s.close()
