"""The `tracehold` command. Commands are thin: build the library object, call it,
turn a TraceholdError into a clean message and a non-zero exit. Every read
command takes --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from appliance import settings as settings_mod
from appliance.errors import StackError, TraceholdError
from appliance.secrets import SecretsFile
from appliance.settings import Profile, Settings
from appliance.stack import render, state

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Tracehold: a self-hosted GenAI observability appliance.",
)
keys_app = typer.Typer(no_args_is_help=True, help="API keys for the OTLP and query listeners.")
app.add_typer(keys_app, name="keys")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="TRACEHOLD_DATA_DIR",
                 help="Data folder (default ~/.tracehold)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def emit(data: Any, as_json: bool, lines: list[str]) -> None:
    """One way every read command prints: JSON for machines, lines for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            typer.echo(line)


def current_settings(data_dir: Path | None) -> Settings:
    """A running stack's resolved settings if there is one, else from the sources."""
    base = settings_mod.load(data_dir=data_dir)
    if base.effective_file.exists():
        return Settings.load_effective(base.data_dir)
    return base


@app.command()
def setup(force: Annotated[bool, typer.Option(help="Rebuild the collector")] = False) -> None:
    """Install the component binaries (collector build, Prometheus, VictoriaMetrics)."""
    from appliance import install

    install.setup(settings_mod.load().bin_dir, progress=typer.echo, force=force)


@app.command()
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
) -> None:
    """Start the stack (collector, Prometheus, VictoriaMetrics, Envoy, daemon)."""
    s = settings_mod.load(data_dir=data_dir, profile=profile, bind_address=bind, demo=demo)
    if free_ports:
        s.ports = s.ports.free()
    elif port_offset:
        s.ports = s.ports.offset(port_offset)
    if state.read(s.state_file) is not None:
        raise StackError(f"a stack already runs with data folder {s.data_dir} (see `status`)")
    new_key = SecretsFile(s.secrets_file).ensure_initial_key()
    if new_key is not None:
        typer.echo(f"First API key (shown once; kept 0600 in {s.secrets_file}):\n  {new_key.key}")
        from appliance.audit.record import key_change  # no stack runs yet: written locally

        key_change(s, "keys.create", new_key.id, new_key.name)
    from appliance.users_cli import ensure_first_user  # console user 'admin', once

    ensure_first_user(s, typer.echo)
    if not detach:
        from appliance.stack.manager import StackManager

        StackManager(s).run(progress=typer.echo)
        return
    _detach(s, timeout)


