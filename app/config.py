"""Where the console's backends are: environment variables set by the component spec
(appliance/stack/console.py), with the default ports for a hand-started console."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import Ports
from appliance.stack import console as spec

_P = Ports()


@dataclass(frozen=True)
class ConsoleConfig:
    daemon_url: str
    prometheus_url: str | None
    victoriametrics_url: str | None
    prometheus_retention_s: float
    refresh_s: int
    data_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleConfig:
        env = os.environ if env is None else env
        return cls(
            daemon_url=env.get(spec.ENV_DAEMON, f"http://127.0.0.1:{_P.daemon}").rstrip("/"),
            prometheus_url=env.get(spec.ENV_PROMETHEUS, f"http://127.0.0.1:{_P.prometheus}")
            or None,
            victoriametrics_url=env.get(spec.ENV_VICTORIAMETRICS,
                                        f"http://127.0.0.1:{_P.victoriametrics}") or None,
            prometheus_retention_s=float(env.get(spec.ENV_PROMETHEUS_RETENTION, 2 * 86400)),
            refresh_s=int(env.get(spec.ENV_REFRESH, 30)),
            data_dir=Path(env.get("TRACEHOLD_DATA_DIR", Path.home() / ".tracehold")),
        )
