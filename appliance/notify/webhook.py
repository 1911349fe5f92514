"""The generic webhook: the message as a JSON body, signed with HMAC-SHA256.

The signature covers the timestamp and the body (``<timestamp>.<body>``), so a receiver
that checks it (``verify``) knows the body is ours and refuses a captured request
replayed later than its tolerance. ``X-Tracehold-Delivery`` names the outbox message: a
receiver that remembers it can also drop a retried one it already took.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from appliance.errors import Forbidden
from appliance.notify import http
from appliance.settings import Destination

SIGNATURE = "X-Tracehold-Signature"
TIMESTAMP = "X-Tracehold-Timestamp"
DELIVERY = "X-Tracehold-Delivery"
TOLERANCE_S = 300


def signature(key: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def body_of(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def headers(key: str, body: bytes, now: float, delivery: str) -> dict[str, str]:
    ts = int(now)
    return {"Content-Type": "application/json", TIMESTAMP: str(ts),
            SIGNATURE: signature(key, ts, body), DELIVERY: delivery,
            "User-Agent": "Tracehold-Notify/1"}


def send(dest: Destination, key: str, message: dict[str, Any], *, now: float,
         delivery: str, timeout: float) -> None:
    body = body_of(message)
    http.post(dest.url, what=f"webhook {dest.name}", timeout=timeout, ca_file=dest.ca_file,
              content=body, headers=headers(key, body, now, delivery))


def verify(key: str, received: Mapping[str, str], body: bytes, now: float,
           tolerance_s: float = TOLERANCE_S) -> None:
    """What a receiver runs: raises ``Forbidden`` unless the signature is ours and the
    timestamp is within ``tolerance_s`` of ``now`` (a replay older than that fails).
    ``received`` is the request's headers (any case)."""
    lower = {k.lower(): v for k, v in received.items()}
    try:
        ts = int(lower[TIMESTAMP.lower()])
        given = lower[SIGNATURE.lower()]
    except (KeyError, ValueError) as exc:
        raise Forbidden("missing or malformed signature headers") from exc
    if not hmac.compare_digest(given, signature(key, ts, body)):
        raise Forbidden("signature does not match")
    if abs(now - ts) > tolerance_s:
        raise Forbidden(f"timestamp {ts} is {now - ts:.0f}s from now (tolerance "
                        f"{tolerance_s:.0f}s): replay refused")
