"""The notification routes in-process (ASGI, no socket): the outbox and its health, retry
of dead letters (audited), a case's notifications, ticket errors in the one error shape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.api.app import create_app
from appliance.cases.model import CaseOpen
from appliance.notify import config
from appliance.notify.service import Notifications
from appliance.records import Records
from appliance.settings import Destination, NotifyConfig, Tracker
from tests.casework import SetClock, case_body, open_records
from tests.notify_servers import GitHubApi, HttpStandIn, free_port


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Records, Notifications, HttpStandIn]]:
    github = HttpStandIn(GitHubApi("acme/app", "good")).start()
    notify = NotifyConfig(github=Tracker(url=github.url, project="acme/app"),
                          destinations=[Destination(name="hook", kind="webhook", max_tries=1,
                                                    url=f"http://127.0.0.1:{free_port()}/down")])
    clock = SetClock()
    records = open_records(tmp_path, clock, notify=notify)
    config.set_secret(records.settings, "hook", "k")
    config.set_secret(records.settings, "github", "bad")
    n = Notifications.open(records, clock)
    n.worker.enqueue_new()
    yield records, n, github
    github.stop()
    records.store.close()


def _call(records: Records, n: Notifications, method: str, url: str,
          **kw: Any) -> httpx.Response:
    app = create_app(records)
    app.state.notify = n

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon",
                                     headers={"x-tracehold-user": "ana"}) as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def test_outbox_dead_letter_retry_and_case_notifications(
        setup: tuple[Records, Notifications, HttpStandIn]) -> None:
    records, n, _ = setup
    cid = records.cases.open(CaseOpen.model_validate(case_body()), "detector:x").id
    n.worker.run_once()  # the destination is down and allows one try: a dead letter
    out = _call(records, n, "GET", "/api/v1/notify/outbox", params={"state": "dead"}).json()
    assert [m["case_id"] for m in out["messages"]] == [cid]
    assert out["destinations"][0]["failing"] and out["destinations"][0]["dead"] == 1
    bad = _call(records, n, "GET", "/api/v1/notify/outbox", params={"state": "lost"})
    assert bad.status_code == 400 and bad.json()["type"] == "invalid_request"
    missing = _call(records, n, "POST", "/api/v1/notify/retry", json={"id": 999})
    assert missing.status_code == 404 and missing.json()["type"] == "not_found"
    r = _call(records, n, "POST", "/api/v1/notify/retry", json={})
    assert r.status_code == 200 and r.json() == {"retried": 1}
    assert records.audit.entries(action="notify.retry")[0]["actor"] == "ana"
    sent = _call(records, n, "GET", f"/api/v1/cases/{cid}/notifications").json()
    assert sent["trackers"] == ["github"] and sent["ticket"] is None
    assert [(m["destination"], m["state"]) for m in sent["messages"]] == [("hook", "pending")]
    assert _call(records, n, "GET", "/api/v1/cases/case_nope/notifications").status_code == 404


def test_ticket_errors_have_the_one_error_shape(
        setup: tuple[Records, Notifications, HttpStandIn]) -> None:
    records, n, _ = setup
    cid = records.cases.open(CaseOpen.model_validate(case_body()), "detector:x").id
    r = _call(records, n, "POST", f"/api/v1/cases/{cid}/ticket", json={"to": "github"})
    body = r.json()
    assert r.status_code == 502 and body["type"] == "delivery_failed"
    assert "GitHub refused our credentials (HTTP 401" in body["error"]
    assert set(body) >= {"ok", "status", "type", "title", "error", "request_id"}
    r = _call(records, n, "POST", f"/api/v1/cases/{cid}/ticket", json={"to": "jira"})
    assert r.status_code == 500 and "no jira tracker is configured" in r.json()["error"]
    r = _call(records, n, "POST", f"/api/v1/cases/{cid}/ticket", json={"to": "trello"})
    assert r.status_code == 400
