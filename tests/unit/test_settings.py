from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.settings import Ports, Settings


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
