"""The demo failure end to end through a real daemon process (``python -m
appliance.daemon``, its API on loopback, its own notification thread) and the CLI:
a case opened over the API reaches a signed webhook, a chat hook and a real SMTP
server within a minute; a ticket on request (one per case); resolving and verifying
notifies again and comments on the ticket; a 401 from Jira is a clear error stored on
the case. The full stack (collector, Envoy) is not needed for this and is not started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.notify import config
from appliance.settings import resolve
from tests.casework import case_body
from tests.notify_servers import (
    ChatReceiver,
    GitHubApi,
    HttpStandIn,
    JiraApi,
    SmtpServer,
    WebhookReceiver,
    destinations_toml,
    free_port,
)
from tests.supervising import wait_for

KEY = "whsec-daemon-test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    hook, chat = WebhookReceiver(KEY), ChatReceiver()
    github, jira = GitHubApi("acme/llm-app", "ghp_good"), JiraApi("OPS", "svc", "jira_good")
    servers = [HttpStandIn(x).start() for x in (hook, chat, github, jira)]
    with SmtpServer() as smtp:
        port = free_port()
        (tmp_path / "config.toml").write_text(f"""
[ports]
daemon = {port}
[detect]
enabled = false
[notify]
poll_interval_s = 0.2
backoff_base_s = 0.5
backoff_max_s = 2
console_url = "https://tracehold.example:8501"
[notify.github]
url = "{servers[2].url}"
project = "acme/llm-app"
[notify.jira]
url = "{servers[3].url}"
project = "OPS"
username = "svc"
""" + destinations_toml(servers[0], servers[1], smtp))
        s = resolve(tmp_path)
        for name, value in (("hook", KEY), ("github", "ghp_good"), ("jira", "an-old-token")):
            config.set_secret(s, name, value)
        env = {**os.environ, "TRACEHOLD_DATA_DIR": str(tmp_path)}
        env.pop("TRACEHOLD_CONFIG", None)
        daemon = Daemon(tmp_path, port, env)
        try:
            daemon.start()
            yield {"base": daemon.base, "env": env, "hook": hook, "chat": chat, "smtp": smtp,
                   "github": github, "jira": jira, "dir": tmp_path, "daemon": daemon,
                   "servers": servers}
        finally:
            daemon.stop()
            for server in servers:
                server.stop()


class Daemon:
    """``python -m appliance.daemon`` on the test's folder: started, killed, restarted."""

    def __init__(self, folder: Path, port: int, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.folder / "daemon.log").open("a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance.daemon",
                                          "--data-dir", str(self.folder)], cwd=ROOT,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, \
                (self.folder / "daemon.log").read_text()
            try:
                return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=120)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def _cli(w: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args, "--data-dir",
                           str(w["dir"])], cwd=ROOT, env=w["env"], capture_output=True,
                          text=True, timeout=60)


def _events(w: dict[str, Any], case_id: str) -> list[str]:
    return [m["event"] for m in w["hook"].accepted if m["case_id"] == case_id]


