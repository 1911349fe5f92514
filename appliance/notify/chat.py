"""Chat through a Slack-compatible incoming webhook: ``{"text": ...}`` with Markdown,
the payload Slack, Mattermost and Rocket.Chat incoming webhooks all accept. The hook's
URL carries its token: stored with `tracehold notify secret NAME` it stays out of the
settings (and replaces their ``url``); it is never logged."""

from __future__ import annotations

from typing import Any

from appliance.notify import http
from appliance.notify.message import headline, lines
from appliance.settings import Destination


def payload(message: dict[str, Any]) -> dict[str, Any]:
    """Plain lines with a bare link: Slack's ``*bold*`` and Mattermost's ``**bold**``
    differ, a bare URL is linked by all three."""
    return {"text": "\n".join([headline(message),
                               *(f"{k}: {v}" for k, v in lines(message))]),
            "username": "Tracehold"}


def send(dest: Destination, message: dict[str, Any], *, url: str, timeout: float) -> None:
    http.post(url, what=f"chat {dest.name}", timeout=timeout, ca_file=dest.ca_file,
              json=payload(message))
