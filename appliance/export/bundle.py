"""The one-click case export: a zip an auditor can check offline.

    MANIFEST.json       sha256 and size of every other file, the case and export ids
    MANIFEST.json.sig   Ed25519 signature (base64) over the exact MANIFEST.json bytes
    signing-key.pub.pem the public key (compare its key id with the one anchored outside)
    case.json, timeline.json, rca.json, spans.jsonl (evidence spans by trace id)
    metrics/NN-name.csv + .png   each metric window and its chart
    audit.json          the case's audit entries and the chain proof: the contiguous
                        segment from the case's first entry to a head signed for this
                        export, and the hash of the entry before the segment
    report.pdf, report.html

Order matters: the export's own audit entry is appended first and the head signed
after it, so the export is inside the proof it ships.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import zipfile
from datetime import datetime
from typing import Any

from appliance.audit import chain
from appliance.cases.model import Case
from appliance.export import case_report, charts, html, pdf
from appliance.records import Records
from appliance.times import iso

FORMAT = "tracehold-case-export/1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "MANIFEST.json", "MANIFEST.json.sig", "signing-key.pub.pem"


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _case_entries(records: Records, case_id: str, last_seq: int) -> list[dict[str, Any]]:
    out, after = [], 0
    while True:
        page = records.audit.entries(subject=case_id, after_seq=after, limit=1000)
        out += [e for e in page if e["seq"] <= last_seq]
        if len(page) < 1000:
            return out
        after = page[-1]["seq"]


def _rca(case: Case, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """rca.json: the latest RCA result and its run (evidence, similar cases, model name
    and sha256, explanation), and every run's audit entry; {} before any run."""
    if case.rca is None:
        return {}
    return {"root_cause": case.root_cause, "confidence": case.confidence,
            "hypotheses": [h.model_dump(mode="json") for h in case.hypotheses],
            "suggested_fixes": [f.model_dump(mode="json") for f in case.suggested_fixes],
            "run": case.rca.model_dump(mode="json"),
            "runs": [{"seq": e["seq"], "at": e["ts"], "actor": e["actor"], **e["details"]}
                     for e in entries if e["action"] == "rca.run"]}


def build(records: Records, case_id: str, actor: str) -> tuple[bytes, dict[str, Any]]:
    """The zip's bytes and its manifest; appends the export's audit entry."""
    records.cases.get(case_id)  # NotFound before anything is written
    export_id = "exp_" + secrets.token_hex(5)
    records.audit.append(actor, "case.export", case_id, {"export_id": export_id})
    head = records.audit.sign_head(records.signer, "export")
    case = records.cases.get(case_id)
    entries = _case_entries(records, case_id, head["seq"])
    first = entries[0]["seq"]
    proof = {"algorithm": chain.ALGORITHM, "case_id": case_id,
             "entries": entries, "prev_hash": records.audit.hash_of(first - 1),
             "segment": records.audit.between(first, head["seq"]), "head": head}

    files: dict[str, bytes] = {
        "case.json": _json(case.model_dump(mode="json", exclude={"timeline"})),
        "timeline.json": _json([e.model_dump(mode="json") for e in case.timeline or []]),
        "rca.json": _json(_rca(case, entries)),
        "audit.json": _json(proof),
    }
    lines = [json.dumps(span, ensure_ascii=False, default=_default)
             for trace_id in case.trace_ids for span in records.store.trace(trace_id)]
    files["spans.jsonl"] = ("\n".join(lines) + ("\n" if lines else "")).encode()
    pictures = []
    for i, window in enumerate(case.context.metric_windows if case.context else [], 1):
        name = f"metrics/{i:02d}-{charts.slug(window.name or window.query, 'metric')}"
        files[f"{name}.csv"] = charts.window_csv(window)
        files[f"{name}.png"] = png = charts.window_png(window, case.onset_at)
        pictures.append((f"{window.name or ''} {window.query}".strip(), png))
    report = case_report.build(case, pictures, export_id, head)
    files["report.pdf"] = pdf.render(report)
    files["report.html"] = html.render(report).encode()

    manifest = {"format": FORMAT, "export_id": export_id, "case_id": case_id,
                "created_at": head["signed_at"], "created_by": actor,
                "key_id": records.signer.key_id,
                "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                          for name, data in sorted(files.items())}}
    manifest_bytes = _json(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest_bytes)
        zf.writestr(SIGNATURE, records.signer.sign(manifest_bytes) + "\n")
        zf.writestr(PUBLIC_KEY, records.signer.public_pem)
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
    return buf.getvalue(), manifest
