"""Console users: basic-auth accounts checked by Envoy's console listener.

Envoy's basic_auth filter accepts htpasswd lines in the ``{SHA}`` form only
(base64 of an unsalted SHA-1), so that is what the 0600 secrets file keeps,
never the password. Unsalted SHA-1 is weak for passwords people choose, which
is why Tracehold generates them (144 random bits) and shows each once.
Envoy forwards the authenticated name to Streamlit in ``appliance.headers.USER_HEADER``.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from appliance.errors import ConfigError, Conflict, InvalidRequest, NotFound
from appliance.secrets import SecretsFile

FIRST_USER = "admin"
_KEY = "console_users"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass
class ConsoleUser:
    name: str
    password_sha1: str  # base64 of SHA-1, the htpasswd {SHA} form
    created_at: str

    @property
    def htpasswd(self) -> str:
        return f"{self.name}:{{SHA}}{self.password_sha1}"

    def public(self) -> dict[str, str]:
        return {"name": self.name, "created_at": self.created_at}


def sha1_b64(password: str) -> str:
    return base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


class ConsoleUsers:
    """Reads and rewrites the console users kept in the secrets file."""

    def __init__(self, secrets_path: Path) -> None:
        self.file = SecretsFile(secrets_path)

    def list(self) -> list[ConsoleUser]:
        # Unchecked JSON: anything but a list of user mappings fails in
        # ConsoleUser(**u) with the TypeError reported below.
        raw = cast(Iterable[Mapping[str, str]], self.file.load().extra.get(_KEY, []))
        try:
            return [ConsoleUser(**u) for u in raw]
        except TypeError as exc:
            raise ConfigError(f"console users in {self.file.path} are unreadable: {exc}") from exc

    # `builtins.list`: in the class body, `list` is the method above.
    def _save(self, users: builtins.list[ConsoleUser]) -> None:
        data = self.file.load()
        data.extra[_KEY] = [asdict(u) for u in users]
        self.file.save(data)

    def create(self, name: str) -> str:
        """Add a user; returns the generated password (shown once, never stored)."""
        if not _NAME.fullmatch(name):
            raise InvalidRequest("a user name is 1 to 64 letters, digits or . _ @ -, "
                              "starting with a letter or digit")
        users = self.list()
        if any(u.name == name for u in users):
            raise Conflict(f"console user {name!r} already exists")
        password = secrets.token_urlsafe(18)
        users.append(ConsoleUser(name, sha1_b64(password),
                                 datetime.now(UTC).isoformat(timespec="seconds")))
        self._save(users)
        return password

    def delete(self, name: str) -> ConsoleUser:
        users = self.list()
        for user in users:
            if user.name == name:
                self._save([u for u in users if u.name != name])
                return user
        raise NotFound(f"no console user {name!r}")

    def ensure_first(self) -> str | None:
        """First start: the ``admin`` user, so the console is usable. Its password if new."""
        data = self.file.load()
        if _KEY in data.extra:  # users were set up once; deleting them all is a choice
            return None
        return self.create(FIRST_USER)

    def htpasswd_lines(self) -> builtins.list[str]:
        return [u.htpasswd for u in self.list()]


def locked_line() -> str:
    """With no users the filter still needs one: a name and password nobody knows."""
    return f"locked-{secrets.token_hex(8)}:{{SHA}}{sha1_b64(secrets.token_urlsafe(32))}"
