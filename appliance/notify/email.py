"""E-mail through the site's SMTP relay: plain text plus HTML, STARTTLS and login when
configured (``smtps://`` for TLS from the first byte)."""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import DeliveryError
from appliance.notify.message import headline, lines, text
from appliance.settings import Destination


def compose(dest: Destination, message: dict[str, Any]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = headline(message)
    mail["From"] = dest.mail_from or "tracehold@localhost"
    mail["To"] = ", ".join(dest.mail_to)
    mail.set_content(text(message))
    rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}"
                   "</td></tr>" for k, v in lines(message))
    mail.add_alternative(f"<html><body><h3>{html.escape(headline(message))}</h3>"
                         f"<table>{rows}</table></body></html>", subtype="html")
    return mail


def send(dest: Destination, password: str | None, message: dict[str, Any], *,
         timeout: float) -> None:
    parts = urlsplit(dest.url)
    host = parts.hostname or "localhost"
    tls = ssl.create_default_context(cafile=str(dest.ca_file) if dest.ca_file else None)
    what = f"e-mail {dest.name} via {host}"
    try:
        if parts.scheme == "smtps":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout,
                                                  context=tls)
        else:
            smtp = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
        with smtp:
            if dest.starttls:
                smtp.starttls(context=tls)
            if dest.username:
                smtp.login(dest.username, password or "")
            # all recipients refused raises; some refused is not retried, or the
            # others would get the mail twice
            smtp.send_message(compose(dest, message))
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}: {exc}") from exc
