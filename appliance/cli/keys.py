"""`tracehold keys ...`: API keys for the OTLP and query listeners (Envoy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from appliance.cli.output import DataDir, JsonOpt, emit, settings

if TYPE_CHECKING:
    from appliance.secrets import SecretsFile
    from appliance.settings import Settings

app = typer.Typer(no_args_is_help=True, help="API keys for the OTLP and query listeners.")


def apply_keys(s: Settings, secrets: SecretsFile) -> None:
    """A running Envoy watches its listener file; rewriting it applies the change."""
    from appliance.stack import render

    if render.envoy_dir(s).exists():
        render.write_listeners(s, secrets.load().api_keys)


@app.command("list")
def keys_list(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List API keys (masked)."""
    from appliance.secrets import SecretsFile

    keys = [k.public() for k in SecretsFile(settings(data_dir).secrets_file).load().api_keys]
    emit(keys, as_json, [f"{k['id']:14} {k['name']:20} {k['key']:18} "
                         f"{'active' if k['active'] else 'revoked ' + str(k['revoked_at'])}"
                         for k in keys])


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for")],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; it is printed once and never shown again."""
    from appliance.cli.audit_record import key_change
    from appliance.secrets import SecretsFile

    s = settings(data_dir)
    secrets = SecretsFile(s.secrets_file)
    key = secrets.create(name)
    apply_keys(s, secrets)
    key_change(s, "keys.create", key.id, key.name)  # via the daemon if it runs
    emit({"id": key.id, "key": key.key}, as_json, [f"id:  {key.id}", f"key: {key.key}",
                                                 "(shown once; store it now)"])


@app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Revoke a key; Envoy refuses it within a second or two."""
    from appliance.cli.audit_record import key_change
    from appliance.secrets import SecretsFile

    s = settings(data_dir)
    secrets = SecretsFile(s.secrets_file)
    key = secrets.revoke(key_id)
    apply_keys(s, secrets)
    key_change(s, "keys.revoke", key.id, key.name)
    emit(key.public(), as_json, [f"revoked {key.id} ({key.name})"])
