"""The audit log's hash chain: tampering with an entry, deleting one or reordering two
(done to the DuckDB table directly) fails verification naming the entry; signed heads
catch a rewritten chain; client writes are loopback-only and cannot forge case actions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.audit import chain
from appliance.audit.signing import Signer, verify
from appliance.records import Records
from tests.casework import call, case_body, open_records


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    r = open_records(tmp_path)
    case_id = call(r.store, "POST", "/api/v1/cases", json=case_body()).json()["id"]
    for who in ("ana", "bob", "cy"):
        call(r.store, "POST", f"/api/v1/cases/{case_id}/assign",
             headers={"x-tracehold-user": who}, json={"assignee": who})
    call(r.store, "POST", "/api/v1/changes", json={"kind": "config", "service": "rag-api"})
    yield r
    r.store.close()


def _verify(records: Records) -> dict[str, object]:
    r = call(records.store, "GET", "/api/v1/audit/verify")
    assert r.status_code == 200
    result: dict[str, object] = r.json()
    return result


def _sql(records: Records, sql: str, *params: object) -> None:
    with records.store.db.transaction() as con:
        con.execute(sql, list(params))


def test_intact_chain_verifies(records: Records) -> None:
    result = _verify(records)
    # 1 signing key created, 1 case.open, 3 assigns, 1 change
    assert result["ok"] is True and result["entries"] == 6 and result["first_broken"] is None
    entries = call(records.store, "GET", "/api/v1/audit", params={"limit": 100}).json()["entries"]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0]["prev_hash"] == chain.GENESIS
    for before, entry in zip(entries, entries[1:], strict=False):
        assert entry["prev_hash"] == before["hash"] == chain.entry_hash(before)
    # the canonical encoding is the documented one
    e = entries[2]
    text = ('{"action":"' + e["action"] + '","actor":"' + e["actor"] + '","details":'
            '{"from":null,"to":"ana"},"prev_hash":"' + e["prev_hash"] + '","seq":3,'
            '"subject":"' + e["subject"] + '","ts":"' + e["ts"] + '"}')
    assert hashlib.sha256(text.encode()).hexdigest() == e["hash"]


@pytest.mark.parametrize(("column", "value"), [
    ("actor", "mallory"), ("details", '{"from":null,"to":"mallory"}'),
    ("ts", "2020-01-01T00:00:00Z"), ("action", "case.status"), ("subject", "case_other"),
])
def test_tampered_entry_is_named(records: Records, column: str, value: str) -> None:
    _sql(records, f"UPDATE audit_log SET {column} = ? WHERE seq = 4", value)
    result = _verify(records)
    assert result["ok"] is False
    assert result["first_broken"]["seq"] == 4  # type: ignore[index]
    assert "content was changed" in result["first_broken"]["reason"]  # type: ignore[index]


def test_deleted_entry_is_named(records: Records) -> None:
    _sql(records, "DELETE FROM audit_log WHERE seq = 3")
    result = _verify(records)
    assert result["ok"] is False and result["first_broken"] == {  # type: ignore[comparison-overlap]
        "seq": 3, "reason": "entry 3 is missing: entry 4 follows entry 2 (deleted)"}


def test_reordered_entries_are_named(records: Records) -> None:
    _sql(records, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
    _sql(records, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    _sql(records, "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    result = _verify(records)
    assert result["ok"] is False
    assert result["first_broken"]["seq"] == 3  # type: ignore[index]
    assert "does not link to entry 2" in result["first_broken"]["reason"]  # type: ignore[index]


def test_rewritten_chain_is_caught_by_a_signed_head(records: Records) -> None:
    head = records.audit.sign_head(records.signer, "daily")
    assert verify(records.signer.public_pem, chain.head_payload(
        head["seq"], head["hash"], head["signed_at"], head["key_id"]), head["signature"])
    # rewrite entry 4 and re-hash everything after it: the chain alone looks fine...
    _sql(records, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4")
    entries = records.audit.entries(limit=100)
    prev = entries[2]["hash"]
    for e in entries[3:]:
        e["prev_hash"] = prev
        e["hash"] = prev = chain.entry_hash(e)
        _sql(records, "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?",
             e["prev_hash"], e["hash"], e["seq"])
    result = _verify(records)
    # ...but the signed head says otherwise
    assert result["ok"] is False and result["first_broken"]["seq"] == 6  # type: ignore[index]
    assert "the log was rewritten" in result["first_broken"]["reason"]  # type: ignore[index]


def test_deleted_tail_is_caught_by_a_signed_head(records: Records) -> None:
    records.audit.sign_head(records.signer, "daily")
    _sql(records, "DELETE FROM audit_log WHERE seq >= 5")
    result = _verify(records)
    assert result["ok"] is False and result["first_broken"]["seq"] == 5  # type: ignore[index]


def test_signing_key_is_private_and_public_pem_is_next_to_it(records: Records,
                                                              tmp_path: Path) -> None:
    s = records.settings
    assert s.audit_key_file.stat().st_mode & 0o777 == 0o600
    assert s.audit_public_key_file.read_bytes() == records.signer.public_pem
    again, created = Signer.load_or_create(s.audit_key_file, s.audit_public_key_file)
    assert not created and again.key_id == records.signer.key_id
    first = records.audit.entries(limit=1)[0]
    assert first["action"] == "audit.key.create"


def test_client_entries_are_loopback_only_and_cannot_forge(records: Records) -> None:
    body = {"action": "keys.create", "subject": "key:key_1", "details": {"name": "ci"}}
    far = call(records.store, "POST", "/api/v1/audit", client=("10.1.2.3", 999), json=body)
    assert far.status_code == 403 and far.json()["title"] == "Forbidden"
    for action in ("case.resolve", "notify.retry", "console.login"):
        forged = call(records.store, "POST", "/api/v1/audit", json={**body, "action": action})
        assert forged.status_code == 403, action
    ok = call(records.store, "POST", "/api/v1/audit", json=body,
              headers={"x-tracehold-user": "cli:root"})
    assert ok.status_code == 201 and ok.json()["actor"] == "cli:root"
    login = call(records.store, "POST", "/api/v1/audit/login",
                 json={"user": "ana", "ok": False, "remote_addr": "192.0.2.7"})
    assert login.status_code == 201 and login.json()["action"] == "console.login_failed"
    assert _verify(records)["ok"] is True


def test_heads_endpoint_gives_the_key_to_anchor(records: Records) -> None:
    records.audit.sign_head(records.signer, "daily")
    data = call(records.store, "GET", "/api/v1/audit/heads").json()
    assert data["key_id"] == records.signer.key_id and "BEGIN PUBLIC KEY" in data["public_key"]
    assert data["heads"][0]["seq"] == 6 and data["heads"][0]["reason"] == "daily"
    assert records.sign_head_if_moved("daily") is None  # nothing new: not signed again


def test_daemon_head_signer_thread_signs(records: Records) -> None:
    import threading
    import time

    from appliance.records import sign_heads_loop

    stop = threading.Event()
    worker = threading.Thread(target=sign_heads_loop, args=(records, stop), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while not records.audit.heads() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(10)
    heads = records.audit.heads()
    assert [h["reason"] for h in heads] == ["daily"] and heads[0]["seq"] == 6


def test_cli_without_a_daemon_appends_and_verifies_locally(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from appliance.cli.audit_record import key_change
    from appliance.cli.main import app
    from appliance.settings import Settings

    key_change(Settings(data_dir=tmp_path), "keys.create", "key_1", "ci")  # no stack runs
    runner = CliRunner()
    listed = runner.invoke(app, ["audit", "list", "--json", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)
    assert [(e["action"], e["subject"]) for e in entries] == [
        ("audit.key.create", entries[0]["subject"]), ("keys.create", "key:key_1")]
    assert entries[1]["actor"].startswith("cli:")
    ok = runner.invoke(app, ["audit", "verify", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0 and "audit chain OK: 2 entries" in ok.output
    records = open_records(tmp_path)
    _sql(records, "UPDATE audit_log SET details = '{\"name\":\"x\"}' WHERE seq = 2")
    records.store.close()
    broken = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(tmp_path)])
    assert broken.exit_code == 1
    assert json.loads(broken.output)["first_broken"]["seq"] == 2
