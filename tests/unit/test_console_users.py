"""Console users: hashed in the secrets file, rendered into Envoy's console listener,
managed by `tracehold users`; and the console component's spec."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.console_users import ConsoleUsers
from appliance.errors import Conflict, InvalidRequest, NotFound
from appliance.headers import USER_HEADER
from appliance.settings import Profile, Settings
from appliance.stack import console, render


def test_create_keeps_only_the_sha1_and_refuses_duplicates(tmp_path: Path) -> None:
    users = ConsoleUsers(tmp_path / "secrets.json")
    password = users.create("alice")
    assert len(password) >= 24
    raw = (tmp_path / "secrets.json").read_text()
    assert password not in raw
    sha = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    assert users.htpasswd_lines() == [f"alice:{{SHA}}{sha}"]
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(Conflict, match="already exists"):
        users.create("alice")
    for bad in ("", "a:b", "a b", "x" * 65, "-lead", "new\nline"):
        with pytest.raises(InvalidRequest):
            users.create(bad)
    users.delete("alice")
    assert users.list() == []
    with pytest.raises(NotFound):
        users.delete("alice")


def test_first_user_once(tmp_path: Path) -> None:
    users = ConsoleUsers(tmp_path / "secrets.json")
    assert users.ensure_first() is not None
    assert users.ensure_first() is None
    users.delete("admin")
    assert users.ensure_first() is None  # deleting every user is a choice, kept
    assert users.list() == []


def _console_listener(s: Settings) -> dict[str, object]:
    text = render.write_listeners(s, []).read_text()
    listener: dict[str, object] = next(x for x in yaml.safe_load(text)["resources"]
                                       if x["name"] == "console")
    return listener


def test_console_listener_basic_auth_forwards_user_and_upgrades_websocket(
        tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, bind_address="127.0.0.1")
    users = ConsoleUsers(s.secrets_file)
    users.create("alice")
    users.create("bob")
    hcm = _console_listener(s)["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[index]
    assert hcm["upgrade_configs"] == [{"upgrade_type": "websocket"}]
    auth = hcm["http_filters"][0]
    assert auth["name"] == "envoy.filters.http.basic_auth"
    assert auth["typed_config"]["users"]["inline_string"].splitlines() == users.htpasswd_lines()
    assert auth["typed_config"]["forward_username_header"] == USER_HEADER
    route = hcm["route_config"]["virtual_hosts"][0]
    assert route["routes"][0]["route"]["cluster"] == "console"
    assert route["request_headers_to_remove"] == ["authorization"]
    listener = _console_listener(s)
    assert listener["address"]["socket_address"]["port_value"] == s.ports.console  # type: ignore[index]
    # with no users at all the listener is locked, not open
    users.delete("alice")
    users.delete("bob")
    hcm = _console_listener(s)["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[index]
    (line,) = hcm["http_filters"][0]["typed_config"]["users"]["inline_string"].splitlines()
    assert line.startswith("locked-") and ":{SHA}" in line


def test_users_cli_prints_password_once(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["users", "create", "carol", "--json", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    created = json.loads(out.output)
    assert set(created) == {"name", "password"} and created["name"] == "carol"
    listed = runner.invoke(app, ["users", "list", "--json", "--data-dir", str(tmp_path)])
    assert json.loads(listed.output)[0]["name"] == "carol"
    assert created["password"] not in listed.output and "SHA" not in listed.output
    again = _cli("users", "create", "carol", "--data-dir", str(tmp_path))
    assert again.returncode == 1 and "Error: console user 'carol' already exists" in again.stderr
    assert "Traceback" not in again.stderr
    gone = runner.invoke(app, ["users", "delete", "carol", "--data-dir", str(tmp_path)])
    assert gone.exit_code == 0 and "deleted carol" in gone.output
    missing = _cli("users", "delete", "carol", "--data-dir", str(tmp_path))
    assert missing.returncode == 1 and "no console user" in missing.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("profile", list(Profile))
def test_console_spec(tmp_path: Path, profile: Profile) -> None:
    s = Settings(data_dir=tmp_path, profile=profile, byo_prometheus_url="http://prom.example:9090")
    spec = console.console_spec(s)
    assert "--browser.gatherUsageStats=false" in spec.argv
    assert "--server.address=127.0.0.1" in spec.argv and "--server.headless=true" in spec.argv
    assert spec.health_url == f"http://127.0.0.1:{s.ports.streamlit}/_stcore/health"
    assert spec.env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    assert spec.env[console.ENV_DAEMON] == f"http://127.0.0.1:{s.ports.daemon}"
    prom = spec.env[console.ENV_PROMETHEUS]
    assert prom == (f"http://127.0.0.1:{s.ports.prometheus}" if render.runs(s, "prometheus")
                    else "http://prom.example:9090")
    assert spec.env[console.ENV_VICTORIAMETRICS] == (
        f"http://127.0.0.1:{s.ports.victoriametrics}" if render.runs(s, "victoriametrics")
        else "")
    assert float(spec.env[console.ENV_PROMETHEUS_RETENTION]) == 2 * 86400


def test_prometheus_durations() -> None:
    assert console.prometheus_duration_s("1h30m") == 5400
    assert console.prometheus_duration_s("2d") == 172800
    with pytest.raises(ValueError):
        console.prometheus_duration_s("2 days")


def test_shipped_streamlit_config_turns_usage_stats_off() -> None:
    import tomllib

    from appliance.settings import PROJECT_ROOT

    cfg = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["server"]["address"] == "127.0.0.1"
