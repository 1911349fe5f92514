"""`collector_pprof`: our collector build carries the pprof extension, off by default; on,
it serves Go CPU and heap profiles on a loopback port (what docs/store-design.md used to
find where the collector's CPU goes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from appliance.settings import Ports, Settings
from appliance.stack import render
from appliance.stack.collector import COLLECTOR_BINARY
from tests.supervising import wait_for

GZIP = b"\x1f\x8b"  # a pprof profile is a gzipped protobuf


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, ports=Ports().free(), **kw)  # type: ignore[arg-type]


def test_off_by_default(tmp_path: Path) -> None:
    assert "pprof" not in render.collector_config(_settings(tmp_path))


@pytest.mark.binaries  # the collector
def test_the_collector_serves_profiles_on_loopback_when_asked(tmp_path: Path) -> None:
    s = _settings(tmp_path, collector_pprof=True)
    config = tmp_path / "otelcol.yaml"
    config.write_text(render.collector_config(s))
    assert f"endpoint: 127.0.0.1:{s.ports.collector_pprof}" in config.read_text()
    base = f"http://127.0.0.1:{s.ports.collector_pprof}/debug/pprof"
    log = tmp_path / "collector.log"  # a file, not a pipe: nobody drains a pipe meanwhile
    with log.open("wb") as err, subprocess.Popen(
            [str(s.bin_dir / COLLECTOR_BINARY), f"--config=file:{config}"],
            stdout=subprocess.DEVNULL, stderr=err) as proc:
        try:
            def serving() -> bool:
                assert proc.poll() is None, log.read_text(errors="replace")
                try:
                    return httpx.get(f"{base}/", timeout=2, trust_env=False).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(serving, timeout=60)
            for path in ("heap", "profile?seconds=1"):
                got = httpx.get(f"{base}/{path}", timeout=30, trust_env=False)
                assert got.status_code == 200, path
                assert got.content[:2] == GZIP and len(got.content) > 100, path
        finally:
            proc.terminate()
            proc.wait(timeout=30)
