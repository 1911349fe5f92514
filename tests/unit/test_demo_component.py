"""`tracehold up --demo`: the demo component is added last, has no port, and counts as
healthy while it runs (ComponentSpec.health_url None); the flag reaches the settings,
also through --detach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from appliance.cli import main as cli
from appliance.errors import StackError
from appliance.settings import Settings
from appliance.stack import components, render
from appliance.stack.components import ComponentSpec
from appliance.stack.supervisor import Status, Supervisor
from tests.supervising import kill_and_await_restart


def test_demo_component_is_last_and_portless(tmp_path: Path) -> None:
    for demo in (False, True):
        s = Settings(data_dir=tmp_path, demo=demo)
        specs = components.build(s, render.write_all(s, []))
        assert ("demo" in [sp.name for sp in specs]) is demo
    last = specs[-1]
    assert last.name == "demo" and last.health_url is None and last.port == 0
    assert last.argv == [sys.executable, "-m", "appliance.demo", "--data-dir", str(tmp_path)]


def test_no_health_url_means_alive_is_healthy(tmp_path: Path) -> None:
    spec = ComponentSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], 0,
                         None)
    sup = Supervisor([spec], tmp_path, backoff_max=1)
    sup.start()
    try:
        assert sup.items[0].status is Status.ok
        kill_and_await_restart(sup, sup.items[0])
    finally:
        sup.stop()
    assert sup.items[0].status is Status.stopped


def test_no_health_url_and_dead_is_a_failed_start(tmp_path: Path) -> None:
    code = "import time; time.sleep(0.3); raise SystemExit(4)"
    spec = ComponentSpec("crasher", [sys.executable, "-c", code], 0, None)
    sup = Supervisor([spec], tmp_path)
    with pytest.raises(StackError, match="crasher exited with 4"):
        sup.start()
    sup.stop()


def test_up_demo_flag_reaches_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []

    class FakeManager:
        def __init__(self, s: Settings) -> None:
            seen.append(s)

        def run(self, progress: Any) -> None:
            return None

    monkeypatch.setattr("appliance.stack.manager.StackManager", FakeManager)
    runner = CliRunner()
    assert runner.invoke(cli.app, ["up", "--data-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(cli.app, ["up", "--demo", "--data-dir", str(tmp_path)]).exit_code == 0
    assert [s.demo for s in seen] == [False, True]

    argv: list[list[str]] = []

    class Stop(Exception):
        pass

    def fake_popen(args: list[str], **_: Any) -> None:
        argv.append(args)
        raise Stop

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    result = runner.invoke(cli.app, ["up", "--demo", "--detach", "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, Stop)
    assert "--demo" in argv[0]


def test_demo_command_needs_a_running_stack(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "appliance", "demo", "--duration", "1",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "not running" in out.stderr
    out = subprocess.run([sys.executable, "-m", "appliance", "demo", "--service", "rag-api",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "give --scenario" in out.stderr
