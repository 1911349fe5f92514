"""Rendered configs are accepted by the real components' own validators."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.secrets import SecretsFile
from appliance.settings import Profile, Redaction, Settings
from appliance.stack import collector, components, prometheus, render


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, bind_address="127.0.0.1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [
    {},
    {"redaction": Redaction.mask},
    {"redaction": Redaction.drop, "tail_sampling": True},
    {"tail_sampling": True, "evaluation_names": ["faithfulness"]},
])
@pytest.mark.binaries  # our collector build (.stack/bin)
def test_collector_config_validates(tmp_path: Path, kw: dict[str, object]) -> None:
    s = _settings(tmp_path, **kw)
    argv = collector.COMPONENT.check(s, render.write_all(s, []))
    assert argv is not None and argv[1] == "validate"
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_collector_listens_on_loopback_only(tmp_path: Path) -> None:
    text = render.collector_config(_settings(tmp_path))
    endpoints = [line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.strip().startswith(("endpoint:", "host:"))]
    assert endpoints and all(e.startswith("127.0.0.1") for e in endpoints), endpoints


def test_store_only_processors_come_after_metrics(tmp_path: Path) -> None:
    cfg = yaml.safe_load(render.collector_config(
        _settings(tmp_path, redaction=Redaction.mask, tail_sampling=True)))
    pipes = cfg["service"]["pipelines"]
    assert "span_metrics" in pipes["traces/in"]["exporters"]
    assert pipes["traces/store"]["processors"] == ["redaction/prompts", "tail_sampling"]
    assert pipes["traces/store"]["exporters"] == ["otlp_http/store"]


def test_store_queue_never_gives_up(tmp_path: Path) -> None:
    cfg = yaml.safe_load(render.collector_config(_settings(tmp_path)))
    exp = cfg["exporters"]["otlp_http/store"]
    assert exp["retry_on_failure"]["max_elapsed_time"] == "0s"
    assert exp["sending_queue"]["storage"] == "file_storage/queue"


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.binaries  # promtool (.stack/bin)
def test_prometheus_config_checks(tmp_path: Path, profile: Profile) -> None:
    s = _settings(tmp_path, profile=profile)
    rendered = render.write_all(s, [])
    argv = prometheus.COMPONENT.check(s, rendered)
    assert argv is not None and argv[1:3] == ["check", "config"]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # VictoriaMetrics scrapes for itself (victoriametrics.py says why): no remote_write
    assert "remote_write" not in yaml.safe_load(rendered.prometheus.read_text())


@pytest.mark.parametrize("profile", list(Profile))
def test_profiles_choose_components(tmp_path: Path, profile: Profile) -> None:
    s = _settings(tmp_path, profile=profile)
    names = [sp.name for sp in components.build(s, render.write_all(s, []))]
    expected = {
        Profile.full: ["victoriametrics", "prometheus", "daemon", "console", "collector",
                       "envoy"],
        Profile.no_prometheus: ["victoriametrics", "daemon", "console", "collector", "envoy"],
        Profile.no_vm: ["prometheus", "daemon", "console", "collector", "envoy"],
        Profile.byo: ["daemon", "console", "collector", "envoy"],
    }[profile]
    assert names == expected
    if components.runs(s, "victoriametrics"):  # it scrapes for itself in every profile
        vm = components.build(s, render.write_all(s, []))[0]
        assert any(a.startswith("-promscrape.config=") for a in vm.argv)


def test_victoriametrics_scrapes_what_prometheus_scrapes(tmp_path: Path) -> None:
    """The two stores hold the same series: the same jobs, targets, interval, relabelling."""
    s = _settings(tmp_path)
    prom = yaml.safe_load(render.prometheus_config(s))
    vm = yaml.safe_load(render.vm_scrape_config(s))
    interval = prom["global"]["scrape_interval"]
    assert vm["global"]["scrape_interval"] == interval

    def jobs(config: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in job.items() if k != "scrape_interval" or v != interval}
                for job in config["scrape_configs"]]

    assert jobs(vm) == jobs(prom)


def test_envoy_listeners_hold_only_active_keys(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    secrets = SecretsFile(s.secrets_file)
    keep, gone = secrets.create("a"), secrets.create("b")
    secrets.revoke(gone.id)
    path = render.write_listeners(s, secrets.load().api_keys)
    text = path.read_text()
    assert keep.key in text and gone.key not in text
    assert path.stat().st_mode & 0o777 == 0o600
    listeners = yaml.safe_load(text)["resources"]
    assert {x["name"] for x in listeners} == {"otlp_grpc", "otlp_http", "prometheus_api",
                                              "victoriametrics_api", "console"}
    for x in listeners:
        if x["name"] == "console":  # basic auth: tests/unit/test_console_users.py
            continue
        filters = x["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        assert filters[0]["name"] == "envoy.filters.http.api_key_auth"


def test_all_keys_revoked_still_locks_listeners(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    secrets = SecretsFile(s.secrets_file)
    secrets.revoke(secrets.create("only").id)
    creds = [yaml.safe_load(render.envoy_listeners(s, secrets.load().api_keys))["resources"][0]
             ["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
             ["typed_config"]["credentials"]]
    assert len(creds[0]) == 1 and creds[0][0]["client"] == "nobody"
