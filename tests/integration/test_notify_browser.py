"""The case page's "Sent to" panel in headless Chromium: a real daemon (the notification
world of tests/unit/test_notify_daemon.py: signed webhook, chat, SMTP, GitHub and Jira
stand-ins on loopback) and the Streamlit console pointed at it, without Envoy. A case
worked to verified shows each destination with its time; "Create ticket" on another
case creates one GitHub issue and shows its link. Screenshots:
test-output/screenshots/notify-*.png."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appliance.settings import resolve
from appliance.stack import console
from tests.casework import case_body
from tests.integration.test_console_browser import (  # noqa: F401 (chromium is a fixture)
    SHOTS,
    _shows,
    chromium,
)
from tests.notify_servers import free_port
from tests.supervising import wait_for
from tests.unit.test_notify_daemon import ROOT, world  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser]


@pytest.fixture
def console_url(world: dict[str, Any]) -> Iterator[str]:  # noqa: F811 (the fixture)
    port = free_port()
    env = {**os.environ, **console.console_env(resolve(world["dir"])),
           console.ENV_PROMETHEUS: "", console.ENV_VICTORIAMETRICS: ""}
    log = (world["dir"] / "console.log").open("w")
    argv = [a if not a.startswith("--server.port=") else f"--server.port={port}"
            for a in console._argv(resolve(world["dir"]), None)]  # type: ignore[arg-type]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (world["dir"] / "console.log").read_text()
        try:
            return httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=120)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _page(chromium: Any, url: str) -> Any:  # noqa: F811
    ctx = chromium()
    page = ctx.new_page()
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    return page


def test_case_page_shows_where_the_case_was_sent(world: dict[str, Any],  # noqa: F811
                                                 console_url: str,
                                                 chromium: Any) -> None:  # noqa: F811
    w = world
    with httpx.Client(base_url=w["base"], headers={"x-tracehold-user": "ana"},
                      timeout=30) as api:
        cid = api.post("/api/v1/cases", json=case_body(service="rag-api")).json()["id"]
        assert api.post(f"/api/v1/cases/{cid}/ticket", json={"to": "github"}).status_code == 201
        api.post(f"/api/v1/cases/{cid}/resolve", json={"root_cause": "index",
                                                       "fix_applied": "rebuilt"})
        api.post(f"/api/v1/cases/{cid}/verify", json={"back_to_baseline": True})
        wait_for(lambda: len(w["github"].comments) == 1, timeout=60)
        other = api.post("/api/v1/cases", json=case_body(service="billing")).json()["id"]

    page = _page(chromium, f"{console_url}/cases?case={cid}")
    _shows(page, "Sent to", "hook", "chat", "mail", "ticket", "verified", "Ticket")
    panel = page.get_by_text("Sent to", exact=True).first
    panel.scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "notify-case-page.png"), full_page=True)
    # the panel: the innermost box holding both its title and its keyed content
    page.locator("div", has=page.locator(".st-key-cn_sent_to")).filter(
        has_text="Sent to").last.screenshot(path=str(SHOTS / "notify-case-sent-to.png"))
    text = page.locator("body").inner_text()
    assert "ghe.example/acme/llm-app/issues/1" in page.content()
    assert "Create ticket" not in text  # one ticket per case: no second button

    page = _page(chromium, f"{console_url}/cases?case={other}")
    _shows(page, "Sent to", "Create ticket (github)", "Create ticket (jira)")
    page.get_by_role("button", name="Create ticket (github)").click()
    _shows(page, "created ticket 2 in github")
    page.screenshot(path=str(SHOTS / "notify-create-ticket.png"), full_page=True)
    assert len(w["github"].issues) == 2
    assert page.locator('[data-testid="stException"]').count() == 0
