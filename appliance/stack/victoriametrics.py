"""VictoriaMetrics: twelve months of metrics, written by Prometheus' remote_write; in the
no-prometheus profile it scrapes the collector itself (``-promscrape.config``)."""

from __future__ import annotations

from appliance.settings import Profile, Settings
from appliance.stack import prometheus
from appliance.stack.spec import Component, Rendered


def scrapes(s: Settings) -> bool:
    """Without Prometheus nobody writes to VictoriaMetrics, so it scrapes."""
    return not prometheus.COMPONENT.runs(s)


def _argv(s: Settings, r: Rendered) -> list[str]:
    argv = [
        str(s.bin_dir / "victoria-metrics"),
        f"-httpListenAddr=127.0.0.1:{s.ports.victoriametrics}",
        f"-storageDataPath={s.data_dir / 'victoriametrics'}",
        f"-retentionPeriod={s.victoriametrics_retention_months}",
        # Fresh samples become queryable after this delay (default 30s).
        "-search.latencyOffset=5s",
        "-loggerLevel=WARN",
    ]
    if scrapes(s):
        argv += [f"-promscrape.config={r.vm_scrape}"]
    return argv


def _check(s: Settings, r: Rendered) -> list[str] | None:
    # Its only config file is the scrape config; the dry run parses the real flags
    # and that file, then exits before opening storage or a port.
    if not scrapes(s):
        return None
    return [*_argv(s, r), "-promscrape.config.dryRun"]


COMPONENT = Component(
    name="victoriametrics",
    profiles=frozenset({Profile.full, Profile.no_prometheus}),
    templates=("victoriametrics/scrape.yml.j2",),
    argv=_argv,
    port=lambda p: p.victoriametrics,
    health_url=lambda p: f"http://127.0.0.1:{p.victoriametrics}/health",
    check=_check,
    no_check="reads no config file while Prometheus runs (it only receives remote_write)",
)