def _detach(s: Settings, timeout: float) -> None:
    """Start `up` in a new session, report progress until healthy, and return."""
    s.log_dir.mkdir(parents=True, exist_ok=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    s.state_file.unlink(missing_ok=True)
    args = [sys.executable, "-m", "appliance.cli", "up", "--data-dir", str(s.data_dir),
            "--profile", str(s.profile), "--bind", s.bind_address, *(["--demo"] if s.demo else [])]
    # The child gets the resolved ports through the environment, so --free-ports
    # picks them once, here.
    env = {**os.environ, **{f"TRACEHOLD_PORTS__{k.upper()}": str(v)
                            for k, v in s.ports.model_dump().items()}}
    log = open(s.log_dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
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


@app.command()
def down(data_dir: DataDir = None,
         timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 60) -> None:
    """Stop a running stack."""
    s = current_settings(data_dir)
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


@app.command()
def status(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Components with pid, port, health and uptime; endpoints; spans stored."""
    from appliance.status import collect

    s = current_settings(data_dir)
    data = collect(s)
    lines = [f"running: {data['running']}   profile: {data.get('profile', '-')}"]
    for c in data["components"]:
        lines.append(f"  {c['name']:16} {c['status']:18} pid {c['pid'] or '-':>7}  "
                     f"port {c['port']:>5}  up {c['uptime_s']:>7.0f}s  restarts {c['restarts']}")
    for name, url in data["endpoints"].items():
        lines.append(f"  {name:16} {url}")
    lines.append(f"spans stored: {data['spans_stored']}   last ingest: {data['last_ingest']}")
    emit(data, as_json, lines)
    if not data["running"]:
        raise typer.Exit(1)


@app.command()
def logs(
    component: Annotated[str, typer.Argument(help="collector, prometheus, victoriametrics, "
                                                  "envoy, daemon or supervisor")],
    data_dir: DataDir = None,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print a component's log."""
    s = current_settings(data_dir)
    path = s.log_dir / f"{component}.log"
    if not path.exists():
        raise TraceholdError(f"no log for {component!r} in {s.log_dir}")
    argv = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    raise typer.Exit(subprocess.call(argv))


@app.command("send-test-trace")
def send_test_trace(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the series")] = 60,
    as_json: JsonOpt = False,
) -> None:
    """Send a GenAI test trace through Envoy and wait for its derived series."""
    from appliance.testtrace import run

    s = current_settings(data_dir)
    result = run(s, timeout=timeout, progress=(lambda _: None) if as_json else typer.echo)
    emit(result, as_json, [f"{k}: {v}" for k, v in result.items() if k != "series"]
         + [f"  {line}" for line in result["series"]])


@app.command()
def validate(data_dir: DataDir = None) -> None:
    """Check settings and rendered configs (collector included) without starting anything."""
    from appliance.stack import components

    s = settings_mod.load(data_dir=data_dir)
    keys = SecretsFile(s.secrets_file).load().api_keys
    with_tmp = s.model_copy(update={"data_dir": s.data_dir / "run" / "validate"})
    rendered = render.write_all(with_tmp, keys)
    specs = components.build(with_tmp, rendered)
    components.check_binaries(specs)
    collector = next(sp for sp in specs if sp.name == "collector")
    out = subprocess.run([str(collector.binary), "validate", f"--config=file:{rendered.collector}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise TraceholdError(f"collector config invalid:\n{out.stderr.strip()}")
    typer.echo("configuration valid")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List API keys (masked)."""
    s = current_settings(data_dir)
    keys = [k.public() for k in SecretsFile(s.secrets_file).load().api_keys]
    emit(keys, as_json, [f"{k['id']:14} {k['name']:20} {k['key']:18} "
                         f"{'active' if k['active'] else 'revoked ' + str(k['revoked_at'])}"
                         for k in keys])


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for")],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; it is printed once and never shown again."""
    s = current_settings(data_dir)
    secrets = SecretsFile(s.secrets_file)
    key = secrets.create(name)
    _apply_keys(s, secrets)
    from appliance.audit.record import key_change  # via the daemon if it runs

    key_change(s, "keys.create", key.id, key.name)
    emit({"id": key.id, "key": key.key}, as_json, [f"id:  {key.id}", f"key: {key.key}",
                                                 "(shown once; store it now)"])


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Revoke a key; Envoy refuses it within a second or two."""
    s = current_settings(data_dir)
    secrets = SecretsFile(s.secrets_file)
    key = secrets.revoke(key_id)
    _apply_keys(s, secrets)
    from appliance.audit.record import key_change  # via the daemon if it runs

    key_change(s, "keys.revoke", key.id, key.name)
    emit(key.public(), as_json, [f"revoked {key.id} ({key.name})"])


def _apply_keys(s: Settings, secrets: SecretsFile) -> None:
    """A running Envoy watches its listener file; rewriting it applies the change."""
    if (s.run_dir / "envoy").exists():
        render.write_listeners(s, secrets.load().api_keys)


# -- command registrations from other modules (one line each) --
__import__("appliance.users_cli", fromlist=["register"]).register(app)
__import__("appliance.demo.cli", fromlist=["register"]).register(app)
__import__("appliance.casework.cli", fromlist=["register"]).register(app, emit, current_settings)


def main() -> None:
    try:
        app()
    except TraceholdError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
