"""The air-gap bundle on the Docker runtime: the same walk as test_airgap.py, with every
component in a container. A dockerd of the test's own starts INSIDE a network namespace
that has only loopback (so the host-network containers share it); the bundle is
installed from a clean prefix with the bare PATH by ``install.sh --runtime docker
--docker-host <that engine>``, which loads the bundle's images (nothing can be pulled).

Shown: the install starts the stack on containers and it is healthy; a test trace goes
in through Envoy and its metric is queryable (install-to-first-metric seconds are written
to test-output/airgap/airgap-docker.json and bench/results/airgap-docker.json); a demo
failure opens a case, the RCA runs with the bundled model inside the appliance's
container, the case's export verifies, and strace attached to every container's
processes records connect() calls to loopback only; `down` leaves no container; `--upgrade` over the
running appliance restarts it on containers and keeps every span and case; uninstall
removes the containers, the program and the data (the images stay in the engine).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from appliance.stack.docker_runtime import client
from tests.airgap import (
    WEBHOOK,
    Host,
    _counts,
    _json,
    _output_dir,
    _unpack,
    demo_case_walk,
    network_namespace,
    outside_loopback,
)
from tests.dockerd import dockerd

pytestmark = [pytest.mark.airgap, pytest.mark.binaries, pytest.mark.root, pytest.mark.stack]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "results" / "airgap-docker.json"


def _containers(url: str) -> list[str]:
    c = client(url)
    try:
        return [str(x.name) for x in c.containers.list(all=True)]
    finally:
        c.close()


def test_the_bundle_installs_and_runs_on_docker_with_no_network(airgap_bundle: Path,
                                                                tmp_path: Path) -> None:
    out = _output_dir()
    home = tmp_path / "home"
    home.mkdir()
    top = _unpack(airgap_bundle, tmp_path / "unpacked")
    assert (top / "images" / "images.lock").is_file(), "the bundle carries no images"
    prefix, data = tmp_path / "opt" / "tracehold", tmp_path / "var" / "tracehold"
    cmd = str(prefix / "bin" / "tracehold")
    report: dict[str, object] = {"bundle_bytes": airgap_bundle.stat().st_size,
                                 "images_bytes": sum(p.stat().st_size for p in
                                                     (top / "images").glob("*.tar"))}
    with network_namespace() as ns, dockerd(netns=ns) as engine:
        host = Host(ns, home)
        assert _containers(engine.url) == []
        t0 = time.monotonic()
        installed = host.run(str(top / "install.sh"), "--prefix", str(prefix), "--data-dir",
                             str(data), "--free-ports", "--bind", "127.0.0.1", "--runtime",
                             "docker", "--docker-host", engine.url, timeout=1800)
        report["install_s"] = round(time.monotonic() - t0, 1)
        assert "First API key" in installed.stdout, installed.stdout
        assert len(re.findall(r"loading image tracehold/", installed.stdout)) == 5, \
            installed.stdout
        trace = _json(host.run(cmd, "send-test-trace", "--json", "--timeout", "120",
                               "--data-dir", str(data), timeout=300))
        report["install_to_first_metric_s"] = round(time.monotonic() - t0, 1)
        assert trace.get("ok", True) is not False, trace
        status = _json(host.run(cmd, "status", "--json", "--data-dir", str(data)))
        assert status["running"] and status["runtime"] == "docker", status
        assert all(c["status"] == "ok" and c["container_id"] for c in status["components"])
        running = _containers(engine.url)
        assert len(running) == len(status["components"]), running
        report["components"] = {c["name"]: c["container_id"][:12]
                                for c in status["components"]}
        supervisor_log = (data / "logs" / "supervisor.log").read_text(errors="replace")
        report["container_start_to_healthy_s"] = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"^(\w+) healthy in ([\d.]+)s$", supervisor_log, re.M)}

        # Restarted with a webhook destination (the one address outside loopback allowed:
        # its attempts prove the recording sees connections that leave loopback), then
        # every connect() of the containers' processes is recorded: strace attached from
        # the host to each container's main process with all its threads and children (the
        # containers share the namespace's loopback-only network).
        host.run(cmd, "down", "--data-dir", str(data))
        with (data / "config.toml").open("a") as f:
            f.write(f'\n[[notify.destinations]]\nname = "hook"\nkind = "webhook"\n'
                    f'url = "http://{WEBHOOK[0]}:{WEBHOOK[1]}/tracehold"\n')
        host.run(cmd, "up", "--detach", "--data-dir", str(data), "--free-ports", "--bind",
                 "127.0.0.1", timeout=400)
        status = _json(host.run(cmd, "status", "--json", "--data-dir", str(data)))
        assert all(c["status"] == "ok" and c["pid"] for c in status["components"]), status
        strace_log = out / "docker-connect.strace"
        traced = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o",
             str(strace_log), *[a for c in status["components"] for a in ("-p", str(c["pid"]))]],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            host.run(cmd, "notify", "secret", "hook", "--value", "airgap-test-key",
                     "--data-dir", str(data))
            # the bundled GGUF is bound read-only into the appliance's container
            report["rca"] = demo_case_walk(host, cmd, data, prefix, tmp_path / "case.zip",
                                           wait_s=240)
            before = _counts(host, cmd, data)  # while running: status counts the spans
        finally:
            traced.terminate()  # detaches from the containers' processes
            traced.wait(timeout=60)
            host.run(cmd, "down", "--data-dir", str(data), check=False)
            for name in ("daemon.log", "supervisor.log"):
                if (data / "logs" / name).exists():
                    shutil.copy(data / "logs" / name, out / f"docker-{name}")
        assert _containers(engine.url) == [], "down left containers"
        recorded = strace_log.read_text(errors="replace")
        report["connect_calls"] = recorded.count("connect(")
        assert report["connect_calls"], "strace recorded nothing"  # scrapes, deliveries
        report["connects_outside_loopback"] = sorted(set(outside_loopback(recorded)))
        # the configured destination, tried from the daemon's container; no other
        assert report["connects_outside_loopback"] == [WEBHOOK], recorded[-3000:]

        # An upgrade over the running appliance (no --runtime: config.toml says docker)
        # stops its containers, finds the images in the engine and starts new containers.
        host.run(cmd, "up", "--detach", "--data-dir", str(data), "--free-ports", "--bind",
                 "127.0.0.1", timeout=400)
        old = set(_containers(engine.url))
        upgraded = host.run(str(top / "install.sh"), "--upgrade", "--prefix", str(prefix),
                            "--data-dir", str(data), "--free-ports", "--bind", "127.0.0.1",
                            timeout=900)
        assert "images: 0 loaded" in upgraded.stdout, upgraded.stdout
        status = _json(host.run(cmd, "status", "--json", "--data-dir", str(data)))
        assert status["runtime"] == "docker"
        assert all(c["status"] == "ok" and c["container_id"] for c in status["components"])
        assert set(_containers(engine.url)) == old  # same names, new containers
        after = _counts(host, cmd, data)
        report["counts_before_upgrade"], report["counts_after_upgrade"] = before, after
        assert after["spans"] == before["spans"] and after["cases"] == before["cases"]

        # Uninstall stops it and removes its containers; the images stay in the engine.
        removed = host.run(str(top / "install.sh"), "--uninstall", "--purge", "--prefix",
                           str(prefix), "--data-dir", str(data), timeout=300)
        assert "the images stay in the engine" in removed.stdout, removed.stdout
        assert not data.exists() and not (prefix / "current").exists()
        assert _containers(engine.url) == []
    text = json.dumps(report, indent=1)
    (out / "airgap-docker.json").write_text(text)
    BENCH.write_text(text + "\n")
