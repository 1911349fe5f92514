"""Notifications end to end on loopback: the outbox over a real DuckDB file, a webhook
receiver that checks signatures, a chat hook, a real SMTP server (aiosmtpd), GitHub and
Jira stand-ins; a destination down then back, dead letters, tickets and a 401."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.cases.model import CaseOpen, Rca, Resolve, Verify
from appliance.errors import DeliveryError, Forbidden
from appliance.notify import config, webhook
from appliance.notify.routing import event_of
from appliance.notify.service import Notifications, send_test
from appliance.records import Records
from appliance.settings import Destination, NotifyConfig, Tracker
from tests.casework import SetClock, case_body, open_records
from tests.notify_servers import (
    ChatReceiver,
    GitHubApi,
    HttpStandIn,
    JiraApi,
    SmtpServer,
    WebhookReceiver,
)

KEY = "whsec-test-key"
ACTOR = "person:ana"


def _setup(tmp_path: Path, clock: SetClock, notify: NotifyConfig,
           secrets: dict[str, str]) -> tuple[Records, Notifications]:
    records = open_records(tmp_path, clock, notify=notify)
    for name, value in secrets.items():
        config.set_secret(records.settings, name, value)
    n = Notifications.open(records, clock)
    n.worker.enqueue_new()  # the first start sets the cursor at the log's end
    return records, n


def _open_case(records: Records, **extra: Any) -> str:
    return records.cases.open(CaseOpen.model_validate(case_body(**extra)), "detector:x").id


@pytest.fixture
def hook() -> Iterator[tuple[HttpStandIn, WebhookReceiver]]:
    receiver = WebhookReceiver(KEY)
    server = HttpStandIn(receiver).start()
    yield server, receiver
    server.stop()


def test_signature_is_checked_and_a_replay_is_refused() -> None:
    body = webhook.body_of({"case_id": "case_1"})
    now = time.time()
    sent = webhook.headers(KEY, body, now, "msg-1")
    webhook.verify(KEY, sent, body, now)  # accepted as sent
    with pytest.raises(Forbidden, match="signature"):
        webhook.verify(KEY, sent, body.replace(b"case_1", b"case_2"), now)
    with pytest.raises(Forbidden, match="signature"):
        webhook.verify("another-key", sent, body, now)
    with pytest.raises(Forbidden, match="replay refused"):
        webhook.verify(KEY, sent, body, now + 301)  # the same request, captured and resent
    with pytest.raises(Forbidden, match="missing"):
        webhook.verify(KEY, {}, body, now)


def test_case_events_reach_webhook_chat_and_mail(
        tmp_path: Path, hook: tuple[HttpStandIn, WebhookReceiver]) -> None:
    server, receiver = hook
    chat = ChatReceiver()
    chat_server = HttpStandIn(chat).start()
    clock = SetClock()
    with SmtpServer(login=("relay-user", "relay-pass"), folder=tmp_path) as smtp:
        notify = NotifyConfig(console_url="https://tracehold.example:8501", destinations=[
            Destination(name="hook", kind="webhook", url=f"{server.url}/in"),
            Destination(name="chat", kind="chat", url=f"{chat_server.url}/hooks/abc",
                        events=["opened", "verified"]),
            Destination(name="mail", kind="email", url=f"smtp://127.0.0.1:{smtp.port}",
                        mail_from="tracehold@example.org", mail_to=["oncall@example.org"],
                        username="relay-user", starttls=True, ca_file=smtp.ca_file,
                        services=["rag-api"])])
        records, n = _setup(tmp_path, clock, notify,
                            {"hook": KEY, "mail": "relay-pass"})
        case_id = _open_case(records)
        _open_case(records, service="other-svc")  # the mail's service filter leaves it out
        records.cases.set_rca(case_id, Rca(root_cause="temperature raised to 1.4",
                                           confidence=0.82), "rca:worker")
        records.cases.resolve(case_id, Resolve(root_cause="temperature",
                                               fix_applied="back to 0.2"), ACTOR)
        records.cases.verify(case_id, Verify(back_to_baseline=True), "detector:x")
        assert n.worker.run_once() == 5 + 3 + 4  # webhook, chat, mail
        chat_server.stop()
        mails = list(smtp.mails)
    events = [(m["case_id"], m["event"]) for m in receiver.accepted]
    assert events == [(case_id, "opened"), (events[1][0], "opened"), (case_id, "diagnosis"),
                      (case_id, "resolved"), (case_id, "verified")]
    diag = receiver.accepted[2]
    assert diag["diagnosis"] == "temperature raised to 1.4" and diag["confidence"] == 0.82
    assert diag["type"] == "hallucination" and diag["service"] == "rag-api"
    assert diag["link"] == f"https://tracehold.example:8501/cases?case={case_id}"
    assert receiver.refused == []
    assert len(chat.texts) == 3 and "Case verified" in chat.texts[-1]
    assert len(mails) == 4  # opened, diagnosis, resolved, verified of rag-api only
    first = mails[0]
    assert first["To"] == "oncall@example.org" and case_id in first["Subject"]
    kinds = [p.get_content_type() for p in first.walk()]
    assert "text/plain" in kinds and "text/html" in kinds
    assert all(m["state"] == "sent" for m in n.outbox.messages())


def test_a_destination_down_gets_everything_in_order_once_back(
        tmp_path: Path, hook: tuple[HttpStandIn, WebhookReceiver]) -> None:
    server, receiver = hook
    clock = SetClock()
    notify = NotifyConfig(backoff_base_s=5, backoff_max_s=60, destinations=[
        Destination(name="hook", kind="webhook", url=f"{server.url}/in", max_tries=100)])
    records, n = _setup(tmp_path, clock, notify, {"hook": KEY})
    server.stop()  # refuses connections from now on
    ids = [_open_case(records, signature=f"sig-{i}") for i in range(6)]
    assert n.worker.run_once() == 0
    health = n.outbox.health()[0]
    assert health["failing"] and health["pending"] == 6 and "Connect" in health["last_error"]
    for _ in range(10):  # five simulated minutes down: tries back off, never all at once
        clock.advance(30)
        assert n.worker.run_once() == 0
    head = n.outbox.messages(state="pending")[-1]
    assert 3 <= head["tries"] <= 11  # backoff: 5, 10, 20, 40, 60, 60 ... seconds
    server.start()  # back, on the same port
    clock.advance(60)
    assert n.worker.run_once() == 6
    assert [m["case_id"] for m in receiver.accepted] == ids
    assert receiver.refused == []
    n2 = Notifications.open(records, clock)  # a restart sends nothing twice
    assert n2.worker.run_once() == 0 and len(receiver.accepted) == 6
    assert not n.outbox.health()[0]["failing"]


def test_dead_letter_after_max_tries_then_retry(
        tmp_path: Path, hook: tuple[HttpStandIn, WebhookReceiver]) -> None:
    server, receiver = hook
    clock = SetClock()
    notify = NotifyConfig(destinations=[
        Destination(name="hook", kind="webhook", url=f"{server.url}/in", max_tries=3)])
    records, n = _setup(tmp_path, clock, notify, {"hook": "a-wrong-key"})
    first = _open_case(records, signature="a")
    for _ in range(3):
        n.worker.run_once()
        clock.advance(600)
    dead = n.outbox.messages(state="dead")
    assert [m["case_id"] for m in dead] == [first] and dead[0]["tries"] == 3
    assert "HTTP 403" in dead[0]["last_error"] and "signature" in dead[0]["last_error"]
    assert n.outbox.health()[0]["failing"]
    config.set_secret(records.settings, "hook", KEY)  # the operator fixes the key
    assert n.outbox.retry() == 1
    assert n.worker.run_once() == 1
    assert [m["case_id"] for m in receiver.accepted] == [first]


def test_a_diagnosis_is_sent_when_it_says_something_new(
        tmp_path: Path, hook: tuple[HttpStandIn, WebhookReceiver]) -> None:
    server, receiver = hook
    clock = SetClock()
    records, n = _setup(tmp_path, clock, NotifyConfig(destinations=[
        Destination(name="hook", kind="webhook", url=f"{server.url}/in",
                    events=["diagnosis"])]), {"hook": KEY})
    cid = _open_case(records)
    for cause, confidence in (("model swapped", 0.7), ("model swapped", 0.75),
                              ("index rebuilt", 0.8)):
        records.cases.set_rca(cid, Rca(root_cause=cause, confidence=confidence), "rca:worker")
    n.worker.run_once()
    assert [(m["diagnosis"], m["confidence"]) for m in receiver.accepted] == [
        ("model swapped", 0.7), ("index rebuilt", 0.8)]  # each as its run said
    assert len(n.outbox.messages()) == 2  # the echo of the first run was not sent


def test_reopen_events() -> None:
    assert event_of({"action": "case.verify", "details": {"to": "investigating"}}) == "reopened"
    assert event_of({"action": "case.status", "details": {"from": "resolved",
                                                          "to": "investigating"}}) == "reopened"
    assert event_of({"action": "case.status", "details": {"from": "open"}}) is None
    assert event_of({"action": "case.note", "details": {}}) is None


@pytest.mark.parametrize("kind,user", [("github", None), ("jira", "svc-tracehold"),
                                       ("jira", None)])  # Jira: basic auth, or a bearer PAT
def test_one_ticket_per_case_and_a_comment_when_verified(tmp_path: Path, kind: str,
                                                         user: str | None) -> None:
    api: GitHubApi | JiraApi = (GitHubApi("acme/llm-app", "ghp_secret") if kind == "github"
                                else JiraApi("OPS", user, "jira-secret"))
    server = HttpStandIn(api).start()
    tracker = Tracker(url=server.url, project="acme/llm-app" if kind == "github" else "OPS",
                      username=user)
    clock = SetClock()
    records, n = _setup(tmp_path, clock, NotifyConfig(**{kind: tracker}),
                        {kind: "ghp_secret" if kind == "github" else "jira-secret"})
    case_id = _open_case(records)
    first = n.tickets.create(case_id, kind, ACTOR)
    again = n.tickets.create(case_id, kind, ACTOR)
    assert len(api.issues) == 1 and again["url"] == first["url"] and again["existing"]
    issue = api.issues[0]
    text = issue["body"] if kind == "github" else issue["fields"]["description"]
    assert "groundedness" in text and case_id in text  # the evidence summary
    timeline = [e.action for e in records.cases.get(case_id).timeline or []]
    assert timeline.count("case.ticket") == 1
    records.cases.resolve(case_id, Resolve(root_cause="r", fix_applied="f"), ACTOR)
    records.cases.verify(case_id, Verify(back_to_baseline=True), "detector:x")
    n.worker.run_once()
    assert len(api.comments) == 1 and "Case verified" in api.comments[0][1]
    server.stop()


def test_a_401_from_the_tracker_is_a_clear_error_on_the_case(tmp_path: Path) -> None:
    api = GitHubApi("acme/llm-app", "the-real-token")
    server = HttpStandIn(api).start()
    clock = SetClock()
    records, n = _setup(tmp_path, clock,
                        NotifyConfig(github=Tracker(url=server.url, project="acme/llm-app")),
                        {"github": "an-expired-token"})
    case_id = _open_case(records)
    with pytest.raises(DeliveryError, match="refused our credentials .HTTP 401: .*Bad "
                                            "credentials.*notify secret github"):
        n.tickets.create(case_id, "github", ACTOR)
    stored = n.tickets.get(case_id)
    assert stored is not None and stored["state"] == "failed" and "401" in stored["error"]
    entry = [e for e in records.cases.get(case_id).timeline or []
             if e.action == "case.ticket.failed"]
    assert len(entry) == 1 and "401" in entry[0].details["error"]
    assert "an-expired-token" not in stored["error"]
    config.set_secret(records.settings, "github", "the-real-token")
    assert n.tickets.create(case_id, "github", ACTOR)["state"] == "created"
    server.stop()


def test_send_test_and_validate(tmp_path: Path,
                                hook: tuple[HttpStandIn, WebhookReceiver]) -> None:
    server, receiver = hook
    records = open_records(tmp_path, notify=NotifyConfig(destinations=[
        Destination(name="hook", kind="webhook", url=f"{server.url}/in"),
        Destination(name="mail", kind="email", url="http://relay", mail_to=[])],
        github=Tracker(url="https://ghe.example/api/v3", project="no-slash")))
    s = records.settings
    found = {f.name: f for f in config.check(s)}
    assert "no signing key" in found["notify:hook"].message and not found["notify:hook"].ok
    assert "smtp://" in found["notify:mail"].message and "mail_from" in found["notify:mail"].message
    assert "owner/repo" in found["tracker:github"].message
    config.set_secret(s, "hook", KEY)
    assert config.check(s)[0].ok
    send_test(s, "hook")
    assert receiver.accepted[0]["event"] == "test"
    assert config.endpoints(s) == sorted([("127.0.0.1", server.port), ("relay", 80),
                                          ("ghe.example", 443)])
    assert KEY not in (tmp_path / "config.toml").read_text(errors="ignore") \
        if (tmp_path / "config.toml").exists() else True
    assert oct((s.secrets_file).stat().st_mode & 0o777) == "0o600"
    records.store.close()


CHILD = """
import sys, time
from pathlib import Path
from appliance.cases.model import CaseOpen
from appliance.notify.service import Notifications
from appliance.records import Records
from appliance.settings import resolve
from appliance.store.spans import SpanStore
from tests.casework import case_body

