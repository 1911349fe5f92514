"""The running stack's state file: what `status`, `down` and `logs` read.

The supervisor rewrites it (atomically) every half second; a reader that finds
the supervisor's pid gone knows the stack is not running.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from appliance.settings import Settings
from appliance.stack import components


def endpoints(s: Settings) -> dict[str, str]:
    """External (Envoy) URLs a user points SDKs and query clients at."""
    host = "127.0.0.1" if s.bind_address in ("0.0.0.0", "127.0.0.1") else s.bind_address
    p = s.ports
    out = {
        "otlp_grpc": f"http://{host}:{p.otlp_grpc}",
        "otlp_http": f"http://{host}:{p.otlp_http}",
    }
    out["console"] = f"http://{host}:{p.console}"
    if components.runs(s, "prometheus"):
        out["prometheus"] = f"http://{host}:{p.prometheus_api}"
    elif s.byo_prometheus_url:
        out["prometheus"] = s.byo_prometheus_url
    if components.runs(s, "victoriametrics"):
        out["victoriametrics"] = f"http://{host}:{p.victoriametrics_api}"
    elif s.byo_victoriametrics_url:
        out["victoriametrics"] = s.byo_victoriametrics_url
    return out


def write(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Any] | None:
    """The state of a running stack, or None when none runs."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid = state.get("supervisor_pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    return state


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
