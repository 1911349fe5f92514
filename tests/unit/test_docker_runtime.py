"""The Docker runtime's mapping of a native component into its container (argv, binds,
environment, name), the image loading's refusal of a wrong archive, and the generated
docker-compose file's shape (checked by Debian's docker-compose itself)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance import resources
from appliance.errors import ConfigError
from appliance.settings import Profile, Runtime, Settings
from appliance.stack import components, compose
from appliance.stack import container_images as ci
from appliance.stack import docker_runtime as dr
from appliance.stack.spec import ComponentSpec, Rendered


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", bin_dir=tmp_path / "bin",
                    runtime=Runtime.docker, docker_host="unix:///nowhere.sock")


def _spec(s: Settings, name: str) -> ComponentSpec:
    return components.declared(name).spec(s, Rendered.under(s.run_dir))


def test_a_bin_folder_binary_runs_from_the_images_bin(s: Settings) -> None:
    spec = _spec(s, "collector")
    cs = dr.container_spec(s, spec, tag="1.2")
    assert cs.image == "tracehold/collector:1.2"
    assert cs.command == ["/opt/tracehold/bin/otelcol-tracehold",
                          f"--config=file:{s.run_dir / 'otelcol.yaml'}"]
    # envoy from the wheel (not in the bin folder) is the image's envoy all the same
    envoy = dr.container_spec(s, _spec(s, "envoy"))
    assert envoy.command[0] == "/opt/tracehold/bin/envoy"
    assert envoy.command[1:3] == ["-c", str(s.run_dir / "envoy" / "bootstrap.yaml")]


def test_an_appliance_module_runs_in_the_frozen_appliance(s: Settings) -> None:
    cs = dr.container_spec(s, _spec(s, "daemon"))
    assert cs.image.startswith("tracehold/appliance:")
    assert cs.command == ["/opt/tracehold/app/tracehold", "--run-module", "appliance.daemon",
                          "--data-dir", str(s.data_dir)]
    # the frozen form maps the same way
    assert dr.map_argv([sys.executable, "--run-module", "appliance.demo", "-x"], ()) == [
        "/opt/tracehold/app/tracehold", "--run-module", "appliance.demo", "-x"]


def test_the_consoles_script_is_the_frozen_folders_copy(s: Settings) -> None:
    cs = dr.container_spec(s, _spec(s, "console"))
    assert cs.command[:4] == ["/opt/tracehold/app/tracehold", "--run-module", "streamlit",
                              "run"]
    assert cs.command[4] == "/opt/tracehold/app/_internal/appliance/console/main.py"
    assert str(resources.console_main()) not in cs.command


def test_a_program_no_image_holds_is_refused() -> None:
    with pytest.raises(ConfigError, match="not in any image"):
        dr.map_argv(["/usr/bin/true"], ("prometheus",))


def test_environment_is_the_specs_plus_the_settings_a_child_inherits(s: Settings) -> None:
    spec = ComponentSpec("console", ["x"], 1, None, env={"A": "1"})
    env = dr.environment(spec, {"TRACEHOLD_PORTS__DAEMON": "1234", "HOME": "/root",
                                "PATH": "/usr/bin", "A": "0"})
    assert env == {"TRACEHOLD_PORTS__DAEMON": "1234", "A": "1"}


def test_binds_data_rw_and_outside_files_ro_at_their_paths(
        s: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "models" / "m.gguf"
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    config = tmp_path / "etc" / "tracehold.toml"
    config.parent.mkdir()
    config.write_text("")
    monkeypatch.setenv("TRACEHOLD_CONFIG", str(config))
    s.data_dir.mkdir()
    s2 = s.model_copy(update={"rca_model_name": str(model)})
    data = str(s.data_dir.resolve())
    assert dr.binds(s2) == {
        data: {"bind": data, "mode": "rw"},
        str(config): {"bind": str(config), "mode": "ro"},
        str(model): {"bind": str(model), "mode": "ro"},
    }
    # a model named (not a path) or a config inside the data folder adds nothing
    monkeypatch.delenv("TRACEHOLD_CONFIG")
    (s.data_dir / "config.toml").write_text("")
    assert list(dr.binds(s)) == [data]


def test_names_are_per_data_folder_and_component(tmp_path: Path) -> None:
    a = dr.container_name(tmp_path / "a", "daemon")
    assert a.startswith("tracehold-") and a.endswith("-daemon")
    assert a == dr.container_name(tmp_path / "a", "daemon")
    assert a != dr.container_name(tmp_path / "b", "daemon")


class FakeImages:
    """The engine's images as load_missing uses them: ids it has, what a load yields."""

    def __init__(self, have: set[str], loads_as: str) -> None:
        self.have, self.loads_as = have, loads_as
        self.loaded: list[str] = []
        self.removed: list[str] = []

    def get(self, ref: str) -> Any:
        from docker.errors import ImageNotFound

        if ref in self.have:
            return type("Img", (), {"id": self.loads_as})()
        raise ImageNotFound(ref)

    def load(self, data: Any) -> list[Any]:
        self.loaded.append(data.name)
        self.have.add("tracehold/prometheus:1")
        return []

    def remove(self, ref: str, force: bool = False) -> None:
        self.removed.append(ref)


