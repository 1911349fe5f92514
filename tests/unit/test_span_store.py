"""The DuckDB span store: appliance.store.spans."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from appliance.errors import StoreError, StoreUnavailable
from appliance.ingest import conventions as cv
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import SpanRow, to_rows
from appliance.store.database import SCHEMA_VERSION
from appliance.store.spans import SpanStore

NOW = datetime.now(UTC).replace(microsecond=0)


def _template() -> SpanRow:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name",
                                           value=AnyValue(string_value="checkout")))
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "chat"
    start = int((NOW - timedelta(minutes=5)).timestamp()) * 10**9
    span.start_time_unix_nano, span.end_time_unix_nano = start, start + 250_000_000
    for key, value in (("gen_ai.request.model", AnyValue(string_value="gpt-4o")),
                       ("gen_ai.usage.input_tokens", AnyValue(int_value=12)),
                       ("gen_ai.response.time_to_first_chunk", AnyValue(double_value=0.2)),
                       ("gen_ai.response.finish_reasons", AnyValue(string_value="stop")),
                       ("tracehold.retrieval.scores", AnyValue(string_value="[0.5, 0.25]")),
                       ("gen_ai.evaluation.relevance.score", AnyValue(double_value=0.9)),
                       ("quote", AnyValue(string_value="it's \"quoted\" ü"))):
        span.attributes.append(KeyValue(key=key, value=value))
    span.events.add(name="e", time_unix_nano=start + 1000)
    (row,) = to_rows(request, IngestLimits(), NOW).rows
    return row


TEMPLATE = _template()


def make_row(n: int, trace: int = 1, *, service: str = "checkout",
             start: datetime | None = None) -> SpanRow:
    start = start or TEMPLATE.start_time + timedelta(seconds=n)
    return dataclasses.replace(TEMPLATE, trace_id=f"{trace:032x}", span_id=f"{n + 1:016x}",
                               service_name=service, start_time=start,
                               end_time=start + timedelta(milliseconds=250), name=f"span-{n}")


@pytest.fixture
def store(tmp_path: Path) -> SpanStore:
    s = SpanStore(tmp_path / "data" / "spans.duckdb")
    yield s
    s.close()


def test_round_trip_keeps_every_column(store: SpanStore) -> None:
    assert store.insert([TEMPLATE]) == 1
    (span,) = store.trace(TEMPLATE.trace_id)
    assert span["trace_id"] == TEMPLATE.trace_id and span["span_id"] == TEMPLATE.span_id
    assert span["start_time"] == TEMPLATE.start_time and span["start_time"].tzinfo == UTC
    assert span["end_time"] == TEMPLATE.end_time and span["received_at"] == NOW
    assert span["duration_ms"] == 250.0
    assert (span["name"], span["kind"], span["status_code"]) == ("chat", "unspecified", "unset")
    for field in cv.FIELDS:
        assert span[field.column] == TEMPLATE.genai[field.column], field.column
    assert span["request_model"] == "gpt-4o" and span["input_tokens"] == 12
    assert span["finish_reasons"] == ["stop"] and span["retrieval_scores"] == [0.5, 0.25]
    assert span["eval_scores"] == {"relevance": 0.9}
    assert span["attributes"] == TEMPLATE.attributes
    assert span["attributes"]["quote"] == "it's \"quoted\" ü"
    assert span["resource_attributes"] == {"service.name": "checkout"}
    assert span["events"] == TEMPLATE.events and span["links"] == []
    assert (span["dropped_attributes_count"], span["dropped_events_count"]) == (0, 0)


def test_typed_columns_are_queryable(store: SpanStore, tmp_path: Path) -> None:
    store.insert([TEMPLATE])
    store.close()
    con = duckdb.connect(str(tmp_path / "data" / "spans.duckdb"))
    try:
        assert con.execute("SELECT eval_scores['relevance'], input_tokens + 1, "
                           "finish_reasons[1], attributes->>'$.quote' FROM spans").fetchone() \
            == (0.9, 13, "stop", "it's \"quoted\" ü")
        types = dict(con.execute("SELECT column_name, data_type FROM "
                                 "information_schema.columns WHERE table_name='spans'").fetchall())
    finally:
        con.close()
    assert types["eval_scores"] == "MAP(VARCHAR, DOUBLE)"
    assert types["retrieval_scores"] == "DOUBLE[]" and types["finish_reasons"] == "VARCHAR[]"
    assert types["attributes"] == "JSON" and types["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["input_tokens"] == "BIGINT"


@pytest.mark.parametrize("seal", ["never", "between", "after"])
def test_insert_is_idempotent(store: SpanStore, seal: str) -> None:
    """A batch delivered twice counts once: both copies hot, the first sealed, or both
    sealed (the seal drops the second)."""
    batch = [make_row(i) for i in range(50)]
    assert store.insert(batch) == 50
    if seal == "between":
        assert store.seal().rows == 50
    assert store.insert(batch) == 50  # written again, shown once
    assert store.count() == 50
    assert store.insert([*batch[:10], make_row(50)]) == 11
    if seal == "after":
        done = store.seal()
        assert (done.rows, done.duplicates) == (51, 60)
    assert store.count() == 51
    assert store.stats()["span_count"] == 51
    assert len(store.trace(batch[0].trace_id)) == 51
    store.seal()
    assert store.count() == 51 and store.stats()["hot_rows"] == 0
    assert store.seal().rows == 0


def test_duplicates_inside_one_batch(store: SpanStore) -> None:
    first = make_row(1)
    again = dataclasses.replace(first, name="later copy")
    assert store.insert([first, make_row(2), again, first]) == 4
    assert store.count() == 2
    assert [s["name"] for s in store.trace(first.trace_id)] == ["span-1", "span-2"]
    store.seal()  # the seal keeps the same copy the view showed: the first stored
    assert [s["name"] for s in store.trace(first.trace_id)] == ["span-1", "span-2"]


def test_empty_insert(store: SpanStore) -> None:
    assert store.insert([]) == 0
    assert store.count() == 0
    assert store.last_ingest() is None


def test_failed_batch_writes_nothing(store: SpanStore) -> None:
    broken = dataclasses.replace(make_row(3), span_id=None)  # violates NOT NULL
    with pytest.raises(StoreError) as info:
        store.insert([make_row(1), make_row(2), broken])
    assert not isinstance(info.value, StoreUnavailable)
    assert store.count() == 0
    assert store.insert([make_row(1)]) == 1  # the connection is still usable


class _DiskFull:
    """Stands in for the DuckDB connection; the INSERT fails like a full disk would."""

    error: type[duckdb.Error] = duckdb.IOException

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __getattr__(self, name: str) -> object:
        return getattr(self.con, name)

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        if sql.startswith("INSERT"):
            self.con.execute(sql, *args)  # really writes, inside the open transaction
            raise self.error("Could not write file: No space left on device")
        return self.con.execute(sql, *args)


def test_io_error_is_unavailable_and_rolled_back(store: SpanStore) -> None:
    store.insert([make_row(0)])
    real = store.db._con
    store.db._con = _DiskFull(real)  # type: ignore[assignment]
    with pytest.raises(StoreUnavailable, match="No space left"):
        store.insert([make_row(1), make_row(2)])
    store.db._con = real
    assert store.count() == 1
    assert store.insert([make_row(1), make_row(2)]) == 2
    assert store.count() == 3


def test_fatal_error_reopens_the_database(store: SpanStore) -> None:
    """A checkpoint that hits a full disk invalidates a DuckDB database until reopened."""
    store.insert([make_row(0)])
    assert len(store.spans(5)) == 1  # this thread now holds a read cursor
    store.db._con = _DiskFull(store.db._con)  # type: ignore[arg-type]
    store.db._con.error = duckdb.FatalException  # type: ignore[union-attr]
    with pytest.raises(StoreUnavailable):
        store.insert([make_row(1)])
    assert store.count() == 1  # reopened; the failed batch is not there
    assert store.insert([make_row(1)]) == 1
    assert [s["name"] for s in store.spans(5)] == ["span-1", "span-0"]


def test_trace_ordering_and_spans_filters(store: SpanStore) -> None:
    rows = [make_row(i, trace=1 + i % 2, service="a" if i < 4 else "b") for i in range(6)]
    store.insert(list(reversed(rows)))
    assert [s["name"] for s in store.trace(f"{1:032x}")] == ["span-0", "span-2", "span-4"]
    assert [s["name"] for s in store.trace(f"{2:032X}")] == ["span-1", "span-3", "span-5"]
    assert [s["name"] for s in store.spans(limit=10)] == [f"span-{i}" for i in range(5, -1, -1)]
    assert [s["name"] for s in store.spans(limit=2, offset=1)] == ["span-4", "span-3"]
    assert [s["name"] for s in store.spans(10, service="a")] == [
        "span-3", "span-2", "span-1", "span-0"]
    assert [s["name"] for s in store.spans(10, service="b", trace_id=f"{2:032x}")] == ["span-5"]
    assert store.spans(0) == []
    with pytest.raises(ValueError):
        store.spans(-1)


@pytest.mark.parametrize("hostile", [
    "x' OR '1'='1", "'; DROP TABLE spans; --", '" OR 1=1 --', "checkout' --", "%", "?"])
def test_filters_are_parameters(store: SpanStore, hostile: str) -> None:
    store.insert([make_row(i) for i in range(3)])
    assert store.spans(10, service=hostile) == []
    assert store.spans(10, trace_id=hostile) == []
    assert store.trace(hostile) == []
    assert store.count() == 3
    weird = make_row(9, service=hostile)
    assert store.insert([weird]) == 1
    assert [s["name"] for s in store.spans(10, service=hostile)] == ["span-9"]


def test_retention_deletes_only_old_spans(store: SpanStore) -> None:
    old = [make_row(i, start=NOW - timedelta(days=40, minutes=i)) for i in range(3)]
    recent = [make_row(10 + i, start=NOW - timedelta(days=29)) for i in range(2)]
    store.insert(old + recent)
    assert store.apply_retention(30) == 3
    assert sorted(s["name"] for s in store.spans(10)) == ["span-10", "span-11"]
    assert store.apply_retention(30) == 0
    assert store.apply_retention(0) == 2
    with pytest.raises(ValueError):
        store.apply_retention(-1)


def test_stats_count_and_last_ingest(store: SpanStore) -> None:
    empty = store.stats()
    assert (empty["span_count"], empty["trace_count"], empty["oldest_start"]) == (0, 0, None)
    rows = [make_row(i, trace=i % 3) for i in range(9)]
    store.insert(rows)
    stats = store.stats()
    assert (stats["span_count"], stats["trace_count"]) == (9, 3)
    assert stats["oldest_start"] == rows[0].start_time
    assert stats["newest_start"] == rows[-1].start_time
    assert stats["db_bytes"] > 0
    assert store.count() == 9
    assert store.last_ingest() == NOW
    later = dataclasses.replace(make_row(20), received_at=NOW + timedelta(seconds=3))
    store.insert([later])
    assert store.last_ingest() == NOW + timedelta(seconds=3)


def test_rows_that_do_not_fit_the_columns(store: SpanStore) -> None:
    bad = dataclasses.replace(make_row(1), genai={**TEMPLATE.genai, "input_tokens": "many"})
    with pytest.raises(StoreError, match="cannot store"):
        store.insert([make_row(2), bad])
    assert store.count() == 0


def test_json_the_fast_encoder_refuses_is_stored_too(store: SpanStore) -> None:
    """orjson encodes the JSON columns; what it refuses (an int beyond 64 bits) goes
    through the standard encoder instead of failing the batch."""
    big = dataclasses.replace(make_row(1), attributes={**TEMPLATE.attributes, "big": 2**70})
    assert store.insert([big, make_row(2)]) == 2
    (span,) = [s for s in store.trace(big.trace_id) if s["span_id"] == big.span_id]
    assert span["attributes"]["big"] == 2**70
    assert span["attributes"]["quote"] == "it's \"quoted\" ü"


def test_read_cursors_end_with_their_threads(store: SpanStore) -> None:
    thread = threading.Thread(target=store.count)
    thread.start()
    thread.join()
    del thread
    gc.collect()
    assert len(store.db._cursors) == 0


def test_concurrent_inserts_and_reads(store: SpanStore) -> None:
    batches = [[make_row(i, trace=t) for i in range(100)] for t in range(1, 9)]

    def work(batch: list[SpanRow]) -> tuple[int, int]:
        return store.insert(batch), len(store.spans(5))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, batches + batches))
    assert sum(new for new, _ in results) == 1600
    assert store.count() == 800


def test_reopen_keeps_data_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "spans.duckdb"
    first = SpanStore(path)
    first.insert([make_row(1)])
    first.close()
    with pytest.raises(StoreError):
        first.count()
    with pytest.raises(StoreError):
        first.insert([make_row(2)])
    second = SpanStore(path)
    assert second.count() == 1
    second.close()
    con = duckdb.connect(str(path))
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,)
    finally:
        con.close()


def test_new_conventions_field_becomes_a_column(tmp_path: Path) -> None:
    path = tmp_path / "spans.duckdb"
    SpanStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE spans_hot DROP COLUMN tool_name")  # as if written before it
    con.close()
    store = SpanStore(path)
    try:
        row = dataclasses.replace(make_row(1), genai={**TEMPLATE.genai, "tool_name": "search"})
        store.insert([row])
        assert store.trace(row.trace_id)[0]["tool_name"] == "search"
        store.seal()
        assert store.trace(row.trace_id)[0]["tool_name"] == "search"
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spans.duckdb"
    SpanStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(StoreError, match="schema version"):
        SpanStore(path)
    # the refused store let go of the file: a differently configured open works
    duckdb.connect(str(path), read_only=True).close()


def test_file_locked_by_another_process_is_unavailable(store: SpanStore) -> None:
    code = textwrap.dedent(f"""
        from pathlib import Path
        from appliance.errors import StoreUnavailable
        from appliance.store.spans import SpanStore
        try:
            SpanStore(Path({str(store.path)!r}))
        except StoreUnavailable as exc:
            print("unavailable:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).parents[2])
    assert out.stdout.startswith("unavailable:"), out.stdout + out.stderr


def test_duckdb_settings_survive_a_reopen(tmp_path: Path) -> None:
    """memory_limit (the daemon's setting) and the checkpoint threshold apply to the
    database, also after a fatal error made it reopen."""
    store = SpanStore(tmp_path / "s.duckdb", memory_limit="512MiB")
    try:
        def settings() -> dict[str, str]:
            return {r["name"]: r["value"] for r in store.read(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('memory_limit', 'checkpoint_threshold')")}

        assert settings() == {"memory_limit": "512.0 MiB", "checkpoint_threshold": "256.0 MiB"}
        store.db._con = _DiskFull(store.db._con)  # type: ignore[arg-type]
        store.db._con.error = duckdb.FatalException  # type: ignore[union-attr]
        with pytest.raises(StoreUnavailable):
            store.insert([make_row(1)])
        assert settings() == {"memory_limit": "512.0 MiB", "checkpoint_threshold": "256.0 MiB"}
    finally:
        store.close()
