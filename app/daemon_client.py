"""The daemon's read API over httpx; a daemon that cannot answer raises BackendDown."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from appliance.console.panels import BackendDown, BackendError

DAEMON = "the Tracehold daemon"


class DaemonClient:
    def __init__(self, base_url: str, timeout: float = 15) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: (v.isoformat() if isinstance(v, datetime) else v)
                 for k, v in params.items() if v not in (None, "")}
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout,
                              trust_env=False) as client:
                r = client.get(path, params=clean)
        except httpx.HTTPError as exc:
            raise BackendDown(DAEMON, f"{self.base_url}: {type(exc).__name__}") from exc
        if r.status_code in (502, 503, 504):
            raise BackendDown(DAEMON, f"HTTP {r.status_code}")
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            try:
                reason = r.json().get("error", r.text)
            except ValueError:
                reason = r.text
            raise BackendError(DAEMON, f"HTTP {r.status_code}: {reason}")
        return r.json()

    # The routes the pages use, named once.
    def facets(self, start: datetime, end: datetime) -> dict[str, list[str]]:
        data: dict[str, list[str]] = self.get("/api/v1/facets", start=start, end=end)
        return data

    def search(self, **filters: Any) -> list[dict[str, Any]]:
        data = self.get("/api/v1/traces", **filters)
        return list(data["traces"])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        data: dict[str, Any] | None = self.get(f"/api/v1/traces/{trace_id}")
        return data

    def graph(self, start: datetime, end: datetime) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/api/v1/graph", start=start, end=end)
        return data

    def cost(self, **filters: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/api/v1/cost", **filters)
        return data

    def storage(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/api/v1/storage")
        return data
