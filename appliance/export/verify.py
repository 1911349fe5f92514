"""Offline check of a case export: no daemon, no network, only the zip (and, to pin
the signer, the appliance's public key anchored elsewhere).

Checks, each failure named: the manifest's signature and key id; every listed
file's sha256 and size; no file unlisted; the audit chain proof (the segment
recomputes from the hash before it to the signed head, the head's signature
verifies, the case's entries are exactly the segment's entries for the case).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from appliance.audit import chain, signing
from appliance.export.bundle import FORMAT, MANIFEST, PUBLIC_KEY, SIGNATURE


def verify_export(path: Path, trusted_public_pem: bytes | None = None) -> dict[str, Any]:
    problems: list[str] = []
    result: dict[str, Any] = {"ok": False, "file": str(path), "problems": problems}
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        problems.append(f"{path}: not a readable zip ({exc})")
        return result
    with zf:
        names = set(zf.namelist())
        missing = [n for n in (MANIFEST, SIGNATURE, PUBLIC_KEY) if n not in names]
        if missing:
            problems.append(f"missing {', '.join(missing)}")
            return result
        manifest_bytes, public_pem = zf.read(MANIFEST), zf.read(PUBLIC_KEY)
        try:
            manifest = json.loads(manifest_bytes)
            files: dict[str, dict[str, Any]] = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{MANIFEST}: unreadable ({exc})")
            return result
        result.update(case_id=manifest.get("case_id"), export_id=manifest.get("export_id"),
                      key_id=_key_id(public_pem, problems), files_checked=0)
        if manifest.get("format") != FORMAT:
            problems.append(f"{MANIFEST}: format {manifest.get('format')!r} is not {FORMAT}")
        _check_signer(manifest, public_pem, trusted_public_pem, result["key_id"], problems)
        signature = zf.read(SIGNATURE).decode(errors="replace")
        signature = signature.removesuffix("\n")  # as written; any other change fails
        if not signing.verify(public_pem, manifest_bytes, signature):
            problems.append(f"{MANIFEST}: the signature in {SIGNATURE} does not verify "
                            "(the manifest or the signature was changed)")
        for name, want in sorted(files.items()):
            if name not in names:
                problems.append(f"{name}: listed in the manifest but not in the zip")
                continue
            data = zf.read(name)
            if hashlib.sha256(data).hexdigest() != want.get("sha256"):
                problems.append(f"{name}: sha256 does not match the manifest (file changed)")
            elif len(data) != want.get("bytes"):
                problems.append(f"{name}: size does not match the manifest")
            result["files_checked"] += 1
        for name in sorted(names - set(files) - {MANIFEST, SIGNATURE, PUBLIC_KEY}):
            problems.append(f"{name}: in the zip but not in the manifest")
        if "audit.json" in names:
            result["chain"] = _check_proof(zf.read("audit.json"), public_pem,
                                           manifest.get("case_id"), problems)
    result["ok"] = not problems
    return result


def _key_id(public_pem: bytes, problems: list[str]) -> str | None:
    try:
        key = signing.load_public(public_pem)
    except Exception as exc:  # any malformed key is a finding, not a crash
        problems.append(f"{PUBLIC_KEY}: not an Ed25519 public key ({exc})")
        return None
    if signing.pem(key) != public_pem:  # the parser tolerates edits the file must not have
        problems.append(f"{PUBLIC_KEY}: not the PEM the appliance wrote (edited)")
    return signing.key_id(public_pem)


def _check_signer(manifest: dict[str, Any], public_pem: bytes, trusted: bytes | None,
                  key_id: str | None, problems: list[str]) -> None:
    if key_id is not None and manifest.get("key_id") != key_id:
        problems.append(f"{MANIFEST}: key_id {manifest.get('key_id')} is not the included "
                        f"key's {key_id}")
    if trusted is not None and signing.key_id(trusted) != key_id:
        problems.append(f"{PUBLIC_KEY}: not the trusted key ({signing.key_id(trusted)}): "
                        "signed by someone else")


def _check_proof(raw: bytes, public_pem: bytes, case_id: str | None,
                 problems: list[str]) -> dict[str, Any]:
    try:
        proof = json.loads(raw)
        segment, entries, head = proof["segment"], proof["entries"], proof["head"]
        first = int(segment[0]["seq"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        problems.append(f"audit.json: unreadable chain proof ({exc})")
        return {"ok": False}
    check = chain.check_chain(segment, proof.get("prev_hash") or "", first)
    if not check.ok:
        problems.append(f"audit.json: chain segment broken at {check.reason}")
    elif (check.head_seq, check.head_hash) != (head.get("seq"), head.get("hash")):
        problems.append(f"audit.json: the segment ends at entry {check.head_seq}, not at the "
                        f"signed head {head.get('seq')}")
    payload = chain.head_payload(head.get("seq"), head.get("hash", ""),
                                 head.get("signed_at", ""), head.get("key_id", ""))
    if not signing.verify(public_pem, payload, head.get("signature", "")):
        problems.append("audit.json: the signed head's signature does not verify")
    by_seq = {int(e["seq"]): e for e in segment}
    own = [e for e in segment if e.get("subject") == case_id]
    if [int(e["seq"]) for e in entries] != [int(e["seq"]) for e in own]:
        problems.append("audit.json: the case's entries are not exactly the segment's entries "
                        f"for {case_id}")
    elif any(by_seq[int(e["seq"])] != e for e in entries):
        problems.append("audit.json: a case entry differs from the chain segment")
    return {"ok": check.ok, "entries": len(entries), "segment": len(segment),
            "first_seq": first, "head": {k: head.get(k) for k in ("seq", "hash", "signed_at",
                                                                 "key_id")}}
