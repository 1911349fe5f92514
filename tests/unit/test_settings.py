from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.errors import ConfigError
from appliance.settings import Ports, Profile, Settings, resolve


def test_env_and_toml_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('profile = "no-vm"\nspan_retention_days = 7\n[ports]\ndaemon = 28700\n')
    monkeypatch.setenv("TRACEHOLD_CONFIG", str(cfg))
    monkeypatch.setenv("TRACEHOLD_SPAN_RETENTION_DAYS", "9")  # env beats the file
    s = Settings(data_dir=tmp_path)
    assert (str(s.profile), s.span_retention_days, s.ports.daemon) == ("no-vm", 9, 28700)


def test_port_clash_and_bad_values_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="both 4317"):
        Settings(data_dir=tmp_path, ports=Ports(otlp_grpc=4317, collector_grpc=4317))
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, bind_address="not-an-ip")
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, unknown_setting=1)  # type: ignore[call-arg]


def test_offset_and_free_ports() -> None:
    p = Ports()
    assert p.offset(1000).otlp_grpc == 5317
    free = p.free()
    assert len(set(free.model_dump().values())) == len(Ports.model_fields)


def test_effective_settings_round_trip(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    s.ports = s.ports.offset(7)
    s.dump_effective()
    assert Settings.load_effective(tmp_path) == s


def test_config_file_of_the_data_dir_flag_is_honoured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bug: <data_dir>/config.toml was read only when the folder came from
    # TRACEHOLD_DATA_DIR, so --data-dir gave 30 days where the file said 7.
    monkeypatch.delenv("TRACEHOLD_DATA_DIR", raising=False)
    monkeypatch.delenv("TRACEHOLD_CONFIG", raising=False)
    (tmp_path / "config.toml").write_text("span_retention_days = 7\n")
    assert resolve(tmp_path).span_retention_days == 7
    assert Settings(data_dir=tmp_path).span_retention_days == 7
    monkeypatch.setenv("TRACEHOLD_DATA_DIR", str(tmp_path))
    assert resolve().span_retention_days == 7


def test_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACEHOLD_CONFIG", raising=False)
    (tmp_path / "config.toml").write_text('profile = "no-vm"\nspan_retention_days = 7\n')
    monkeypatch.setenv("TRACEHOLD_SPAN_RETENTION_DAYS", "9")
    s = resolve(tmp_path, profile=Profile.byo, bind_address=None)  # None: flag not given
    assert (s.profile, s.span_retention_days) == (Profile.byo, 9)


def test_running_stack_wins_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACEHOLD_CONFIG", raising=False)
    s = Settings(data_dir=tmp_path)
    s.ports = s.ports.offset(11)
    s.dump_effective()
    assert resolve(tmp_path, running=True).ports.daemon == Ports().daemon + 11
    assert resolve(tmp_path).ports.daemon == Ports().daemon


def test_invalid_settings_are_a_config_error_naming_the_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACEHOLD_CONFIG", raising=False)
    (tmp_path / "config.toml").write_text("span_retention_days = 0\n")
    with pytest.raises(ConfigError, match="span_retention_days"):
        resolve(tmp_path)
    (tmp_path / "config.toml").write_text("span_retention_days = [\n")
    with pytest.raises(ConfigError, match="unreadable"):
        resolve(tmp_path)


@pytest.mark.parametrize("command", [["status", "--json"], ["validate"], ["keys", "list"]])
def test_cli_names_the_bad_field_and_exits_1(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "config.toml").write_text("span_retention_days = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHOLD_")}
    out = subprocess.run([sys.executable, "-m", "appliance", *command, "--data-dir",
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1, out
    assert out.stderr.startswith("Error: invalid settings: span_retention_days")
    assert "Traceback" not in out.stderr