def _lock(folder: Path, image_id: str) -> Path:
    images = folder / "images"
    images.mkdir()
    (images / "prometheus.tar").write_bytes(b"tar")
    (images / "images.lock").write_text(
        f'[images.prometheus]\nref = "tracehold/prometheus:1"\nid = "{image_id}"\n'
        'archive = "images/prometheus.tar"\ncomponents = ["prometheus"]\n')
    return images


def test_load_missing_loads_what_the_engine_lacks_and_refuses_a_wrong_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the engine's side of a load, faked (the real `docker load` is the integration tests')
    monkeypatch.setattr(dr, "load", lambda client, data: client.images.load(data))
    good = "sha256:" + "a" * 64
    images = _lock(tmp_path, good)
    engine = FakeImages(set(), loads_as=good)
    docker_client: Any = type("C", (), {"images": engine})()
    assert dr.load_missing(docker_client, images, progress=lambda _: None) == [
        "tracehold/prometheus:1"]
    assert engine.loaded == [str(images / "prometheus.tar")]
    # present (by id): not loaded again
    engine.have.add(good)
    assert dr.load_missing(docker_client, images, progress=lambda _: None) == []

    wrong = FakeImages(set(), loads_as="sha256:" + "b" * 64)
    docker_client = type("C", (), {"images": wrong})()
    with pytest.raises(ConfigError, match="prometheus.tar holds sha256:b+, not"):
        dr.load_missing(docker_client, images, progress=lambda _: None)
    assert wrong.removed == ["tracehold/prometheus:1"]


# -- compose --------------------------------------------------------------------------------

def _document(s: Settings) -> dict[str, Any]:
    return compose.document(s, Rendered.under(s.run_dir), tag="1")


def test_compose_profiles_run_what_each_tracehold_profile_runs(s: Settings) -> None:
    doc = _document(s)
    for p in Profile:
        chosen = {svc["labels"]["tracehold.component"] for svc in doc["services"].values()
                  if str(p) in svc["profiles"]}
        assert chosen == {c.name for c in components.running(s.model_copy(
            update={"profile": p, "demo": False}))}, p
    demo = doc["services"]["demo"]
    assert demo["profiles"] == ["demo"]
    for svc in doc["services"].values():
        assert svc["network_mode"] == "host" and svc["restart"] == "unless-stopped"
        assert svc["entrypoint"][0].startswith("/opt/tracehold/")


def test_compose_health_checks_use_programs_the_images_have(s: Settings) -> None:
    services = _document(s)["services"]
    assert services["prometheus"]["healthcheck"]["test"][1] == str(ci.BIN / "promtool")
    assert services["daemon"]["healthcheck"]["test"][1:3] == [str(ci.APP_EXECUTABLE), "-c"]
    for name in ("collector", "victoriametrics", "envoy", "demo"):
        assert "healthcheck" not in services[name], name


def test_compose_escapes_dollars(s: Settings) -> None:
    spec = ComponentSpec("daemon", [sys.executable, "-m", "appliance.daemon", "a$b"], 1,
                         None, env={"K": "x$y"})
    svc = compose.service(s, spec, ["full"], tag="1")
    assert svc["command"][-1] == "a$$b" and svc["environment"]["K"] == "x$$y"


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose is not installed (make test-setup)")
def test_docker_compose_accepts_the_file_for_every_profile(s: Settings,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "docker-compose.yml"
    compose.write(s, out, tag="1")
    assert (s.run_dir / "otelcol.yaml").exists()  # the configs it points at are rendered
    for p in Profile:
        done = subprocess.run(["docker-compose", "-f", str(out), "--profile", str(p),
                               "config"], capture_output=True, text=True, check=False,
                              env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        services = yaml.safe_load(done.stdout)["services"]
        active = {svc["labels"]["tracehold.component"] for svc in services.values()
                  if str(p) in svc.get("profiles", [])}
        assert active == {c.name for c in components.running(s.model_copy(
            update={"profile": p}))}


# -- the installer's config.toml ------------------------------------------------------------

def test_the_installer_sets_the_docker_keys_above_any_table_and_keeps_the_rest(
        tmp_path: Path) -> None:
    import tomllib

    from appliance.airgap.installer import Layout, docker_settings, with_settings

    text = ('# Written by the Tracehold installer\nbin_dir = "/opt/x/bin"\nruntime = "native"\n'
            '\n[[notify.destinations]]\nname = "hook"\nkind = "webhook"\nurl = "http://h/"\n')
    values = docker_settings(Layout(tmp_path / "opt"), "unix:///run/d.sock")
    out = with_settings(text, values)
    assert out.startswith("# Written by the Tracehold installer\nruntime = \"docker\"\n")
    parsed = tomllib.loads(out)
    assert parsed["runtime"] == "docker" and parsed["docker_host"] == "unix:///run/d.sock"
    assert parsed["images_dir"] == str(tmp_path / "opt" / "current" / "images")
    assert parsed["bin_dir"] == "/opt/x/bin"
    assert parsed["notify"]["destinations"][0]["name"] == "hook"
    assert with_settings(out, values) == out  # set again: the same file
    Settings.model_validate({k: v for k, v in parsed.items() if k != "notify"})
