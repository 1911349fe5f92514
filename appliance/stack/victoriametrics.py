"""VictoriaMetrics: twelve months of metrics. It scrapes the collector itself
(``-promscrape.config``, the same targets, interval and relabelling as Prometheus), in
every profile it runs in.

It used to be written by Prometheus' remote_write, but the remote-write WAL watcher of the
Prometheus we ship (2.42, Debian bookworm) reads its WAL every 10 ms whatever the traffic:
1.5% of a core at rest, most of the stack's idle CPU (bench/idle_bench.py). Scraping the
same exporter costs VictoriaMetrics about 0.1%. The counters are cumulative, so a
VictoriaMetrics restart leaves a gap of a scrape or two in its samples, not in the
totals or rates across it.
"""

from __future__ import annotations

from appliance.settings import Profile, Settings
from appliance.stack.spec import Component, Rendered


def _argv(s: Settings, r: Rendered) -> list[str]:
    argv = [
        str(s.bin_dir / "victoria-metrics"),
        f"-httpListenAddr=127.0.0.1:{s.ports.victoriametrics}",
        f"-storageDataPath={s.data_dir / 'victoriametrics'}",
        f"-retentionPeriod={s.victoriametrics_retention_months}",
        # Fresh samples become queryable after this delay (default 30s).
        "-search.latencyOffset=5s",
        "-loggerLevel=WARN",
        f"-promscrape.config={r.vm_scrape}",
    ]
    return argv


def _check(s: Settings, r: Rendered) -> list[str]:
    # Its only config file is the scrape config; the dry run parses the real flags
    # and that file, then exits before opening storage or a port.
    return [*_argv(s, r), "-promscrape.config.dryRun"]


COMPONENT = Component(
    name="victoriametrics",
    profiles=frozenset({Profile.full, Profile.no_prometheus}),
    templates=("victoriametrics/scrape.yml.j2",),
    argv=_argv,
    port=lambda p: p.victoriametrics,
    health_url=lambda p: f"http://127.0.0.1:{p.victoriametrics}/health",
    check=_check,
)
