"""The CLI's way to the daemon API: the daemon owns DuckDB, so case, change and audit
commands go through it. An error body's ``type`` comes back as the same exception
class the daemon raised (``errors.from_type``), with the daemon's reason; a daemon
that does not answer is ``DaemonUnavailable``."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Any

from appliance import errors
from appliance.headers import USER_HEADER

if TYPE_CHECKING:
    import httpx

    from appliance.settings import Settings


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def error_from(r: httpx.Response) -> errors.TraceholdError:
    try:
        body = r.json()
        reason, type_ = body["error"], body.get("type")
    except (ValueError, KeyError, TypeError):
        reason, type_ = r.text[:500] or r.reason_phrase, None
    return errors.from_type(type_, r.status_code)(f"{reason} (HTTP {r.status_code})")


class DaemonClient:
    def __init__(self, settings: Settings, actor: str | None = None,
                 timeout: float = 120) -> None:
        self.base = f"http://127.0.0.1:{settings.ports.daemon}"
        self.headers = {USER_HEADER: actor or cli_actor()}
        self.timeout = timeout

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        import httpx  # loaded by the commands that talk to the daemon, not by every one

        try:
            r = httpx.request(method, self.base + path, headers=self.headers,
                              timeout=self.timeout, trust_env=False, **kw)
        except httpx.TransportError as exc:
            raise errors.DaemonUnavailable(
                f"the Tracehold daemon does not answer at {self.base} ({exc}); "
                "is the stack up? (`tracehold up --detach`)") from exc
        if r.status_code >= 400:
            raise error_from(r)
        return r

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()
