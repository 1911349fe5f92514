"""The console component: Streamlit serving app/ on loopback, behind Envoy's console listener.

Streamlit runs headless with its usage statistics off (flag, environment and the
shipped .streamlit/config.toml say so three times, because a user's own
~/.streamlit/config.toml could say otherwise). The console learns where the
daemon, Prometheus and VictoriaMetrics answer from ``CONSOLE_ENV`` variables;
it reads the loopback ports directly, so it needs no API key.
"""

from __future__ import annotations

import re

from appliance import resources
from appliance.interpreter import module_argv
from appliance.settings import Settings
from appliance.stack import prometheus, victoriametrics
from appliance.stack.spec import Component, ComponentSpec, Rendered

APP = resources.console_main()
ENV_DAEMON = "TRACEHOLD_CONSOLE_DAEMON_URL"
ENV_PROMETHEUS = "TRACEHOLD_CONSOLE_PROMETHEUS_URL"
ENV_VICTORIAMETRICS = "TRACEHOLD_CONSOLE_VICTORIAMETRICS_URL"
ENV_PROMETHEUS_RETENTION = "TRACEHOLD_CONSOLE_PROMETHEUS_RETENTION_S"
ENV_REFRESH = "TRACEHOLD_CONSOLE_REFRESH_S"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def prometheus_duration_s(text: str) -> float:
    """Seconds in a Prometheus duration such as ``2d`` or ``1h30m``."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def console_env(s: Settings) -> dict[str, str]:
    p = s.ports
    prom = (f"http://127.0.0.1:{p.prometheus}" if prometheus.COMPONENT.runs(s)
            else s.byo_prometheus_url or "")
    vm = (f"http://127.0.0.1:{p.victoriametrics}" if victoriametrics.COMPONENT.runs(s)
          else s.byo_victoriametrics_url or "")
    return {
        ENV_DAEMON: f"http://127.0.0.1:{p.daemon}",
        ENV_PROMETHEUS: prom,
        ENV_VICTORIAMETRICS: vm,
        ENV_PROMETHEUS_RETENTION: str(prometheus_duration_s(s.prometheus_retention)),
        ENV_REFRESH: str(s.console_refresh_s),
        "TRACEHOLD_DATA_DIR": str(s.data_dir),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }


def _argv(s: Settings, r: Rendered) -> list[str]:
    return module_argv(
        "streamlit", "run", str(APP),
        "--server.address=127.0.0.1", f"--server.port={s.ports.streamlit}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false", "--global.developmentMode=false",
        # configs and code change only with a restart; no watcher threads
        "--server.fileWatcherType=none", "--server.runOnSave=false",
        "--client.toolbarMode=viewer", "--client.showErrorDetails=type",
        "--logger.level=warning",
    )


COMPONENT = Component(
    name="console",
    argv=_argv,
    port=lambda p: p.streamlit,
    health_url=lambda p: f"http://127.0.0.1:{p.streamlit}/_stcore/health",
    env=console_env,
    no_check="renders no config file; app/ and .streamlit/config.toml ship as they are",
)


def console_spec(s: Settings) -> ComponentSpec:
    """The console's process on its own (tests start a second console from it)."""
    return COMPONENT.spec(s, Rendered.under(s.run_dir))
