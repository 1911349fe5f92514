"""One HTTP POST to a configured destination, its failures as ``DeliveryError``.

No proxy from the environment applies (``trust_env=False``): every destination is a
URL the operator set, reached directly. A private CA is trusted by ``ca_file``."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any

import httpx

from appliance.errors import DeliveryError

_ANSWER_CHARS = 300


@functools.lru_cache(maxsize=16)
def verify_of(ca_file: Path | None) -> ssl.SSLContext:
    """The TLS context, built once per CA file: loading the CA bundle costs ~0.2 s."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def post(url: str, *, what: str, timeout: float, ca_file: Path | None = None,
         content: bytes | None = None, json: Any = None,
         headers: dict[str, str] | None = None, auth_hint: str = "") -> httpx.Response:
    """POST; a transport failure or a non-2xx answer raises ``DeliveryError`` naming
    ``what`` and the answer (never the headers: they may carry a token); a 401/403 adds
    ``auth_hint`` (what to fix)."""
    try:
        with httpx.Client(timeout=timeout, trust_env=False, verify=verify_of(ca_file)) as c:
            r = c.post(url, content=content, json=json, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if r.status_code in (401, 403) and auth_hint:
        raise DeliveryError(f"{what} refused our credentials (HTTP {r.status_code}: "
                            f"{r.text[:_ANSWER_CHARS].strip() or r.reason_phrase}); {auth_hint}")
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"{what} answered HTTP {r.status_code}: "
                            f"{r.text[:_ANSWER_CHARS].strip() or r.reason_phrase}")
    return r
