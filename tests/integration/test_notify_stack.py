"""The demo failure on the real stack reaches people: `tracehold up --demo` (the demo
traffic injects its default failure scenario after its healthy baseline), the
detectors open a case and, within a minute of it opening, one signed webhook, one chat
message and one e-mail arrive at loopback stand-ins (and a real SMTP server); the RCA
worker's diagnosis follows; a ticket on request; resolving and verifying notifies
again and comments on the ticket. The notification settings are the defaults except
the destinations. Times: test-output/notify-stack.json."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.notify import config
from appliance.settings import resolve
from tests.conftest import Stack, running_stack, tracehold
from tests.notify_servers import (
    ChatReceiver,
    GitHubApi,
    HttpStandIn,
    SmtpServer,
    WebhookReceiver,
    destinations_toml,
)
from tests.supervising import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.binaries]
KEY = "whsec-stack"
OUT = Path("test-output")


def test_the_demo_failure_reaches_webhook_chat_mail_and_a_ticket(tmp_path: Path) -> None:
    hook, chat, github = WebhookReceiver(KEY), ChatReceiver(), GitHubApi("acme/rag", "ghp_x")
    servers = [HttpStandIn(x).start() for x in (hook, chat, github)]
    seen: dict[str, float] = {}
    try:
        with SmtpServer() as smtp:
            (tmp_path / "config.toml").write_text(f"""
demo = true
[notify]
console_url = "https://tracehold.example:8501"
[notify.github]
url = "{servers[2].url}"
project = "acme/rag"
""" + destinations_toml(servers[0], servers[1], smtp))
            s = resolve(tmp_path)
            config.set_secret(s, "hook", KEY)
            config.set_secret(s, "github", "ghp_x")
            with running_stack(tmp_path) as stack:
                _walk(stack, hook, chat, smtp, github, seen)
    finally:
        for server in servers:
            server.stop()
        OUT.mkdir(exist_ok=True)
        (OUT / "notify-stack.json").write_text(json.dumps(seen, indent=2))


def _walk(stack: Stack, hook: WebhookReceiver, chat: ChatReceiver, smtp: SmtpServer,
          github: GitHubApi, seen: dict[str, float]) -> None:
    def opened() -> list[dict[str, Any]]:
        return [m for m in hook.accepted if m["event"] == "opened"]

    wait_for(lambda: bool(opened()), timeout=600)  # baseline, injection, detection
    first = opened()[0]
    cid = first["case_id"]
    wait_for(lambda: any(cid in t for t in chat.texts)
             and any(cid in str(m["Subject"]) for m in smtp.mails), timeout=120)
    with stack.daemon() as daemon:
        case = daemon.get(f"/api/v1/cases/{cid}").json()
    opened_at = datetime.fromisoformat(case["opened_at"].replace("Z", "+00:00")).timestamp()
    seen["case_opened_to_all_three_s"] = time.time() - opened_at
    assert seen["case_opened_to_all_three_s"] < 60, seen
    assert first["type"] == case["failure_type"] and first["service"] == case["service"]

    # the RCA worker diagnoses the case on its own; its diagnosis is sent too
    wait_for(lambda: any(m["event"] == "diagnosis" and m["case_id"] == cid
                         for m in hook.accepted), timeout=300)
    seen["case_opened_to_diagnosis_sent_s"] = time.time() - opened_at
    diagnosis = next(m for m in hook.accepted if m["event"] == "diagnosis")
    seen["diagnosis"] = [diagnosis["diagnosis"], diagnosis["confidence"]]  # type: ignore[assignment]

    ticket = tracehold("cases", "ticket", cid, "--to", "github", "--json",
                       data_dir=stack.data_dir)
    assert json.loads(ticket.stdout)["url"].endswith("/issues/1")
    tracehold("cases", "resolve", cid, "--root-cause", "the demo's injected failure",
              "--fix", "scenario ended", data_dir=stack.data_dir)
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.ports.daemon}",
                      timeout=30, trust_env=False) as api:
        r = api.post(f"/api/v1/cases/{cid}/verify", json={"back_to_baseline": True,
                                                          "detail": "checked by the test"})
        assert r.status_code == 200, r.text
    t0 = time.monotonic()
    wait_for(lambda: {"resolved", "verified"} <= {m["event"] for m in hook.accepted
                                                  if m["case_id"] == cid}
             and len(github.comments) == 1, timeout=120)
    seen["verified_to_notified_and_commented_s"] = time.monotonic() - t0
    events = [m["event"] for m in hook.accepted if m["case_id"] == cid]
    seen["events"] = events  # type: ignore[assignment]
    assert events.count("opened") == 1 and events[-2:] == ["resolved", "verified"]
    assert "diagnosis" in events
    assert len(github.issues) == 1 and hook.refused == []
