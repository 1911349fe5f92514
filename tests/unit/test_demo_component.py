"""`tracehold up --demo`: the demo component is added last, has no port, and counts as
healthy while it runs (ComponentSpec.health_url None); the flag reaches the settings,
also through --detach, and so does the failure scenario it injects (or not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from appliance.cli import main as cli
from appliance.errors import ConfigError, StackError
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
    assert last.argv == [sys.executable, "-m", "appliance.demo", "--data-dir", str(tmp_path),
                         "--scenario", "retrieval_drift", "--at", "120"]


def test_demo_scenario_settings_reach_the_demo_argv(tmp_path: Path) -> None:
    """`make up` tells the whole story: by default a failure is injected two minutes in;
    its name and delay are settings, and `none` leaves the traffic healthy."""
    def argv(**kw: Any) -> list[str]:
        s = Settings(data_dir=tmp_path, demo=True, **kw)
        return components.build(s, render.write_all(s, []))[-1].argv[3:]

    assert argv(demo_scenario="agent_loop", demo_scenario_after_s=7.5) == [
        "--data-dir", str(tmp_path), "--scenario", "agent_loop", "--at", "7.5"]
    assert argv(demo_scenario="none") == ["--data-dir", str(tmp_path)]
    with pytest.raises(ValueError, match="demo_scenario"):
        Settings(data_dir=tmp_path, demo_scenario="meltdown")


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


class Stop(Exception):
    """Raised by the stand-in Popen: `up --detach` stops where it would start its child."""


@pytest.fixture
def managed(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings each `up` hands the stack manager (a stand-in that starts nothing)."""
    seen: list[Settings] = []

    class FakeManager:
        def __init__(self, s: Settings) -> None:
            seen.append(s)

        def run(self, progress: Any) -> None:
            return None

    monkeypatch.setattr("appliance.stack.manager.StackManager", FakeManager)
    return seen


@pytest.fixture
def detached(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv `up --detach` would start its child with (Popen raises Stop instead)."""
    argv: list[list[str]] = []

    def fake_popen(args: list[str], **_: Any) -> None:
        argv.append(args)
        raise Stop

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    return argv


def test_up_demo_flag_reaches_the_settings(tmp_path: Path, managed: list[Settings],
                                           detached: list[list[str]]) -> None:
    runner = CliRunner()
    assert runner.invoke(cli.app, ["up", "--data-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(cli.app, ["up", "--demo", "--data-dir", str(tmp_path)]).exit_code == 0
    assert [s.demo for s in managed] == [False, True]

    result = runner.invoke(cli.app, ["up", "--demo", "--detach", "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, Stop)
    assert "--demo" in detached[0]


def test_up_demo_scenario_options(tmp_path: Path, managed: list[Settings],
                                  detached: list[list[str]]) -> None:
    """--demo-scenario and --no-demo-scenario reach the settings, also through --detach
    (the child resolves its settings again: the choice is passed on explicitly)."""
    runner = CliRunner()
    base = ["up", "--demo", "--data-dir", str(tmp_path)]
    for extra in ([], ["--demo-scenario", "agent_loop"], ["--no-demo-scenario"]):
        assert runner.invoke(cli.app, base + extra).exit_code == 0
    assert [str(s.demo_scenario) for s in managed] == ["retrieval_drift", "agent_loop", "none"]
    both = runner.invoke(cli.app, [*base, "--no-demo-scenario", "--demo-scenario", "agent_loop"])
    # the entry point (cli.main) prints a TraceholdError as "Error: ..." and exits 1
    assert isinstance(both.exception, ConfigError) and "not both" in str(both.exception)
    bad = runner.invoke(cli.app, [*base, "--demo-scenario", "meltdown"])
    assert isinstance(bad.exception, ConfigError) and "demo_scenario" in str(bad.exception)

    result = runner.invoke(cli.app, [*base, "--detach", "--no-demo-scenario"])
    assert isinstance(result.exception, Stop)
    assert detached[0][-2:] == ["--demo-scenario", "none"]


def test_demo_app_scores_off_reaches_the_demo_argv(tmp_path: Path) -> None:
    """demo_app_scores false: the demo component's apps send no scores of their own, so
    the built-in evaluators carry detection alone (issue 12)."""
    def argv(**kw: Any) -> list[str]:
        s = Settings(data_dir=tmp_path, demo=True, demo_scenario="none", **kw)
        return components.build(s, render.write_all(s, []))[-1].argv[3:]

    assert argv() == ["--data-dir", str(tmp_path)]
    assert argv(demo_app_scores=False) == ["--data-dir", str(tmp_path), "--no-app-scores"]


def test_the_demo_module_passes_no_app_scores_on(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from appliance.demo import __main__ as demo_main

    seen: list[Any] = []
    monkeypatch.setattr(demo_main, "run_against", lambda s, opts, out: seen.append(opts) or {})
    for extra in ([], ["--no-app-scores"]):
        assert demo_main.main(["--data-dir", str(tmp_path), *extra]) == 0
    assert [o.app_scores for o in seen] == [True, False]


def test_up_no_app_scores(tmp_path: Path, managed: list[Settings],
                          detached: list[list[str]]) -> None:
    """--no-app-scores reaches the settings, also through --detach (passed on explicitly:
    the child resolves its settings again)."""
    runner = CliRunner()
    base = ["up", "--demo", "--data-dir", str(tmp_path)]
    for extra in ([], ["--no-app-scores"]):
        assert runner.invoke(cli.app, base + extra).exit_code == 0
    assert [s.demo_app_scores for s in managed] == [True, False]

    for extra in ([], ["--no-app-scores"]):
        result = runner.invoke(cli.app, [*base, "--detach", *extra])
        assert isinstance(result.exception, Stop)
    assert ["--no-app-scores" in args for args in detached] == [False, True]


def test_demo_command_needs_a_running_stack(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "appliance", "demo", "--duration", "1",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "not running" in out.stderr
    out = subprocess.run([sys.executable, "-m", "appliance", "demo", "--service", "rag-api",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "give --scenario" in out.stderr
