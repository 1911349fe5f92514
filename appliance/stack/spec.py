"""The shape of a bundled component: one ``Component`` declaration per component.

A ``Component`` says everything the stack needs to know about one part (which
profiles run it, the templates it renders, how to start it, how it is
health-checked and how its own checker validates its config); ``ComponentSpec``
is what the supervisor runs from it: one process. The declarations live one
module per component (victoriametrics.py, prometheus.py, daemon.py,
console.py, collector.py, envoy.py, demo.py); components.py lists them in
start order. This module imports no component, so they can all import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.settings import Ports, Profile, Settings

EVERY_PROFILE = frozenset(Profile)


@dataclass(frozen=True)
class ComponentSpec:
    """One process for the supervisor to run."""

    name: str
    argv: list[str]
    port: int
    health_url: str | None  # None: no endpoint to ask; running counts as healthy (demo)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def binary(self) -> Path:
        return Path(self.argv[0])


@dataclass(frozen=True)
class Rendered:
    """Where render.write_all put each rendered config."""

    collector: Path
    prometheus: Path
    vm_scrape: Path
    envoy_bootstrap: Path
    envoy_listeners: Path

    @classmethod
    def under(cls, run_dir: Path) -> Rendered:
        """Where write_all puts each config for a stack whose run folder is ``run_dir``."""
        envoy = run_dir / "envoy"  # Envoy watches this folder for listener changes
        return cls(
            collector=run_dir / "otelcol.yaml",
            prometheus=run_dir / "prometheus.yml",
            vm_scrape=run_dir / "vm-scrape.yml",
            envoy_bootstrap=envoy / "bootstrap.yaml",
            envoy_listeners=envoy / "listeners.yaml",
        )


def _no_checker(s: Settings, r: Rendered) -> list[str] | None:
    return None


def _no_env(s: Settings) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Component:
    """One bundled component, declared once.

    ``check`` returns the argv of the component's own config checker (run without
    starting anything by stack/validate.py; it may first write a file of its own
    beside the rendered ones), or None when there is nothing of its own to check
    in these settings; ``no_check`` then says why.
    """

    name: str
    argv: Callable[[Settings, Rendered], list[str]]  # argv[0] is the binary
    port: Callable[[Ports], int]
    health_url: Callable[[Ports], str | None]
    profiles: frozenset[Profile] = EVERY_PROFILE
    templates: tuple[str, ...] = ()  # under bundled-stack/, rendered by render.py
    check: Callable[[Settings, Rendered], list[str] | None] = _no_checker
    no_check: str = "renders no config file; its settings are checked when they load"
    env: Callable[[Settings], dict[str, str]] = _no_env
    # A setting that must be on as well, in the profiles above (the demo's `demo`).
    enabled: Callable[[Settings], bool] | None = None

    def runs(self, s: Settings) -> bool:
        """Whether it runs with these settings (profile and switch)."""
        return s.profile in self.profiles and (self.enabled is None or self.enabled(s))

    def spec(self, s: Settings, rendered: Rendered) -> ComponentSpec:
        return ComponentSpec(self.name, self.argv(s, rendered), self.port(s.ports),
                             self.health_url(s.ports), env=self.env(s))
