"""Cases, change events, audit log and export against the running daemon, driven
through the CLI as a user would."""

from __future__ import annotations

import json
import time
import zipfile
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, tracehold
from tests.otlp_payloads import export_request, genai_span

pytestmark = [pytest.mark.stack, pytest.mark.binaries]


def _json(stack: Stack, *args: str) -> Any:
    return json.loads(tracehold(*args, "--json", data_dir=stack.data_dir).stdout)


def _send(stack: Stack, service: str, version: str) -> str:
    req = export_request(service, 0, spans=[
        genai_span(**{"tracehold.prompt.template.version": version}) for _ in range(2)])
    r = httpx.post(f"{stack.endpoints['otlp_http']}/v1/traces",
                   content=req.SerializeToString(), timeout=10, trust_env=False,
                   headers={"Content-Type": "application/x-protobuf", "X-API-Key": stack.key})
    assert r.status_code == 200, r.text
    return req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()


def test_case_lifecycle_export_and_audit_through_the_cli(stack: Stack, tmp_path: Any) -> None:
    service = f"casework-{int(time.time())}"
    _send(stack, service, "v6")
    assert stack.wait_stored(service, 2) == 2
    trace_id = _send(stack, service, "v7")
    assert stack.wait_stored(service, 4) == 4

    # the daemon inferred the template change from the spans
    changes = _json(stack, "change", "list", "--service", service)
    assert [(c["kind"], c["from"], c["to"], c["source"]) for c in changes] == [
        ("prompt_template", "v6", "v7", "inferred")]
    manual = _json(stack, "change", "record", "--kind", "deploy", "--service", service,
                   "--to", "build-42")
    assert manual["source"] == "manual" and manual["actor"].startswith("cli:")
    bad = tracehold("change", "record", "--kind", "deploy", "--service", service, "--at",
                    "noon-ish", data_dir=stack.data_dir, check=False)
    assert bad.returncode == 1 and "not an ISO 8601 time" in bad.stderr

    case = _json(stack, "cases", "open", "--service", service, "--failure-type",
                 "prompt_regression", "--trace-id", trace_id)
    case_id = case["id"]
    assert case["deduplicated"] is False
    assert {c["to"] for c in case["context"]["changes"]} == {"v7", "build-42"}
    again = _json(stack, "cases", "open", "--service", service, "--failure-type",
                  "prompt_regression")
    assert again["id"] == case_id and again["deduplicated"] is True

    assert _json(stack, "cases", "assign", case_id, "--to", "ana")["assignee"] == "ana"
    wrong = tracehold("cases", "verify", case_id, "--passed", data_dir=stack.data_dir,
                      check=False)
    assert wrong.returncode == 1 and "cannot become verified" in wrong.stderr
    resolved = _json(stack, "cases", "resolve", case_id, "--root-cause", "template v7",
                     "--fix", "rolled back to v6")
    assert resolved["status"] == "resolved"
    verified = _json(stack, "cases", "verify", case_id, "--passed", "--check",
                     "format_errors=0.01/0.01")
    assert verified["status"] == "verified"
    assert verified["verifications"][0]["checks"][0]["value"] == 0.01
    listed = _json(stack, "cases", "list", "--status", "verified", "--service", service)
    assert [c["id"] for c in listed] == [case_id]

    out = tmp_path / "case.zip"
    tracehold("cases", "export", case_id, "--out", str(out), data_dir=stack.data_dir)
    with zipfile.ZipFile(out) as zf:
        spans = [json.loads(line) for line in zf.read("spans.jsonl").splitlines()]
    assert spans and {s["trace_id"] for s in spans} == {trace_id}
    checked = _json(stack, "verify-export", str(out))  # pinned to the stack's key
    assert checked["ok"] is True and checked["case_id"] == case_id

    # a key change made by the CLI is audited through the daemon
    key = _json(stack, "keys", "create", "--name", "casework-test")
    entries = _json(stack, "audit", "list", "--action", "keys.create", "--limit", "1000")
    assert f"key:{key['id']}" in [e["subject"] for e in entries]
    actions = [e["action"] for e in _json(stack, "audit", "list", "--subject", case_id)]
    assert actions == ["case.open", "case.evidence", "case.assign", "case.resolve",
                       "case.verify", "case.export"]
    result = _json(stack, "audit", "verify")
    assert result["ok"] is True and result["first_broken"] is None
    assert result["signed_heads"] >= 2  # the daemon's first head, and the export's
