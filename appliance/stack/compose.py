"""``tracehold compose``: a docker-compose.yml for teams that run containers with compose,
from the same component declarations, rendered configs and image mapping as
``up --runtime docker`` (stack/docker_runtime.py).

One service per component, host networking, ``restart: unless-stopped``; compose
profiles are Tracehold's (``--profile full|no-prometheus|no-vm|byo`` starts exactly what
that Tracehold profile runs) plus ``demo`` for the demo traffic. A component whose
command or environment differs between profiles (the console is told where the metric
stores answer) gets one service per variant, each in its own profiles. No
``depends_on``: a dependency outside the chosen profile is an error to compose, and every
component retries its upstreams (the collector's queue, Envoy's clusters) as it does
under the supervisor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.secrets import SecretsFile
from appliance.settings import Profile, Settings
from appliance.stack import components, render
from appliance.stack import container_images as ci
from appliance.stack.docker_runtime import binds, environment, map_argv, version
from appliance.stack.spec import Component, ComponentSpec, Rendered

DEMO_PROFILE = "demo"
HEADER = """\
# Tracehold as docker-compose services, written by `tracehold compose` for data folder
# {data_dir} (its rendered configs are what the services read; run `tracehold compose`
# again after changing settings). Images come from the bundle (`tracehold bundle install
# --runtime docker` loads them); nothing is pulled.
#   docker-compose -f {name} --profile full up -d      (or no-prometheus, no-vm, byo;
#                                                       add --profile demo for demo traffic)
# Containers run as root: files they write in the data folder are root's.
# Health checks: the images have no shell and no curl, so a check runs the component's own
# program where it can ask (promtool for Prometheus, the frozen appliance for the daemon
# and the console); the collector, VictoriaMetrics and Envoy have no client mode, so they
# have none here (the supervisor of `up --runtime docker` checks them over HTTP).
"""


def _escape(text: str) -> str:
    return text.replace("$", "$$")  # compose interpolates $VAR


def healthcheck(spec: ComponentSpec) -> dict[str, Any] | None:
    """A check the component's image can run, or None (see HEADER for why)."""
    image = ci.for_component(spec.name)
    test: list[str] | None = None
    if spec.name == "prometheus" and "promtool" in image.binaries:
        test = ["CMD", str(ci.BIN / "promtool"), "query", "instant",
                f"http://127.0.0.1:{spec.port}", "vector(1)"]
    elif image.frozen_appliance and spec.health_url is not None:
        test = ["CMD", str(ci.APP_EXECUTABLE), "-c",
                "import sys, urllib.request; "
                f"sys.exit(urllib.request.urlopen({spec.health_url!r}, timeout=4).status != 200)"]
    if test is None:
        return None
    return {"test": test, "interval": "10s", "timeout": "5s", "retries": 3,
            "start_period": "60s"}


def _variants(s: Settings, c: Component, rendered: Rendered) -> list[tuple[list[str],
                                                                         ComponentSpec]]:
    """(compose profiles, spec) per distinct form of a component across the profiles."""
    if c.enabled is not None:  # the demo: switched on by its own compose profile
        return [([DEMO_PROFILE], c.spec(s.model_copy(update={"demo": True}), rendered))]
    forms: list[tuple[list[str], ComponentSpec]] = []
    for p in Profile:
        if p not in c.profiles:
            continue
        spec = c.spec(s.model_copy(update={"profile": p}), rendered)
        same = next((f for f in forms if f[1] == spec), None)
        if same is None:
            forms.append(([str(p)], spec))
        else:
            same[0].append(str(p))
    return forms


def service(s: Settings, spec: ComponentSpec, profiles: list[str],
            tag: str | None = None) -> dict[str, Any]:
    image = ci.for_component(spec.name)
    argv = [_escape(a) for a in map_argv(spec.argv, image.binaries)]
    out: dict[str, Any] = {
        "image": image.ref(tag or version()),
        "profiles": profiles,
        "network_mode": "host",
        "restart": "unless-stopped",
        "entrypoint": argv[:1],
        "command": argv[1:],
        "environment": {k: _escape(v) for k, v in sorted(environment(spec).items())},
        "volumes": [f"{host}:{b['bind']}:{b['mode']}" for host, b in binds(s).items()],
        "labels": {"tracehold.component": spec.name},
    }
    check = healthcheck(spec)
    if check is not None:
        out["healthcheck"] = check
    return out


def document(s: Settings, rendered: Rendered, tag: str | None = None) -> dict[str, Any]:
    """The compose file's content (services in start order)."""
    services: dict[str, Any] = {}
    for c in components.ALL:
        forms = _variants(s, c, rendered)
        for profiles, spec in forms:
            name = c.name if len(forms) == 1 else f"{c.name}-{profiles[0]}"
            services[name] = service(s, spec, profiles, tag)
    return {"version": "3.9", "services": services}


def render_text(s: Settings, rendered: Rendered, tag: str | None = None) -> str:
    import yaml

    body = yaml.safe_dump(document(s, rendered, tag), sort_keys=False, width=100)
    return HEADER.format(data_dir=s.data_dir, name="docker-compose.yml") + body


def write(s: Settings, out: Path, tag: str | None = None) -> str | None:
    """Render the configs into the data folder and write the compose file; the first API
    key when this made it (shown once)."""
    for sub in (s.data_dir, s.run_dir, s.log_dir):
        sub.mkdir(parents=True, exist_ok=True)
    secrets = SecretsFile(s.secrets_file)
    new_key = secrets.ensure_initial_key()
    rendered = render.write_all(s, secrets.load().api_keys)
    out.write_text(render_text(s, rendered, tag))
    return new_key.key if new_key is not None else None