s = resolve(Path(sys.argv[1]))
records = Records.open(SpanStore(s.span_db), s)
n = Notifications.open(records)
n.worker.enqueue_new()
ids = [records.cases.open(CaseOpen.model_validate(case_body(signature=f"k{i}")), "detector:x").id
       for i in range(5)]
n.worker.run_once()  # the destination is down: every message stays in the outbox
print(" ".join(ids), flush=True)
time.sleep(600)
"""


def test_kill_9_with_messages_in_the_outbox_loses_none(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from appliance.settings import resolve
    from tests.notify_servers import free_port

    port = free_port()  # nothing listens there until after the kill
    (tmp_path / "config.toml").write_text(
        "[[notify.destinations]]\nname = 'hook'\nkind = 'webhook'\n"
        f"url = 'http://127.0.0.1:{port}/in'\nmax_tries = 50\n")
    s = resolve(tmp_path)
    config.set_secret(s, "hook", KEY)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert child.stdout is not None
        ids = child.stdout.readline().split()  # the signalled point: cases opened, tried once
        assert len(ids) == 5
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    receiver = WebhookReceiver(KEY)
    server = HttpStandIn(receiver, port=port).start()
    records = open_records(tmp_path)
    try:
        clock = SetClock()
        clock.advance(3600)  # past every backoff
        n = Notifications.open(records, clock)
        assert n.worker.run_once() == 5
        assert [m["case_id"] for m in receiver.accepted] == ids
        assert receiver.refused == []
    finally:
        server.stop()
        records.store.close()


def test_a_chat_hook_url_kept_as_its_secret_replaces_the_setting(tmp_path: Path) -> None:
    chat = ChatReceiver()
    server = HttpStandIn(chat).start()
    records = open_records(tmp_path, notify=NotifyConfig(destinations=[
        Destination(name="chat", kind="chat", url="https://chat.example/hooks/see-secrets")]))
    s = records.settings
    try:
        config.set_secret(s, "chat", f"{server.url}/hooks/T0K3N")
        send_test(s, "chat")
        assert len(chat.texts) == 1 and "Test message" in chat.texts[0]
        assert server.requests[0].path == "/hooks/T0K3N"
        assert config.endpoints(s) == [("127.0.0.1", server.port)]  # the secret's host only
        assert "T0K3N" not in s.model_dump_json()
    finally:
        server.stop()
        records.store.close()
