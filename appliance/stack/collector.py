"""Our OpenTelemetry Collector build: receives OTLP behind Envoy, derives the GenAI
metrics, queues spans on disk for the daemon (bundled-stack/otelcol/)."""

from __future__ import annotations

from appliance.settings import Settings
from appliance.stack.spec import Component, Rendered

COLLECTOR_BINARY = "otelcol-tracehold"  # install.build_collector builds it under this name


def _argv(s: Settings, r: Rendered) -> list[str]:
    return [str(s.bin_dir / COLLECTOR_BINARY), f"--config=file:{r.collector}"]


def _check(s: Settings, r: Rendered) -> list[str]:
    return [str(s.bin_dir / COLLECTOR_BINARY), "validate", f"--config=file:{r.collector}"]


COMPONENT = Component(
    name="collector",
    templates=("otelcol/config.yaml.j2",),
    argv=_argv,
    port=lambda p: p.collector_grpc,
    health_url=lambda p: f"http://127.0.0.1:{p.collector_health}/",
    check=_check,
)
