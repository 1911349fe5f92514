"""Demo GenAI traffic (``tracehold up --demo``): sends through Envoy, so it starts last.
It has no port; running counts as healthy. Unless ``demo_scenario`` is ``none``, it
injects that failure scenario ``demo_scenario_after_s`` after it starts. With
``demo_app_scores`` off, its apps send no scores of their own (``--no-app-scores``)."""

from __future__ import annotations

from appliance.interpreter import module_argv
from appliance.settings import Settings
from appliance.stack.spec import Component, Rendered


def _argv(s: Settings, r: Rendered) -> list[str]:
    scenario = [] if s.demo_scenario == "none" else [
        "--scenario", str(s.demo_scenario), "--at", f"{s.demo_scenario_after_s:g}"]
    scores = [] if s.demo_app_scores else ["--no-app-scores"]
    return module_argv("appliance.demo", "--data-dir", str(s.data_dir), *scenario, *scores)


COMPONENT = Component(
    name="demo",
    argv=_argv,
    port=lambda p: 0,
    health_url=lambda p: None,
    enabled=lambda s: s.demo,
    no_check="renders no config file; it sends through Envoy like any client",
)
