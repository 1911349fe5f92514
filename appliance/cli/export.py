"""`tracehold verify-export FILE`: offline, no daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.output import DataDir, JsonOpt, emit
from appliance.errors import TraceholdError


def verify_export_cmd(
    file: Annotated[Path, typer.Argument(help="The export zip")],
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="The appliance's public key PEM, to pin the signer")] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a case export offline: every file's hash, the signature, the audit chain proof."""
    from appliance.export.verify import verify_export
    from appliance.settings import resolve

    # --data-dir (given, not defaulted) pins the signer to that appliance's public key
    if public_key is None and data_dir is not None:
        public_key = resolve(data_dir).audit_public_key_file
        if not public_key.exists():
            raise TraceholdError(f"no public key at {public_key}; pass --public-key")
    trusted = public_key.read_bytes() if public_key else None
    result = verify_export(file, trusted)
    lines = [f"{file}: {'OK' if result['ok'] else 'FAILED'}"]
    if result["ok"]:
        chain = result["chain"]
        lines += [f"  case {result['case_id']}, export {result['export_id']}",
                  f"  {result['files_checked']} files match the signed manifest "
                  f"(key {result['key_id']})",
                  f"  audit proof: {chain['entries']} case entries in a {chain['segment']}-entry "
                  f"segment up to signed head #{chain['head']['seq']}"]
    lines += [f"  FAIL {p}" for p in result["problems"]]
    emit(result, as_json, lines)
    if not result["ok"]:
        raise TraceholdError(f"{file} failed verification: {result['problems'][0]}")
