"""The one-click case export: every file hashed into a signed manifest, verified
offline; any edit to a file, the manifest, the signature or the key fails and is named.
The PDF report renders (pdftoppm)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from appliance.export.bundle import MANIFEST, PUBLIC_KEY, SIGNATURE
from appliance.export.verify import verify_export
from appliance.records import Records
from tests.casework import SetClock, call, case_body, open_records
from tests.otlp_payloads import export_request

OUTPUT = Path("test-output") / "export"


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Records, Path, str]]:
    tmp = tmp_path_factory.mktemp("export")
    records = open_records(tmp)
    store = records.store
    req = export_request("rag-api", 4)
    trace_id = req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    assert call(store, "POST", "/v1/traces", content=req.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    start = int(time.time()) - 3600
    window = {"name": "groundedness p50", "query": 'avg(llm_evaluation_groundedness{svc="rag"})',
              "start": iso(start), "end": iso(start + 3600),
              "points": [[start + 60 * i, 0.9 if i < 40 else 0.45] for i in range(60)]}
    case = call(store, "POST", "/api/v1/cases", json=case_body(
        trace_ids=[trace_id], metric_windows=[window], onset_at=iso(start + 2400))).json()
    case_id = case["id"]
    for method, suffix, body in (
        ("POST", "assign", {"assignee": "ana"}),
        ("POST", "notes", {"text": "Groundedness fell right after the model swap. <b>x</b>"}),
        ("PUT", "rca", {"root_cause": "response model changed to m2", "confidence": 0.8,
                        "hypotheses": [{"rank": 1, "cause": "model swap", "confidence": 0.8,
                                        "evidence_ids": [trace_id]}],
                        "suggested_fixes": [{"title": "pin m1-0613"}]}),
        ("POST", "resolve", {"root_cause": "model swap", "fix_applied": "pinned m1-0613"}),
        ("POST", "verify", {"back_to_baseline": True,
                            "checks": [{"signal": "groundedness", "value": 0.9,
                                        "baseline": 0.88}]}),
    ):
        r = call(store, method, f"/api/v1/cases/{case_id}/{suffix}", json=body,
                 headers={"x-tracehold-user": "ana"})
        assert r.status_code == 200, r.text
    # an unrelated entry in between: the proof's segment must carry it
    call(store, "POST", "/api/v1/changes", json={"kind": "config", "service": "billing"})
    r = call(store, "GET", f"/api/v1/cases/{case_id}/export", headers={"x-tracehold-user": "ana"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    path = tmp / "case.zip"
    path.write_bytes(r.content)
    yield records, path, trace_id
    store.close()


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None],
             add: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = change.get(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def test_every_file_is_hashed_and_the_export_verifies(exported: tuple[Records, Path, str]
                                                     ) -> None:
    records, path, trace_id = exported
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read(MANIFEST))
        for name, meta in manifest["files"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == meta["sha256"]
        case = json.loads(zf.read("case.json"))
        spans = [json.loads(line) for line in zf.read("spans.jsonl").splitlines()]
        proof = json.loads(zf.read("audit.json"))
        rca = json.loads(zf.read("rca.json"))
        csv_name = next(n for n in names if n.endswith(".csv"))
        csv_lines = zf.read(csv_name).decode().splitlines()
    assert names - set(manifest["files"]) == {MANIFEST, SIGNATURE, PUBLIC_KEY}
    for expected in ("case.json", "timeline.json", "spans.jsonl", "rca.json", "audit.json",
                     "report.pdf", "report.html", "metrics/01-groundedness-p50.csv",
                     "metrics/01-groundedness-p50.png"):
        assert expected in manifest["files"], expected
    assert case["id"] == manifest["case_id"] and case["status"] == "verified"
    assert {s["trace_id"] for s in spans} == {trace_id} and len(spans) == 1
    assert rca["root_cause"] == "response model changed to m2" and rca["run"]["runs"] == 1
    assert csv_lines[0] == "unix_seconds,time_utc,value" and len(csv_lines) == 61
    actions = [e["action"] for e in proof["entries"]]
    assert actions == ["case.open", "case.assign", "case.note", "rca.run", "case.resolve",
                       "case.verify", "case.export"]
    assert "change.record" in [e["action"] for e in proof["segment"]]
    assert proof["head"]["seq"] == proof["segment"][-1]["seq"]
    result = verify_export(path, records.signer.public_pem)
    assert result["ok"] is True, result["problems"]
    assert result["files_checked"] == len(manifest["files"])
    assert records.audit.entries(action="case.export")[0]["actor"] == "ana"


def test_editing_any_file_fails_and_names_it(exported: tuple[Records, Path, str],
                                             tmp_path: Path) -> None:
    _, path, _ = exported
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        originals = {n: zf.read(n) for n in names}
    other_key = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for name in names:
        data, mid = originals[name], len(originals[name]) // 2
        edits = [data + b" ", data[:mid] + bytes([data[mid] ^ 1]) + data[mid + 1:]]
        if name == PUBLIC_KEY:
            edits.append(other_key)
        for edited in edits:
            result = verify_export(_rewrite(path, tmp_path / "edited.zip", {name: edited}))
            assert result["ok"] is False, name
            named = result["problems"][0]
            if name in (MANIFEST, SIGNATURE, PUBLIC_KEY):
                assert any(MANIFEST in p or PUBLIC_KEY in p for p in result["problems"])
            else:
                assert named == f"{name}: sha256 does not match the manifest (file changed)"
    # a signature or key edit is named as a signature failure
    flipped = originals[SIGNATURE][:5] + bytes([originals[SIGNATURE][5] ^ 1]) + \
        originals[SIGNATURE][6:]
    result = verify_export(_rewrite(path, tmp_path / "sig.zip", {SIGNATURE: flipped}))
    assert any("does not verify" in p for p in result["problems"]), result["problems"]


def test_a_consistent_forgery_still_fails_on_the_signature(exported: tuple[Records, Path, str],
                                                           tmp_path: Path) -> None:
    _, path, _ = exported
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        case = json.loads(zf.read("case.json"))
    case["resolution"]["root_cause"] = "someone else's fault"
    forged = json.dumps(case).encode()
    manifest["files"]["case.json"] = {"sha256": hashlib.sha256(forged).hexdigest(),
                                      "bytes": len(forged)}
    result = verify_export(_rewrite(path, tmp_path / "forged.zip", {
        "case.json": forged, MANIFEST: json.dumps(manifest, indent=2).encode()}))
    assert result["ok"] is False
    assert result["problems"] == [f"{MANIFEST}: the signature in {SIGNATURE} does not verify "
                                  "(the manifest or the signature was changed)"]


def test_missing_extra_and_foreign_key(exported: tuple[Records, Path, str],
                                       tmp_path: Path) -> None:
    records, path, _ = exported
    gone = verify_export(_rewrite(path, tmp_path / "a.zip", {"spans.jsonl": None}))
    assert gone["problems"] == ["spans.jsonl: listed in the manifest but not in the zip"]
    extra = verify_export(_rewrite(path, tmp_path / "b.zip", {}, add={"note.txt": b"hi"}))
    assert extra["problems"] == ["note.txt: in the zip but not in the manifest"]
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pinned = verify_export(path, other)
    assert pinned["ok"] is False and "not the trusted key" in pinned["problems"][0]
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert "not a readable zip" in verify_export(junk)["problems"][0]


def test_tampered_chain_segment_fails_even_with_matching_hash(exported: tuple[Records, Path, str],
                                                              tmp_path: Path) -> None:
    """audit.json is covered by the manifest; the proof is also checked on its own."""
    from appliance.export.verify import _check_proof

    _, path, _ = exported
    with zipfile.ZipFile(path) as zf:
        proof = json.loads(zf.read("audit.json"))
        public = zf.read(PUBLIC_KEY)
        case_id = json.loads(zf.read(MANIFEST))["case_id"]
    proof["segment"][1]["actor"] = "mallory"
    problems: list[str] = []
    _check_proof(json.dumps(proof).encode(), public, case_id, problems)
    assert problems and "chain segment broken" in problems[0]
    assert f"entry {proof['segment'][1]['seq']}" in problems[0]


def test_verify_export_cli_exit_codes(exported: tuple[Records, Path, str],
                                      tmp_path: Path) -> None:
    _, path, _ = exported
    ok = subprocess.run([sys.executable, "-m", "appliance", "verify-export", str(path),
                         "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    bad = _rewrite(path, tmp_path / "bad.zip", {"timeline.json": b"[]"})
    out = subprocess.run([sys.executable, "-m", "appliance", "verify-export", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "timeline.json: sha256 does not match" in out.stdout
    assert out.stderr.startswith("Error: ") and "Traceback" not in out.stderr


def _render_first_page(pdf: bytes, name: str) -> Image.Image:
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm (Debian poppler-utils) is needed to render the PDF"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{name}.pdf").write_bytes(pdf)
    subprocess.run([pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "2",
                    str(OUTPUT / f"{name}.pdf"), str(OUTPUT / name)], check=True, timeout=120)
    pages = sorted(OUTPUT.glob(f"{name}-*.png"))
    assert pages, "pdftoppm wrote no page"
    return Image.open(pages[0]).convert("L")


def _ink(img: Image.Image) -> float:
    """Share of pixels that are not white."""
    hist = img.histogram()
    return 1 - sum(hist[245:]) / sum(hist)


@pytest.mark.binaries  # pdftoppm (poppler-utils)
def test_case_report_pdf_renders(exported: tuple[Records, Path, str]) -> None:
    _, path, _ = exported
    with zipfile.ZipFile(path) as zf:
        pdf, html = zf.read("report.pdf"), zf.read("report.html").decode()
    page = _render_first_page(pdf, "case-report")
    assert page.size[0] > 300 and 0.01 < _ink(page) < 0.6
    assert "data:image/png;base64," in html and "&lt;b&gt;x&lt;/b&gt;" in html


@pytest.mark.binaries  # pdftoppm (poppler-utils)
def test_compliance_report(tmp_path: Path) -> None:
    clock = SetClock()
    records = open_records(tmp_path, clock, sla_resolve_hours=0.0001)
    store = records.store
    try:
        req = export_request("rag-api", 3)
        for span in req.resource_spans[0].scope_spans[0].spans:
            ev = span.events.add(name="gen_ai.evaluation.result")
            ev.attributes.add(key="gen_ai.evaluation.name").value.string_value = "groundedness"
            ev.attributes.add(key="gen_ai.evaluation.score.value").value.double_value = 0.5
        call(store, "POST", "/v1/traces", content=req.SerializeToString(),
             headers={"Content-Type": "application/x-protobuf"})
        case = call(store, "POST", "/api/v1/cases", json=case_body(
            onset_at="2020-01-01T00:00:00Z")).json()
        clock.advance(0.5)  # open longer than the (tiny, 0.36 s) SLA
        call(store, "POST", f"/api/v1/cases/{case['id']}/resolve",
             json={"root_cause": "r", "fix_applied": "f"})
        period = {"from": "2020-01-01", "to": "2100-01-01"}
        r = call(store, "GET", "/api/v1/report", params=period)
        assert r.status_code == 200, r.text
        rep: dict[str, Any] = r.json()
        assert (rep["requests"]["spans"], rep["requests"]["traces"]) == (3, 3)
        assert rep["quality"] == [{"name": "groundedness", "mean": 0.5, "samples": 3,
                                   "threshold": 0.7, "verdict": "below threshold"}]
        inc = rep["incidents"]
        assert inc["count"] == 1 and inc["sla_breaches"] == 1 and inc["resolved"] == 1
        assert inc["cases"][0]["time_to_detect_s"] > 0 and inc["mttr_s"] > 0
        assert str(records.settings.span_db) in json.dumps(rep["data_residency"])
        assert rep["audit"]["ok"] is True
        assert records.audit.entries(action="report.generate")[0]["details"]["format"] == "json"
        pdf = call(store, "GET", "/api/v1/report", params={**period, "format": "pdf"})
        assert pdf.headers["content-type"] == "application/pdf"
        page = _render_first_page(pdf.content, "compliance-report")
        assert 0.01 < _ink(page) < 0.6
        html = call(store, "GET", "/api/v1/report", params={**period, "format": "html"})
        assert "stayed on this host" in html.text
        for bad in ({"from": "2020-01-01"}, {"from": "x", "to": "2021-01-01"},
                    {"from": "2021-01-01", "to": "2020-01-01"}, {**period, "format": "doc"}):
            r = call(store, "GET", "/api/v1/report", params=bad)
            assert r.status_code == 400 and r.json()["error"], bad
    finally:
        store.close()


def test_zip_is_a_zip_of_sane_size(exported: tuple[Records, Path, str]) -> None:
    _, path, _ = exported
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        assert zf.testzip() is None
