"""Commands that run the appliance: setup, up, down, status, logs, send-test-trace,
validate."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.errors import ConfigError, StackError, TraceholdError
from appliance.settings import Profile, Runtime

if TYPE_CHECKING:
    from appliance.settings import Settings


def setup(
    force: Annotated[bool, typer.Option(help="Rebuild the collector")] = False,
    data_dir: DataDir = None,
) -> None:
    """Install the component binaries (collector build, Prometheus, VictoriaMetrics)."""
    from appliance import install
    from appliance.settings import resolve

    install.setup(resolve(data_dir).bin_dir, progress=typer.echo, force=force)


def up(
    data_dir: DataDir = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background")] = False,
    profile: Annotated[Profile | None, typer.Option(help="full, no-prometheus, no-vm, byo")] = None,
    bind: Annotated[str | None, typer.Option(help="Address for Envoy's external listeners")] = None,
    port_offset: Annotated[int, typer.Option(help="Add N to every port")] = 0,
    free_ports: Annotated[bool, typer.Option(help="Pick free ports (tests)")] = False,
    timeout: Annotated[float, typer.Option(help="--detach: seconds to wait for health")] = 180,
    demo: Annotated[bool | None, typer.Option("--demo", help="Also run demo GenAI traffic",
                                              show_default=False)] = None,
    demo_scenario: Annotated[str | None, typer.Option(
        help="--demo: the failure to inject, a failure type or normal (default: setting "
             "demo_scenario)", show_default=False)] = None,
    no_demo_scenario: Annotated[bool, typer.Option(
        "--no-demo-scenario", help="--demo: healthy traffic only, no failure injected")] = False,
    no_app_scores: Annotated[bool, typer.Option(
        "--no-app-scores", help="--demo: the demo apps send no scores of their own; the "
                                "built-in evaluators carry detection alone (setting "
                                "demo_app_scores)")] = False,
    runtime: Annotated[Runtime | None, typer.Option(
        help="native (child processes) or docker (containers; setting runtime)",
        show_default=False)] = None,
) -> None:
    """Start the stack (collector, Prometheus, VictoriaMetrics, Envoy, daemon)."""
    from appliance.cli.audit_record import key_change
    from appliance.cli.users import ensure_first_user
    from appliance.secrets import SecretsFile
    from appliance.settings import resolve
    from appliance.stack import state

    if no_demo_scenario and demo_scenario is not None:
        raise ConfigError("give --demo-scenario or --no-demo-scenario, not both")
    s = resolve(data_dir, profile=profile, bind_address=bind, demo=demo,
                demo_scenario="none" if no_demo_scenario else demo_scenario, runtime=runtime,
                demo_app_scores=False if no_app_scores else None)
    if free_ports:
        s.ports = s.ports.free()
    elif port_offset:
        s.ports = s.ports.offset(port_offset)
    if state.read(s.state_file) is not None:
        raise StackError(f"a stack already runs with data folder {s.data_dir} (see `status`)")
    new_key = SecretsFile(s.secrets_file).ensure_initial_key()
    if new_key is not None:
        typer.echo(f"First API key (shown once; kept 0600 in {s.secrets_file}):\n  {new_key.key}")
        key_change(s, "keys.create", new_key.id, new_key.name)  # no stack yet: written locally
    ensure_first_user(s, typer.echo)  # console user 'admin', once
    if not detach:
        from appliance.stack.manager import StackManager

        StackManager(s).run(progress=typer.echo)
        return
    _detach(s, timeout)


def _detach(s: Settings, timeout: float) -> None:
    """Start `up` in a new session, report progress until healthy, and return."""
    from appliance.stack import state

    s.log_dir.mkdir(parents=True, exist_ok=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    s.state_file.unlink(missing_ok=True)
    from appliance.interpreter import module_argv

    args = module_argv("appliance", "up", "--data-dir", str(s.data_dir),
                       "--profile", str(s.profile), "--bind", s.bind_address,
                       "--runtime", str(s.runtime),
                       *(["--demo"] if s.demo else []),
                       *([] if s.demo_app_scores else ["--no-app-scores"]),
                       "--demo-scenario", str(s.demo_scenario))
    # The child gets the resolved ports through the environment, so --free-ports
    # picks them once, here.
    env = {**os.environ, **{f"TRACEHOLD_PORTS__{k.upper()}": str(v)
                            for k, v in s.ports.model_dump().items()}}
    with open(s.log_dir / "supervisor.log", "ab") as log:  # the child keeps its own copy
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline, seen = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = (s.log_dir / "supervisor.log").read_text(errors="replace").splitlines()[-25:]
            raise StackError("the stack did not start:\n" + "\n".join(tail))
        st = state.read(s.state_file)
        comps = (st or {}).get("components", [])
        for c in comps:
            if c["status"] == "ok" and c["name"] not in seen:
                seen.add(c["name"])
                typer.echo(f"{c['name']} healthy")
        if comps and all(c["status"] == "ok" for c in comps):
            typer.echo(f"stack up (pid {child.pid}); `tracehold status` for endpoints")
            return
        time.sleep(0.25)
    raise StackError(f"the stack was not healthy within {timeout:.0f}s; see `tracehold logs`")


def down(data_dir: DataDir = None,
         timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 60) -> None:
    """Stop a running stack."""
    from appliance.stack import state

    s = settings(data_dir)
    st = state.read(s.state_file)
    if st is None:
        typer.echo("not running")
        return
    pid = int(st["supervisor_pid"])
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while state.pid_alive(pid):
        if time.monotonic() > deadline:
            raise StackError(f"supervisor {pid} did not stop within {timeout:.0f}s")
        time.sleep(0.2)
    typer.echo("stopped")


def status(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Components with pid, port, health and uptime; endpoints; spans stored."""
    from appliance.status import collect

    data = collect(settings(data_dir))
    lines = [f"running: {data['running']}   profile: {data.get('profile', '-')}   "
             f"runtime: {data.get('runtime', '-')}"]
    for c in data["components"]:
        lines.append(f"  {c['name']:16} {c['status']:18} pid {c['pid'] or '-':>7}  "
                     f"port {c['port']:>5}  up {c['uptime_s']:>7.0f}s  restarts {c['restarts']}"
                     + (f"  container {c['container_id'][:12]}" if c.get("container_id")
                        else ""))
    for name, url in data["endpoints"].items():
        lines.append(f"  {name:16} {url}")
    lines.append(f"spans stored: {data['spans_stored']}   last ingest: {data['last_ingest']}")
    lines += [f"notify {d['destination']:9} FAILING  pending {d['pending']}  dead {d['dead']}  "
              f"{(d['last_error'] or '')[:100]}" for d in data.get("notifications") or []
              if d["failing"]]
    emit(data, as_json, lines)
    if not data["running"]:
        raise typer.Exit(1)


