"""`tracehold users ...`: console users (basic auth at Envoy's console listener).

A password is printed once, at
creation, and a running Envoy applies a change within a second or two (it
watches its listener file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.console_users import FIRST_USER, ConsoleUsers

if TYPE_CHECKING:
    from appliance.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Console users (basic auth; passwords shown once).")
UserName = Annotated[str, typer.Argument(help="Login name")]


def apply(s: Settings) -> None:
    """Rewrite Envoy's watched listener file if a stack has been set up here."""
    from appliance.cli.keys import apply_keys
    from appliance.secrets import SecretsFile

    apply_keys(s, SecretsFile(s.secrets_file))


def ensure_first_user(s: Settings, echo: Callable[[str], object]) -> None:
    """At first start: create ``admin`` and print its password once."""
    password = ConsoleUsers(s.secrets_file).ensure_first()
    if password is not None:
        echo(f"Console user {FIRST_USER!r}, password (shown once): {password}")


@app.command("create")
def users_create(
    name: UserName, data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Create a console user; the generated password is printed once."""
    s = settings(data_dir)
    password = ConsoleUsers(s.secrets_file).create(name)
    apply(s)
    emit({"name": name, "password": password}, as_json,
         [f"user:     {name}", f"password: {password}", "(shown once; store it now)"])


@app.command("list")
def users_list(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List console users (names and creation times; never passwords)."""
    users = [u.public() for u in ConsoleUsers(settings(data_dir).secrets_file).list()]
    emit(users, as_json, [f"{u['name']:24} created {u['created_at']}" for u in users])


@app.command("delete")
def users_delete(
    name: UserName, data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Delete a console user; Envoy refuses it within a second or two."""
    s = settings(data_dir)
    user = ConsoleUsers(s.secrets_file).delete(name)
    apply(s)
    emit(user.public(), as_json, [f"deleted {user.name}"])
