"""Helpers for the casework tests: the daemon API in-process over a real DuckDB file."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from appliance.api.app import create_app
from appliance.ingest.limits import IngestLimits
from appliance.records import Records
from appliance.settings import Settings
from appliance.store.spans import SpanStore

# The daemon builds one Records per process; tests open many stores, so the harness
# keeps one per store the same way (a second Records.open would add a second change
# inference hook to the store).
_built: weakref.WeakKeyDictionary[SpanStore, Records] = weakref.WeakKeyDictionary()


def records_of(store: SpanStore, settings: Settings | None = None,
               clock: Callable[[], datetime] | None = None) -> Records:
    """The test's Records for ``store``, built at first use (default settings: the
    store's folder as data folder; default clock: the system's)."""
    if store not in _built:
        _built[store] = Records.open(store, settings or Settings(data_dir=store.path.parent),
                                     clock=clock)
    return _built[store]


def open_records(tmp_path: Path, clock: Callable[[], datetime] | None = None,
                 **settings: Any) -> Records:
    store = SpanStore(tmp_path / "spans.duckdb")
    return records_of(store, Settings(data_dir=tmp_path, **settings), clock)


@dataclasses.dataclass
class SetClock:
    """A clock that moves only when a test moves it (cases' "now")."""

    now: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def app_for(store: SpanStore, limits: IngestLimits | None = None,
            settings: Settings | None = None) -> FastAPI:
    """The daemon's app in-process over ``store`` (settings: replace the Records' own)."""
    records = records_of(store)
    if settings is not None:
        records = dataclasses.replace(records, settings=settings)
    return create_app(records, limits)


def call(store: SpanStore, method: str, url: str, client: tuple[str, int] = ("127.0.0.1", 5),
         **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_for(store), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def case_body(**extra: Any) -> dict[str, Any]:
    return {"service": "rag-api", "failure_type": "hallucination",
            "signature": "eval:groundedness:drop", "trace_ids": ["ab" * 16],
            "signals": [{"name": "groundedness", "value": 0.41, "baseline": 0.88,
                         "window": "15m"}], "detected_by": "eval-drop", **extra}


def audit_count(store: SpanStore) -> int:
    return int(store.read("SELECT count(*) AS n FROM audit_log")[0]["n"])