def logs(
    component: Annotated[str, typer.Argument(help="collector, prometheus, victoriametrics, "
                                                  "envoy, daemon or supervisor")],
    data_dir: DataDir = None,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print a component's log."""
    s = settings(data_dir)
    path = s.log_dir / f"{component}.log"
    if not path.exists():
        raise TraceholdError(f"no log for {component!r} in {s.log_dir}")
    argv = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    raise typer.Exit(subprocess.call(argv))


def send_test_trace(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the series")] = 60,
    as_json: JsonOpt = False,
) -> None:
    """Send a GenAI test trace through Envoy and wait for its derived series."""
    from appliance.testtrace import run

    result = run(settings(data_dir), timeout=timeout,
                 progress=(lambda _: None) if as_json else typer.echo)
    emit(result, as_json, [f"{k}: {v}" for k, v in result.items() if k != "series"]
         + [f"  {line}" for line in result["series"]])


def validate(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Check settings and dry-run every component's config with its own checker
    (collector validate, promtool check config, envoy --mode validate) without
    starting anything."""
    from dataclasses import asdict

    from appliance.secrets import SecretsFile
    from appliance.settings import resolve
    from appliance.stack.validate import validate as validate_configs

    s = resolve(data_dir)
    checks = validate_configs(s, SecretsFile(s.secrets_file).load().api_keys)
    failed = [c.name for c in checks if not c.ok]
    lines = []
    for c in checks:
        first, *rest = c.message.splitlines() or [""]
        lines.append(f"{c.name:16} {'ok' if c.ok else 'FAILED':6} {first}")
        lines += [f"    {line}" for line in rest]
    lines.append("configuration invalid" if failed else "configuration valid")
    emit({"ok": not failed, "checks": [asdict(c) for c in checks]}, as_json, lines)
    if failed:
        raise ConfigError(f"configuration invalid: {', '.join(failed)}")


def compose(
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(
        help="Where to write it (default: <data_dir>/docker-compose.yml)")] = None,
) -> None:
    """Write a docker-compose.yml of the stack (its profiles are Tracehold's, and demo)
    from the same rendered configs and images as `up --runtime docker`."""
    from appliance.settings import resolve
    from appliance.stack.compose import write

    s = resolve(data_dir)
    target = out or s.data_dir / "docker-compose.yml"
    key = write(s, target)
    if key is not None:
        typer.echo(f"First API key (shown once; kept 0600 in {s.secrets_file}):\n  {key}")
    typer.echo(f"wrote {target}; `docker-compose -f {target} --profile {s.profile} up -d`")
