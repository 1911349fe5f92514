"""The daemon's casework API (cases, changes, audit, report) on behalf of the signed-in user.

Every call carries ``x-tracehold-user`` with the name Envoy authenticated, so the
daemon records that person as the actor of each case action, export and report
(reads that are audited too). A daemon that cannot answer raises ``BackendDown``;
one that refuses (400, 404, 409, 413) raises ``Refused`` with the daemon's own
reason, which the pages show as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from appliance.cases.model import Case
from appliance.console.daemon_client import DAEMON
from appliance.console.panels import BackendDown, BackendError
from appliance.headers import USER_HEADER


class Refused(BackendError):
    """The daemon answered 4xx; ``reason`` is its message (e.g. a refused transition)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(DAEMON, f"HTTP {status}: {reason}")
        self.status, self.reason = status, reason


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in params.items() if v not in (None, "")}


def _reason(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"])
    except (ValueError, KeyError, TypeError):
        return r.text[:500] or r.reason_phrase


SLOW_S = 120  # an export or a report file renders charts and a PDF first


class CaseworkClient:
    def __init__(self, base_url: str, actor: str | None, timeout: float = 15) -> None:
        self.base_url, self.timeout = base_url, timeout
        self.headers = {USER_HEADER: actor} if actor else {}

    def _request(self, method: str, path: str, timeout: float | None = None,
                 **kw: Any) -> httpx.Response:
        try:
            with httpx.Client(base_url=self.base_url, timeout=timeout or self.timeout,
                              trust_env=False, headers=self.headers) as client:
                r = client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise BackendDown(DAEMON, f"{self.base_url}: {type(exc).__name__}") from exc
        if r.status_code in (502, 503, 504):
            raise BackendDown(DAEMON, f"HTTP {r.status_code}")
        if r.status_code >= 400:
            raise Refused(r.status_code, _reason(r))
        return r

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=_params(params)).json()

    def get_bytes(self, path: str, **params: Any) -> bytes:
        return self._request("GET", path, timeout=SLOW_S, params=_params(params)).content

    def post(self, path: str, body: dict[str, Any] | None = None,
             timeout: float | None = None) -> Any:
        return self._request("POST", path, timeout=timeout,
                             json=body if body is not None else {}).json()

    # ---------------------------------------------------------------- cases

    # The daemon answers cases as ``Case`` JSON; they are read back into ``Case``.

    def cases(self, status: str | None = None, service: str | None = None,
              failure_type: str | None = None, limit: int = 1000) -> list[Case]:
        data = self.get("/api/v1/cases", status=status, service=service,
                        failure_type=failure_type, limit=limit)
        return [Case.model_validate(c) for c in data["cases"]]

    def case(self, case_id: str) -> Case:
        return Case.model_validate(self.get(f"/api/v1/cases/{case_id}"))

    def assign(self, case_id: str, assignee: str | None) -> Case:
        return Case.model_validate(self.post(f"/api/v1/cases/{case_id}/assign",
                                             {"assignee": assignee}))

    def set_status(self, case_id: str, status: str, reason: str | None) -> Case:
        return Case.model_validate(self.post(f"/api/v1/cases/{case_id}/status",
                                             {"status": status, "reason": reason or None}))

    def note(self, case_id: str, text: str) -> Case:
        return Case.model_validate(self.post(f"/api/v1/cases/{case_id}/notes", {"text": text}))

    def resolve(self, case_id: str, root_cause: str, fix_applied: str) -> Case:
        return Case.model_validate(self.post(
            f"/api/v1/cases/{case_id}/resolve",
            {"root_cause": root_cause, "fix_applied": fix_applied}))

    def run_rca(self, case_id: str) -> dict[str, Any]:
        """Ask the daemon's RCA worker for another run; it answers at once (queued) and
        the result lands on the case when the run ends."""
        data: dict[str, Any] = self.post(f"/api/v1/cases/{case_id}/rca/run")
        return data

    def check(self, case_id: str) -> Case:
        """Verification by the case's own detector (the daemon judges the current window)."""
        return Case.model_validate(self.post(f"/api/v1/cases/{case_id}/check",
                                             timeout=SLOW_S))

    def export(self, case_id: str) -> bytes:
        """The signed evidence zip; the daemon audits every export."""
        return self.get_bytes(f"/api/v1/cases/{case_id}/export")

    # ---------------------------------------------------------------- changes

    def changes(self, service: str | None, since: datetime | str | None,
                until: datetime | str | None, limit: int = 500) -> list[dict[str, Any]]:
        data = self.get("/api/v1/changes", service=service, since=since, until=until,
                        limit=limit)
        return list(data["changes"])

    # ---------------------------------------------------------------- audit

    def audit(self, subject: str | None, action: str | None, after: int,
              limit: int) -> list[dict[str, Any]]:
        data = self.get("/api/v1/audit", subject=subject, action=action, after=after,
                        limit=limit)
        return list(data["entries"])

    def verify_chain(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/api/v1/audit/verify")
        return data

    def login(self, user: str, remote_addr: str | None) -> dict[str, Any]:
        data: dict[str, Any] = self.post("/api/v1/audit/login",
                                         {"user": user, "ok": True, "remote_addr": remote_addr})
        return data

    # ---------------------------------------------------------------- report

    def report(self, start: datetime, end: datetime) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/api/v1/report", **{"from": start, "to": end})
        return data

    def report_file(self, start: datetime, end: datetime, fmt: str) -> bytes:
        return self.get_bytes("/api/v1/report", format=fmt, **{"from": start, "to": end})
