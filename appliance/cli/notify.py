"""`tracehold notify ...`: test a destination, store its secret, list the outbox and
retry dead letters (the last two through the daemon, which owns the outbox)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from appliance.cli.client import DaemonClient
from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.errors import InvalidRequest

app = typer.Typer(no_args_is_help=True, help="Notifications: webhook, chat, e-mail and "
                                             "ticket trackers.")


@app.command()
def test(destination: Annotated[str, typer.Argument(help="A destination's name")],
         data_dir: DataDir = None) -> None:
    """Send a test message to DESTINATION now (not through the outbox)."""
    from appliance.notify.service import send_test

    send_test(settings(data_dir), destination)
    typer.echo(f"test message sent to {destination}")


@app.command()
def secret(name: Annotated[str, typer.Argument(help="A destination's name, github or jira")],
           value: Annotated[str | None, typer.Option(
               "--value", help="The secret (default: read from stdin, or asked for)")] = None,
           data_dir: DataDir = None) -> None:
    """Store a webhook key, SMTP password or tracker token in the 0600 secrets file."""
    import sys

    from appliance.notify.config import set_secret

    if value is None:
        value = (sys.stdin.readline().strip() if not sys.stdin.isatty()
                 else typer.prompt(f"secret for {name}", hide_input=True))
    if not value:
        raise InvalidRequest("the secret is empty")
    set_secret(settings(data_dir), name, value)
    typer.echo(f"secret for {name} stored in the secrets file")


def _line(m: dict[str, Any]) -> str:
    when = m["sent_at"] or m["last_try_at"] or m["created_at"]
    error = f"  {m['last_error'][:80]}" if m["last_error"] and m["state"] != "sent" else ""
    return (f"{m['id']:>6} {m['state']:8} {m['destination']:16} {m['event']:10} "
            f"{m['case_id']:14} tries {m['tries']:>2}  {when}{error}")


@app.command("list")
def list_messages(
    state: Annotated[str | None, typer.Option(help="pending, sent or dead")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """The outbox, newest first, and each destination's health."""
    params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    data = DaemonClient(settings(data_dir)).json("GET", "/api/v1/notify/outbox", params=params)
    lines = [f"{d['destination']:16} {'FAILING' if d['failing'] else 'ok':8} "
             f"pending {d['pending']}  dead {d['dead']}  last sent {d['last_sent_at'] or '-'}"
             + (f"  {d['last_error'][:100]}" if d["failing"] and d["last_error"] else "")
             for d in data["destinations"]]
    lines += [_line(m) for m in data["messages"]] or ["outbox is empty"]
    emit(data, as_json, lines)


@app.command()
def retry(message_id: Annotated[int | None, typer.Argument(help="A dead letter's id")] = None,
          all_dead: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
          data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Send a dead letter (or --all of them) again."""
    if (message_id is None) == (not all_dead):
        raise InvalidRequest("give one dead letter's id or --all (one of the two)")
    data = DaemonClient(settings(data_dir)).json("POST", "/api/v1/notify/retry",
                                                 json={"id": message_id})
    emit(data, as_json, [f"{data['retried']} dead letter(s) back in the outbox"])


def ticket(case_id: str,
           to: Annotated[str, typer.Option("--to", help="github or jira")],
           data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Create the case's ticket in GitHub or Jira (the one it has, if it has one); its
    URL is stored with the case and audited. (`tracehold cases ticket`)"""
    if to not in ("github", "jira"):
        raise InvalidRequest(f"--to is github or jira, not {to!r}")
    data = DaemonClient(settings(data_dir)).json("POST", f"/api/v1/cases/{case_id}/ticket",
                                                 json={"to": to})
    said = "already had" if data["existing"] else "created"
    emit(data, as_json, [f"{case_id} {said} ticket {data['ref']} in {data['tracker']}: "
                         f"{data['url']}"])
