"""What `tracehold status` reports: the supervisor's state plus the span store's numbers."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from appliance.settings import Settings
from appliance.stack import state

# The standard library's client: `status` is run in loops (`watch tracehold status`), so
# it loads no HTTP library; no proxy from the environment applies to loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def daemon_stats(s: Settings, path: str = "/api/v1/stats") -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{s.ports.daemon}{path}"
    try:
        with _OPENER.open(url, timeout=3) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return None


def collect(s: Settings) -> dict[str, Any]:
    st = state.read(s.state_file)
    stats = daemon_stats(s) if st else None
    return {
        "running": st is not None,
        "profile": (st or {}).get("profile", str(s.profile)),
        "runtime": (st or {}).get("runtime", str(s.runtime)),
        "started_at": (st or {}).get("started_at"),
        "data_dir": str(s.data_dir),
        "components": (st or {}).get("components", []),
        "endpoints": (st or {}).get("endpoints", state.endpoints(s)),
        "spans_stored": (stats or {}).get("spans"),
        # the span store's file (+ WAL) over the spans in it: what a span costs on disk
        "span_store_bytes": (stats or {}).get("db_bytes"),
        "bytes_per_span": (stats or {}).get("bytes_per_span"),
        "last_ingest": (stats or {}).get("last_ingest"),
        # each notification destination; failing ones show on the Stack page too
        "notifications": ((daemon_stats(s, "/api/v1/notify/health") or {})
                          .get("destinations") if stats else None),
    }
