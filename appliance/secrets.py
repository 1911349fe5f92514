"""API keys in a 0600 secrets file.

Envoy checks keys itself (its api_key_auth filter compares the presented key
with its configured list), so the rendered Envoy listener file needs the keys
in clear; both that file and this one are written 0600 and never leave the
data folder. A key is shown once, at creation. Several keys can be live at
once so one can be rotated: create the new one, move clients, revoke the old.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import ConfigError, InvalidRequest, NotFound

KEY_PREFIX = "thk_"


@dataclass
class ApiKey:
    id: str
    name: str
    key: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def masked(self) -> str:
        return f"{self.key[:8]}…{self.key[-4:]}"

    def public(self) -> dict[str, object]:
        """What `keys list` shows: never the key itself."""
        return {
            "id": self.id, "name": self.name, "key": self.masked,
            "created_at": self.created_at, "revoked_at": self.revoked_at, "active": self.active,
        }


@dataclass
class Secrets:
    api_keys: list[ApiKey] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def active_keys(self) -> list[ApiKey]:
        return [k for k in self.api_keys if k.active]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SecretsFile:
    """Reads and atomically rewrites the secrets file, always 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Secrets:
        if not self.path.exists():
            return Secrets()
        try:
            raw = json.loads(self.path.read_text())
            keys = [ApiKey(**k) for k in raw.pop("api_keys", [])]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"secrets file {self.path} is unreadable: {exc}") from exc
        return Secrets(api_keys=keys, extra=raw)

    def save(self, data: Secrets) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"api_keys": [asdict(k) for k in data.api_keys], **data.extra}
        write_private(self.path, json.dumps(body, indent=2))

    def ensure_initial_key(self) -> ApiKey | None:
        """First start: make one key so the appliance is usable. Returns it if new."""
        data = self.load()
        if data.api_keys:
            return None
        return self.create("default")

    def create(self, name: str) -> ApiKey:
        if not name or len(name) > 64:
            raise InvalidRequest("a key name must be 1 to 64 characters")
        data = self.load()
        key = ApiKey(
            id="key_" + secrets.token_hex(4), name=name,
            key=KEY_PREFIX + secrets.token_urlsafe(32), created_at=_now(),
        )
        data.api_keys.append(key)
        self.save(data)
        return key

    def revoke(self, key_id: str) -> ApiKey:
        data = self.load()
        for key in data.api_keys:
            if key.id == key_id:
                if key.revoked_at is None:
                    key.revoked_at = _now()
                    self.save(data)
                return key
        raise NotFound(f"no API key with id {key_id!r}")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically (rename in place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
