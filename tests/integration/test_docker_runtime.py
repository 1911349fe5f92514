"""The Docker runtime on a real engine: a dockerd of the test's own (no bridge, no
iptables), the VictoriaMetrics, Prometheus, collector and Envoy images built from scratch
with the bundle's image builder from the bin folder, and the stack's supervisor driving
them as containers from real rendered configs (host networking): all healthy, a
container killed from outside is restarted, stop leaves no container. Then the
docker-compose file: `up -d` of two services comes up healthy.

Start times per container are written to test-output/docker/docker-runtime.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from appliance.settings import Profile, Runtime, Settings
from appliance.stack import components, render
from appliance.stack import container_images as ci
from appliance.stack.docker_runtime import (
    ContainerProcess,
    DockerLauncher,
    client,
    container_name,
    version,
)
from appliance.stack.supervisor import Status, Supervisor
from tests.dockerd import Dockerd, dockerd
from tests.supervising import wait_for

pytestmark = [pytest.mark.root, pytest.mark.binaries, pytest.mark.stack]

COMPONENTS = ("victoriametrics", "prometheus", "collector", "envoy")
TAG = "test"


def _output() -> Path:
    out = Path(os.environ.get("TRACEHOLD_TEST_OUTPUT", "test-output")) / "docker"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Dockerd, dict[str, float]]]:
    """A dockerd with the four images built from scratch; the seconds each build took."""
    from appliance.airgap.images import build_image

    bin_dir = Settings().bin_dir
    with dockerd() as d:
        c = client(d.url, timeout=600)
        seconds = {}
        for name in COMPONENTS:
            t0 = time.monotonic()
            build_image(c, ci.images()[name], bin_dir=bin_dir, frozen_dir=None,
                        version=TAG, built_at=1790000000)
            seconds[name] = round(time.monotonic() - t0, 1)
        c.close()
        yield d, seconds


def _settings(data: Path, url: str) -> Settings:
    s = Settings(data_dir=data, profile=Profile.full, runtime=Runtime.docker, docker_host=url,
                 bind_address="127.0.0.1")
    s.ports = s.ports.free()
    return s


def _ours(url: str) -> list[Any]:
    c = client(url)
    try:
        return list(c.containers.list(all=True))
    finally:
        c.close()


def test_the_supervisor_runs_components_as_containers(
        engine: tuple[Dockerd, dict[str, float]], tmp_path: Path) -> None:
    d, build_seconds = engine
    s = _settings(tmp_path / "data", d.url)
    s.log_dir.mkdir(parents=True)
    rendered = render.write_all(s, [])
    specs = [components.declared(n).spec(s, rendered) for n in COMPONENTS]
    launcher = DockerLauncher(s, tag=TAG)
    launcher.prepare(specs)
    lines: list[str] = []
    sup = Supervisor(specs, s.log_dir, launcher=launcher, backoff_max=1.0)
    try:
        sup.start(timeout_each=90, progress=lines.append)
        started = {ln.split()[0]: float(ln.split()[-1].rstrip("s"))
                   for ln in lines if " healthy in " in ln}
        assert set(started) == set(COMPONENTS)
        snap = {c["name"]: c for c in sup.snapshot()}
        assert all(c["status"] == "ok" and c["container_id"] for c in snap.values()), snap
        # the containers are ours, on the host network, named after the data folder
        running = {c.name: c for c in _ours(d.url)}
        assert set(running) == {container_name(s.data_dir, n) for n in COMPONENTS}
        assert {c.attrs["HostConfig"]["NetworkMode"] for c in running.values()} == {"host"}
        # reachable on the host's loopback like the native stack: VictoriaMetrics' health
        r = httpx.get(f"http://127.0.0.1:{s.ports.victoriametrics}/health", timeout=5)
        assert r.status_code == 200
        # the log is streamed to the same file as native
        wait_for(lambda: (s.log_dir / "envoy.log").stat().st_size > 0
                 if (s.log_dir / "envoy.log").exists() else False, timeout=30)

        # killed from outside: the supervisor notices and starts a new container
        item = next(i for i in sup.items if i.spec.name == "collector")
        assert isinstance(item.proc, ContainerProcess)
        old = item.proc.container_id
        c = client(d.url)
        t0 = time.monotonic()
        c.containers.get(old).kill()

        def restarted() -> bool:
            sup.tick()
            return (item.status is Status.ok and isinstance(item.proc, ContainerProcess)
                    and item.proc.container_id != old)

        wait_for(restarted, timeout=90)
        restart_s = round(time.monotonic() - t0, 1)
        assert item.restarts == 1 and item.last_exit == -9
        names = [x.name for x in c.containers.list(all=True)]
        assert names.count(container_name(s.data_dir, "collector")) == 1  # the old one gone
        c.close()
    finally:
        sup.stop()
    assert _ours(d.url) == [], "stop left containers behind"
    assert all(i.status is Status.stopped for i in sup.items)
    (_output() / "docker-runtime.json").write_text(json.dumps({
        "image_build_s": build_seconds, "container_start_to_healthy_s": started,
        "kill_to_healthy_again_s": restart_s}, indent=1))


def _compose(*args: str, f: Path, url: str, timeout: float = 300) -> str:
    done = subprocess.run(["docker-compose", "-f", str(f), "-p", "thtest", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DOCKER_HOST": url})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_compose_up_of_two_services_comes_up_healthy(
        engine: tuple[Dockerd, dict[str, float]], tmp_path: Path) -> None:
    """Prometheus (whose image can check itself with promtool) and VictoriaMetrics, from
    the generated file, cut to those two services."""
    from appliance.stack.compose import write

    d, _ = engine
    s = _settings(tmp_path / "data", d.url)
    full = tmp_path / "full.yml"
    write(s, full, tag=TAG)
    doc = yaml.safe_load(full.read_text())
    doc["services"] = {k: v for k, v in doc["services"].items()
                       if k in ("victoriametrics", "prometheus")}
    f = tmp_path / "two.yml"
    f.write_text(yaml.safe_dump(doc))
    _compose("--profile", "full", "up", "-d", f=f, url=d.url)
    try:
        c = client(d.url)

        def healthy() -> bool:
            states = [x.attrs["State"] for x in c.containers.list(all=True)]
            return len(states) == 2 and all(st["Running"] for st in states) and any(
                st.get("Health", {}).get("Status") == "healthy" for st in states)

        wait_for(healthy, timeout=120)
        r = httpx.get(f"http://127.0.0.1:{s.ports.victoriametrics}/health", timeout=5)
        assert r.status_code == 200
        c.close()
    finally:
        _compose("down", f=f, url=d.url)
    assert _ours(d.url) == []
    assert version()  # the tag the runtime asks for by default is the package's
