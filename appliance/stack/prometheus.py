"""Prometheus: scrapes the collector's derived metrics (5 s) and keeps two days of them.
VictoriaMetrics scrapes the same exporter itself (no remote_write: see victoriametrics.py)."""

from __future__ import annotations

from appliance.settings import Profile, Settings
from appliance.stack.spec import Component, Rendered


def _argv(s: Settings, r: Rendered) -> list[str]:
    return [
        str(s.bin_dir / "prometheus"),
        f"--config.file={r.prometheus}",
        f"--storage.tsdb.path={s.data_dir / 'prometheus'}",
        f"--storage.tsdb.retention.time={s.prometheus_retention}",
        f"--web.listen-address=127.0.0.1:{s.ports.prometheus}",
        "--enable-feature=exemplar-storage",
        "--log.level=warn",
    ]


def _check(s: Settings, r: Rendered) -> list[str]:
    # promtool comes from the same Debian package (install.DEBIAN_BINARIES).
    return [str(s.bin_dir / "promtool"), "check", "config", str(r.prometheus)]


COMPONENT = Component(
    name="prometheus",
    profiles=frozenset({Profile.full, Profile.no_vm}),
    templates=("prometheus/prometheus.yml.j2",),
    argv=_argv,
    port=lambda p: p.prometheus,
    health_url=lambda p: f"http://127.0.0.1:{p.prometheus}/-/ready",
    check=_check,
)
