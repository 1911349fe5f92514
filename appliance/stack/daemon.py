"""The Tracehold daemon: the span store's only writer, the API, detection."""

from __future__ import annotations

from appliance.interpreter import module_argv
from appliance.settings import Settings
from appliance.stack.spec import Component, Rendered


def _argv(s: Settings, r: Rendered) -> list[str]:
    return module_argv("appliance.daemon", "--data-dir", str(s.data_dir))


COMPONENT = Component(
    name="daemon",
    argv=_argv,
    port=lambda p: p.daemon,
    health_url=lambda p: f"http://127.0.0.1:{p.daemon}/healthz",
)
