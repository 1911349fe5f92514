"""The CLI's way to the daemon API: the daemon owns DuckDB, so case, change and
audit commands go through it. Errors come back as our exception types with the
daemon's reason; a daemon that does not answer is ``DaemonUnavailable``."""

from __future__ import annotations

import getpass
from typing import Any

import httpx

from appliance import errors
from appliance.api.body import USER_HEADER
from appliance.settings import Settings

_BY_STATUS: dict[int, type[errors.TraceholdError]] = {
    400: errors.InvalidRequest, 403: errors.Forbidden, 404: errors.NotFound,
    409: errors.Conflict, 413: errors.ContentTooLarge, 503: errors.StoreUnavailable}


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


class DaemonClient:
    def __init__(self, settings: Settings, actor: str | None = None,
                 timeout: float = 120) -> None:
        self.base = f"http://127.0.0.1:{settings.ports.daemon}"
        self.headers = {USER_HEADER: actor or cli_actor()}
        self.timeout = timeout

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = httpx.request(method, self.base + path, headers=self.headers,
                              timeout=self.timeout, trust_env=False, **kw)
        except httpx.TransportError as exc:
            raise errors.DaemonUnavailable(
                f"the Tracehold daemon does not answer at {self.base} ({exc}); "
                "is the stack up? (`tracehold up --detach`)") from exc
        if r.status_code >= 400:
            try:
                reason = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                reason = r.text[:500] or r.reason_phrase
            raise _BY_STATUS.get(r.status_code, errors.TraceholdError)(
                f"{reason} (HTTP {r.status_code})")
        return r

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()