def test_a_case_reaches_people_through_the_daemon(world: dict[str, Any]) -> None:
    w, user = world, {"x-tracehold-user": "ana"}
    with httpx.Client(base_url=w["base"], headers=user, timeout=30) as api:
        opened = time.monotonic()
        case = api.post("/api/v1/cases", json=case_body(service="rag-api")).json()
        cid = case["id"]
        wait_for(lambda: "opened" in _events(w, cid) and len(w["chat"].texts) >= 1
                 and len(w["smtp"].mails) >= 1, timeout=60)
        took = time.monotonic() - opened
        print(f"case opened -> webhook, chat and e-mail delivered in {took:.2f} s")
        assert took < 60
        assert cid in w["smtp"].mails[0]["Subject"] and cid in w["chat"].texts[0]

        ticket = _cli(w, "cases", "ticket", cid, "--to", "github", "--json")
        assert ticket.returncode == 0, ticket.stderr
        first = json.loads(ticket.stdout)
        assert first["url"].endswith("/issues/1") and not first["existing"]
        again = api.post(f"/api/v1/cases/{cid}/ticket", json={"to": "jira"})
        assert again.status_code == 200 and again.json()["url"] == first["url"]  # one per case
        assert len(w["github"].issues) == 1 and w["jira"].issues == []

        rca = {"root_cause": "retrieval index rebuilt with another embedding model",
               "confidence": 0.8}
        assert api.put(f"/api/v1/cases/{cid}/rca", json=rca).status_code == 200
        assert api.post(f"/api/v1/cases/{cid}/resolve", json={
            "root_cause": "index", "fix_applied": "index rebuilt"}).status_code == 200
        assert api.post(f"/api/v1/cases/{cid}/verify",
                        json={"back_to_baseline": True}).status_code == 200
        wait_for(lambda: "verified" in _events(w, cid) and len(w["github"].comments) == 1,
                 timeout=60)
        events = _events(w, cid)
        assert events[0] == "opened" and events[-2:] == ["resolved", "verified"]
        assert "diagnosis" in events and w["hook"].refused == []
        assert events.count("opened") == events.count("resolved") == 1
        assert "Case verified" in w["github"].comments[0][1]
        diagnosis = next(m for m in w["hook"].accepted if m["event"] == "diagnosis"
                         and m["confidence"] == 0.8)
        assert diagnosis["diagnosis"] == rca["root_cause"]

        sent = api.get(f"/api/v1/cases/{cid}/notifications").json()
        assert sent["ticket"]["url"] == first["url"]
        assert {m["destination"] for m in sent["messages"]} == {"hook", "chat", "mail", "ticket"}
        listed = _cli(w, "notify", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        health = {d["destination"]: d for d in json.loads(listed.stdout)["destinations"]}
        assert not any(d["failing"] for d in health.values())

        # the other notify commands: test, secret (from stdin), retry
        before = len(w["hook"].accepted)
        assert _cli(w, "notify", "test", "hook").returncode == 0
        # the RCA worker's own diagnosis of the case may land beside it: not necessarily last
        assert [m["event"] for m in w["hook"].accepted[before:]].count("test") == 1
        unknown = _cli(w, "notify", "test", "nope")
        assert unknown.returncode == 1 and "no destination named 'nope'" in unknown.stderr
        stored = subprocess.run([sys.executable, "-m", "appliance", "notify", "secret", "jira",
                                 "--data-dir", str(w["dir"])], input="jira_good\n", cwd=ROOT,
                                env=w["env"], capture_output=True, text=True, timeout=60)
        assert stored.returncode == 0 and "jira_good" not in stored.stdout + stored.stderr
        assert config.secrets_of(resolve(w["dir"]))["jira"] == "jira_good"
        config.set_secret(resolve(w["dir"]), "jira", "an-old-token")
        nothing = _cli(w, "notify", "retry", "--all", "--json")
        assert nothing.returncode == 0 and json.loads(nothing.stdout) == {"retried": 0}
        assert _cli(w, "notify", "retry").returncode == 1  # an id or --all

        # a 401 from Jira: a clear error, stored on the case and shown by the CLI
        other = api.post("/api/v1/cases", json=case_body(service="billing")).json()["id"]
        refused = _cli(w, "cases", "ticket", other, "--to", "jira")
        assert refused.returncode == 1
        assert "Jira refused our credentials (HTTP 401" in refused.stderr
        assert "tracehold notify secret jira" in refused.stderr
        assert "Traceback" not in refused.stderr and "an-old-token" not in refused.stderr
        stored = api.get(f"/api/v1/cases/{other}/notifications").json()["ticket"]
        assert stored["state"] == "failed" and "HTTP 401" in stored["error"]
        timeline = [e["action"] for e in api.get(f"/api/v1/cases/{other}").json()["timeline"]]
        assert "case.ticket.failed" in timeline


def test_daemon_kill_9_loses_nothing_and_status_shows_the_failing_destination(
        world: dict[str, Any]) -> None:
    w = world
    chat_server = w["servers"][1]
    chat_server.stop()  # chat refuses connections from now on
    with httpx.Client(base_url=w["base"], timeout=30) as api:
        cid = api.post("/api/v1/cases", json=case_body(service="search")).json()["id"]

        def chat_failing() -> bool:
            health = api.get("/api/v1/notify/health").json()["destinations"]
            return any(d["destination"] == "chat" and d["failing"] for d in health)

        wait_for(lambda: "opened" in _events(w, cid) and chat_failing(), timeout=60)
    # `status --json` with a (pretend) supervisor: the failing destination and its error
    (w["dir"] / "run").mkdir(exist_ok=True)
    (w["dir"] / "run" / "state.json").write_text(json.dumps(
        {"supervisor_pid": os.getpid(), "profile": "full", "components": []}))
    status = _cli(w, "status", "--json")
    chat = next(d for d in json.loads(status.stdout)["notifications"]
                if d["destination"] == "chat")
    assert chat["failing"] and chat["pending"] == 1 and "ConnectError" in chat["last_error"]
    text = _cli(w, "status").stdout
    assert "notify chat" in text and "FAILING" in text

    w["daemon"].kill9()  # with the chat message in the outbox
    chat_server.start()  # back, on the same port
    w["daemon"].start()
    wait_for(lambda: any(cid in t for t in w["chat"].texts), timeout=60)
    assert sum(cid in t for t in w["chat"].texts) == 1
    assert _events(w, cid).count("opened") == 1  # the restart sent nothing twice
    assert w["hook"].refused == []
