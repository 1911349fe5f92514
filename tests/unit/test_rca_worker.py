"""The daemon's RCA worker over a real DuckDB file: a case that opens is diagnosed on the
worker's thread, new evidence is debounced into one run, a request through the API is
queued (202) and never waits for the run, a failing run leaves the rules-only answer
and ingest goes on, and every run is audited and exported."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.api.app import create_app
from appliance.cases.model import Case, CaseOpen
from appliance.export import bundle
from appliance.rca.pipeline import Unavailable
from appliance.rca.worker import ACTOR, NICE, RcaSources, RcaWorker
from appliance.records import Records
from appliance.settings import Settings
from tests.casework import case_body, open_records
from tests.otlp_payloads import export_request

PROTO = {"Content-Type": "application/x-protobuf"}
WAIT_S = 60.0


def _off(_: Settings) -> None:
    return None  # the part left out: rules only, fast


class Runs:
    """Each stored RCA run as the case store reports it, with the thread it ran on."""

    def __init__(self, records: Records) -> None:
        self.seen: list[tuple[Case, str]] = []
        self.nice: list[int] = []
        self.cv = threading.Condition()
        records.cases.on_action(self._on)

    def _on(self, action: str, case: Case) -> None:
        if action == "rca.run":
            with self.cv:
                self.seen.append((case, threading.current_thread().name))
                self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
                self.cv.notify_all()

    def wait(self, n: int) -> list[tuple[Case, str]]:
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.seen) >= n, WAIT_S), self.seen
            return list(self.seen)


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    r = open_records(tmp_path, rca_debounce_s=0.3)
    yield r
    r.rca.stop()
    r.store.close()


def _worker(records: Records, **loaders: Any) -> RcaWorker:
    """A started worker on ``records`` in place of the one ``Records.open`` built."""
    w = RcaWorker(RcaSources(records.store, records.changes, records.cases, records.settings),
                  **{"load": _off, "kb": _off, **loaders})
    records.cases.on_action(w.on_case)
    w.start()
    return w


def _open(records: Records, **extra: Any) -> Case:
    return records.cases.open(CaseOpen.model_validate(case_body(**extra)), "detector:t")


def _api(records: Records, method: str, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(records), client=("127.0.0.1", 5))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def test_a_case_that_opens_is_diagnosed_on_the_worker_thread(records: Records) -> None:
    runs = Runs(records)
    w = _worker(records)
    try:
        case = _open(records)
        (stored, thread), = runs.wait(1)
        assert thread == "rca-worker" and stored.id == case.id
        # the worker yields the CPU to the API and ingest (nice is per thread on Linux)
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert runs.nice == [min(ours + NICE, 19)]
        assert stored.rca is not None and stored.rca.runs == 1 and stored.rca.ran_by == ACTOR
        assert stored.rca.details["engine"] == "rules"
        # a service that sent nothing: the rules' answer, with the status saying why
        assert stored.rca.details["status"] == "no_traces"
        assert stored.root_cause == "unable to determine root cause"
    finally:
        w.stop()


def test_new_evidence_is_debounced_into_one_run(records: Records) -> None:
    runs = Runs(records)
    w = _worker(records)
    try:
        case = _open(records)
        runs.wait(1)
        for _ in range(3):  # one finding firing three times within the debounce
            assert _open(records).deduplicated
        assert w.pending() == [case.id]  # queued once
        seen = runs.wait(2)
        assert [c.rca.runs for c, _ in seen if c.rca] == [1, 2]
        assert w.pending() == [] and len(runs.seen) == 2
        assert records.cases.get(case.id).occurrences == 4
    finally:
        w.stop()


def test_a_request_through_the_api_is_queued_and_answered_at_once(records: Records) -> None:
    """The API answers 202 while the worker is busy with something else: it never waits
    for a run, and other routes answer meanwhile."""
    runs = Runs(records)
    w = _worker(records)
    busy, release = threading.Event(), threading.Event()
    try:
        case = _open(records)
        runs.wait(1)
        blocker = w.submit(lambda: (busy.set(), release.wait(WAIT_S)))
        assert busy.wait(WAIT_S)
        api = dataclasses.replace(records, rca=w)
        t0 = time.monotonic()
        r = _api(api, "POST", f"/api/v1/cases/{case.id}/rca/run")
        assert r.status_code == 202, r.text
        assert r.json() == {"case_id": case.id, "queued": True, "runs": 1,
                            "worker_running": True}
        assert _api(api, "GET", "/healthz").status_code == 200
        assert time.monotonic() - t0 < 5  # nothing waited for the busy worker
        assert len(runs.seen) == 1 and w.pending() == [case.id]
        release.set()
        blocker.result(WAIT_S)
        (_, _), (again, thread) = runs.wait(2)
        assert again.rca is not None and again.rca.runs == 2 and thread == "rca-worker"
        missing = _api(api, "POST", "/api/v1/cases/case_nothere/rca/run")
        assert missing.status_code == 404 and missing.json()["type"] == "not_found"
    finally:
        release.set()
        w.stop()


def test_a_failing_run_stores_the_rules_answer_and_ingest_goes_on(records: Records) -> None:
    def broken(_: Settings) -> None:
        raise RuntimeError("llama.cpp fell over")

    runs = Runs(records)
    w = _worker(records, load=broken)
    try:
        case = _open(records)
        (stored, _), = runs.wait(1)
        assert stored.id == case.id and w.failures == 1
        assert stored.rca is not None
        assert stored.rca.details["status"].startswith("pipeline_error: RuntimeError")
        assert stored.rca.details["engine"] == "rules"
        before = records.store.count()
        r = _api(records, "POST", "/v1/traces", headers=PROTO,
                 content=export_request("after-failure", 5).SerializeToString())
        assert r.status_code == 200 and records.store.count() == before + 5
        assert w.running  # the thread survived the failure
    finally:
        w.stop()


def test_missing_parts_are_statuses_on_the_case_not_failures(records: Records) -> None:
    runs = Runs(records)
    w = _worker(records, load=lambda _: Unavailable("model_unavailable: no GGUF at /x"),
                kb=lambda _: Unavailable("kb_unavailable: corrupt folder"))
    try:
        _open(records)
        (stored, _), = runs.wait(1)
        assert stored.rca is not None and w.failures == 0
        assert stored.rca.details["statuses"] == [
            "no_traces", "kb_unavailable: corrupt folder", "model_unavailable: no GGUF at /x"]
    finally:
        w.stop()


def test_every_run_is_audited_and_exported(records: Records) -> None:
    runs = Runs(records)
    w = _worker(records)
    try:
        case = _open(records)
        runs.wait(1)
        w.request(case.id)
        runs.wait(2)
    finally:
        w.stop()
    audited = [e for e in records.audit.entries(subject=case.id, limit=100)
               if e["action"] == "rca.run"]
    assert [e["details"]["run"] for e in audited] == [1, 2]
    assert all(e["actor"] == ACTOR for e in audited)
    first = audited[0]["details"]
    assert {"engine", "status", "model_name", "model_sha256", "evidence_ids",
            "confidence", "failure_type"} <= set(first)
    data, _ = bundle.build(records, case.id, "tester")
    rca = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("rca.json"))
    assert rca["run"]["runs"] == 2 and rca["run"]["details"]["engine"] == "rules"
    assert [r["run"] for r in rca["runs"]] == [1, 2]
    assert all(r["status"] == "no_traces" for r in rca["runs"])


class Serving:
    """The daemon's app over ``records`` on a real port, in a thread."""

    def __init__(self, records: Records) -> None:
        import uvicorn

        from tests.unit.test_console_pages import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(records), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Serving:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:  # uvicorn sets it once it listens
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)


def test_cases_rca_wait_prints_the_new_run(records: Records, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from appliance.cli.main import build

    runs = Runs(records)
    w = _worker(records)
    try:
        case = _open(records)
        runs.wait(1)
        with Serving(dataclasses.replace(records, rca=w)) as served:
            env = {"TRACEHOLD_DATA_DIR": str(tmp_path),
                   "TRACEHOLD_PORTS__DAEMON": str(served.port)}
            queued = CliRunner().invoke(build(), ["cases", "rca", case.id, "--json"], env=env,
                                        catch_exceptions=False)
            assert queued.exit_code == 0, queued.output
            assert json.loads(queued.stdout)["queued"] is True
            runs.wait(2)
            waited = CliRunner().invoke(build(), ["cases", "rca", case.id, "--wait"], env=env,
                                        catch_exceptions=False)
            assert waited.exit_code == 0, waited.output
    finally:
        w.stop()
    last = runs.wait(3)[-1][0].rca
    assert last is not None and last.runs == 3
    lines = waited.stdout.splitlines()
    assert lines[0].startswith(f"{case.id} RCA run 3 at ")
    assert "(rules; status no_traces)" in lines[0]
    assert any(line.strip().startswith("root cause:") for line in lines)
