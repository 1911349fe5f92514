"""What `tracehold status` reports: the supervisor's state plus the span store's numbers."""

from __future__ import annotations

from typing import Any

import httpx

from appliance.settings import Settings
from appliance.stack import state


def daemon_stats(s: Settings) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{s.ports.daemon}/api/v1/stats", timeout=3,
                      trust_env=False)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data
    except (httpx.HTTPError, ValueError):
        return None


def collect(s: Settings) -> dict[str, Any]:
    st = state.read(s.state_file)
    stats = daemon_stats(s) if st else None
    return {
        "running": st is not None,
        "profile": (st or {}).get("profile", str(s.profile)),
        "started_at": (st or {}).get("started_at"),
        "data_dir": str(s.data_dir),
        "components": (st or {}).get("components", []),
        "endpoints": (st or {}).get("endpoints", state.endpoints(s)),
        "spans_stored": (stats or {}).get("spans"),
        "last_ingest": (stats or {}).get("last_ingest"),
    }
