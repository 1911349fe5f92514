"""`tracehold audit list|verify|heads`: through the daemon when it runs, else straight
from the DuckDB file (no other process holds it then)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from appliance.cli.audit_record import daemon_running
from appliance.cli.client import DaemonClient
from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.errors import TraceholdError

if TYPE_CHECKING:
    from appliance.records import Records
    from appliance.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")


def _ask(s: Settings, path: str, params: dict[str, Any],
         local: Callable[[Records], Any]) -> Any:
    if daemon_running(s):
        return DaemonClient(s).json("GET", path, params=params)
    from appliance.records import opened

    with opened(s) as records:
        return local(records)


@app.command("list")
def list_entries(
    subject: Annotated[str | None, typer.Option(help="e.g. a case id")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. case.assign")] = None,
    after: Annotated[int, typer.Option(help="Entries after this sequence number")] = 0,
    limit: Annotated[int, typer.Option()] = 100,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Browse audit entries in chain order."""
    s = settings(data_dir)
    params = {k: v for k, v in (("subject", subject), ("action", action), ("after", after),
                                ("limit", limit)) if v is not None}
    data = _ask(s, "/api/v1/audit", params, lambda r: {
        "entries": r.audit.entries(subject, action, after, limit)})
    emit(data["entries"], as_json,
         [f"{e['seq']:>6} {e['ts']}  {e['actor']:24} {e['action']:18} {e['subject']}"
          for e in data["entries"]] or ["no entries"])


@app.command()
def verify(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Recompute the hash chain and check the signed heads; names the first broken entry."""
    s = settings(data_dir)
    result = _ask(s, "/api/v1/audit/verify", {},
                  lambda r: r.audit.verify(r.signer.public_pem))
    head = result["head"]
    lines = [f"audit chain {'OK' if result['ok'] else 'BROKEN'}: {result['entries']} entries "
             f"verified, head #{head['seq']} {head['hash']}",
             f"signed heads: {result['signed_heads']}"]
    if result["last_signed_head"]:
        h = result["last_signed_head"]
        lines.append(f"last signed head: #{h['seq']} at {h['signed_at']} by {h['key_id']}")
    if result["first_broken"]:
        lines.append(f"first broken entry: {result['first_broken']['seq']}: "
                     f"{result['first_broken']['reason']}")
    emit(result, as_json, lines)
    if not result["ok"]:
        raise TraceholdError(f"audit chain broken at entry {result['first_broken']['seq']}: "
                             f"{result['first_broken']['reason']}")


@app.command()
def heads(limit: Annotated[int, typer.Option()] = 30,
          data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Signed chain heads (anchor them outside the host) and the public key."""
    s = settings(data_dir)
    data = _ask(s, "/api/v1/audit/heads", {"limit": limit}, lambda r: {
        "key_id": r.signer.key_id, "public_key": r.signer.public_pem.decode(),
        "heads": r.audit.heads(limit)})
    emit(data, as_json, [f"key {data['key_id']}"] + [
        f"#{h['seq']} {h['hash']} {h['signed_at']} ({h['reason']}) {h['signature']}"
        for h in data["heads"]])
