"""Every bundled component, in start order; each is declared once in its own module.

Stores first, so the collector has somewhere to deliver; Envoy last, so nothing
is let in before the pipeline behind it is up; the demo after Envoy, because it
sends through it. Adding a component is one module with a ``COMPONENT``
declaration (spec.Component) and one line here.
"""

from __future__ import annotations

from appliance.errors import ConfigError
from appliance.settings import Settings
from appliance.stack import collector, console, daemon, demo, envoy, prometheus, victoriametrics
from appliance.stack.spec import Component, ComponentSpec, Rendered

__all__ = ["ALL", "ComponentSpec", "build", "check_binaries", "declared", "runs", "running"]

ALL: tuple[Component, ...] = (
    victoriametrics.COMPONENT,
    prometheus.COMPONENT,
    daemon.COMPONENT,
    console.COMPONENT,
    collector.COMPONENT,
    envoy.COMPONENT,
    demo.COMPONENT,
)
_BY_NAME = {c.name: c for c in ALL}


def declared(name: str) -> Component:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"no component named {name!r}; there are: "
                         f"{', '.join(_BY_NAME)}") from None


def runs(s: Settings, name: str) -> bool:
    """Whether a component runs with these settings (profile, and the demo switch)."""
    return declared(name).runs(s)


def running(s: Settings) -> list[Component]:
    """The components these settings run, in start order."""
    return [c for c in ALL if c.runs(s)]


def build(s: Settings, rendered: Rendered) -> list[ComponentSpec]:
    """The processes to supervise, in start order."""
    return [c.spec(s, rendered) for c in running(s)]


def check_binaries(specs: list[ComponentSpec]) -> None:
    missing = [str(sp.binary) for sp in specs if not sp.binary.exists()]
    if missing:
        raise ConfigError(
            "missing component binaries (run `make setup` or `tracehold setup`): "
            + ", ".join(missing)
        )
