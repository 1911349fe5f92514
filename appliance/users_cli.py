"""`tracehold users ...`: console users (basic auth at Envoy's console listener).

Registered on the main CLI by ``register``; a password is printed once, at
creation, and a running Envoy applies a change within a second or two (it
watches its listener file).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from appliance.console_users import FIRST_USER, ConsoleUsers
from appliance.settings import Settings

users_app = typer.Typer(no_args_is_help=True,
                        help="Console users (basic auth; passwords shown once).")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="TRACEHOLD_DATA_DIR",
                 help="Data folder (default ~/.tracehold)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _settings(data_dir: Path | None) -> Settings:
    from appliance.cli import current_settings

    return current_settings(data_dir)


def apply(s: Settings) -> None:
    """Rewrite Envoy's watched listener file if a stack has been set up here."""
    from appliance.secrets import SecretsFile
    from appliance.stack import render

    if render.envoy_dir(s).exists():
        render.write_listeners(s, SecretsFile(s.secrets_file).load().api_keys)


def ensure_first_user(s: Settings, echo: Callable[[str], object]) -> None:
    """At first start: create ``admin`` and print its password once."""
    password = ConsoleUsers(s.secrets_file).ensure_first()
    if password is not None:
        echo(f"Console user {FIRST_USER!r}, password (shown once): {password}")


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="Login name")],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a console user; the generated password is printed once."""
    from appliance.cli import emit

    s = _settings(data_dir)
    password = ConsoleUsers(s.secrets_file).create(name)
    apply(s)
    emit({"name": name, "password": password}, as_json,
         [f"user:     {name}", f"password: {password}", "(shown once; store it now)"])


@users_app.command("list")
def users_list(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List console users (names and creation times; never passwords)."""
    from appliance.cli import emit

    users = [u.public() for u in ConsoleUsers(_settings(data_dir).secrets_file).list()]
    emit(users, as_json, [f"{u['name']:24} created {u['created_at']}" for u in users])


@users_app.command("delete")
def users_delete(
    name: Annotated[str, typer.Argument(help="Login name")],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a console user; Envoy refuses it within a second or two."""
    from appliance.cli import emit

    s = _settings(data_dir)
    user = ConsoleUsers(s.secrets_file).delete(name)
    apply(s)
    emit(user.public(), as_json, [f"deleted {user.name}"])
