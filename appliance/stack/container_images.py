"""The Docker runtime's images, as ``bundled-stack/images.lock`` names them.

One image per component binary (collector, Prometheus, VictoriaMetrics, Envoy) and one
for the frozen appliance (daemon, console, demo). All are built from scratch by
``tracehold bundle build`` (appliance/airgap/images.py); this module is what the runtime
needs to know about them: which image runs a component and where its files are inside.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

from appliance import resources

ROOT = PurePosixPath("/opt/tracehold")
BIN = ROOT / "bin"  # every binary, under the same name as in the bin folder
APP = ROOT / "app"  # the frozen appliance folder
APP_EXECUTABLE = APP / "tracehold"
REPOSITORY = "tracehold"  # images are tracehold/<name>:<version>
LOCK = "images.lock"


@dataclass(frozen=True)
class Image:
    name: str
    components: tuple[str, ...]
    binaries: tuple[str, ...] = ()
    frozen_appliance: bool = False

    def ref(self, version: str) -> str:
        return f"{REPOSITORY}/{self.name}:{version}"


@cache
def images() -> dict[str, Image]:
    """Every image of the lock, by name."""
    data = tomllib.loads((resources.templates() / LOCK).read_text())
    return {
        name: Image(name, tuple(body["components"]), tuple(body.get("binaries", ())),
                    bool(body.get("frozen_appliance", False)))
        for name, body in data["images"].items()
    }


def for_component(component: str) -> Image:
    """The image that runs a component."""
    for image in images().values():
        if component in image.components:
            return image
    raise KeyError(f"no image in {LOCK} runs the component {component!r}")
