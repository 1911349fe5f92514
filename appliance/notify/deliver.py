"""One message to one destination, whatever its kind."""

from __future__ import annotations

from typing import Any

from appliance.errors import ConfigError
from appliance.notify import chat, email, webhook
from appliance.settings import Destination


def deliver(dest: Destination, secret: str | None, message: dict[str, Any], *, now: float,
            delivery: str, timeout: float) -> None:
    """Send ``message``; ``secret`` is the destination's entry in the secrets file
    (webhook signing key, SMTP password, or a chat hook's whole URL, which then replaces
    the ``url`` setting). Raises DeliveryError or ConfigError."""
    if dest.kind == "webhook":
        if not secret:
            raise ConfigError(f"webhook {dest.name} has no signing key in the secrets file "
                              f"(`tracehold notify secret {dest.name}`)")
        webhook.send(dest, secret, message, now=now, delivery=delivery, timeout=timeout)
    elif dest.kind == "chat":  # a hook URL carries its token: kept as the secret, if given
        chat.send(dest, message, url=secret or dest.url, timeout=timeout)
    else:
        email.send(dest, secret, message, timeout=timeout)
