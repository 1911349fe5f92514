"""The Docker runtime's images, built from scratch (appliance/airgap/images.py), in a
dockerd of the test's own (tests/dockerd.py): they load, a container of each runs the
real binary with host networking, the same inputs give the same image id and the same
bytes, a damaged archive is refused, and `bundle build` carries them (images/*.tar,
images/images.lock, the signed manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from appliance.airgap import images, rootfs
from appliance.airgap import manifest as mf
from appliance.settings import Settings
from appliance.stack import container_images as ci
from appliance.stack import docker_runtime
from tests.dockerd import dockerd

pytestmark = [pytest.mark.root, pytest.mark.binaries]

VERSION = "0.0.0-test"
BUILT_AT = 1790000000


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with dockerd() as engine:
        c = images.connect(engine.url)
        try:
            yield c
        finally:
            c.close()


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return Settings().bin_dir


def _build(client: Any, name: str, bin_dir: Path, built_at: int = BUILT_AT) -> str:
    image_id: str = images.build_image(client, ci.images()[name], bin_dir=bin_dir,
                                       frozen_dir=None, version=VERSION, built_at=built_at)
    return image_id


def _run(client: Any, image_id: str, *argv: str) -> str:
    out: bytes = client.containers.run(image_id, list(argv), network_mode="host",
                                       remove=True, stdout=True, stderr=True)
    return out.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_prometheus_image_loads_and_its_binaries_answer(client: Any,
                                                            bin_dir: Path) -> None:
    image_id = _build(client, "prometheus", bin_dir)
    got = client.images.get(ci.images()["prometheus"].ref(VERSION))
    assert got.id == image_id
    assert got.labels["org.tracehold.source"] == "scratch"
    assert got.attrs["Config"]["Env"] == images.ENV
    assert got.attrs["Os"] == "linux" and got.attrs["Architecture"] == "amd64"
    assert len(got.attrs["RootFS"]["Layers"]) == 1  # no base image under it
    for binary in ("prometheus", "promtool"):
        host = subprocess.run([str(bin_dir / binary), "--version"], capture_output=True,
                              text=True, check=True)
        inside = _run(client, image_id, str(ci.BIN / binary), "--version")
        assert f"{binary}, version" in inside
        assert inside == host.stdout + host.stderr  # the same binary, not another


def test_the_victoriametrics_image_loads_and_serves(client: Any, bin_dir: Path) -> None:
    image_id = _build(client, "victoriametrics", bin_dir)
    # Debian's build prints an empty version line: -version shows that it starts (exit 0)
    # and says what the host's says; serving /health shows the rest.
    host = subprocess.run([str(bin_dir / "victoria-metrics"), "-version"],
                          capture_output=True, text=True, check=True)
    assert _run(client, image_id, str(ci.BIN / "victoria-metrics"), "-version") == host.stdout
    port = _free_port()
    container = client.containers.run(
        image_id, [str(ci.BIN / "victoria-metrics"), f"-httpListenAddr=127.0.0.1:{port}",
                   "-storageDataPath=/tmp/vm"], network_mode="host", detach=True)
    try:
        deadline, answer = time.monotonic() + 60, ""
        while time.monotonic() < deadline and answer != "OK":
            container.reload()
            assert container.status in ("created", "running"), container.logs()[-2000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2,
                                   trust_env=False).text.strip()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer == "OK", container.logs()[-2000:]
    finally:
        container.remove(force=True)


def test_two_builds_give_the_same_id_and_the_same_bytes(client: Any, bin_dir: Path,
                                                        tmp_path: Path) -> None:
    image = ci.images()["victoriametrics"]
    layers = []
    for n in (1, 2):
        t = images.tree(image, bin_dir=bin_dir, frozen_dir=None)
        digest = rootfs.write_layer(t, tmp_path / f"layer{n}.tar", BUILT_AT)
        layers.append((digest, (tmp_path / f"layer{n}.tar").read_bytes()))
    assert layers[0] == layers[1]
    digest = layers[0][0]
    assert digest == "sha256:" + hashlib.sha256(layers[0][1]).hexdigest()

    first = _build(client, "victoriametrics", bin_dir)
    images.save(client, image.ref(VERSION), tmp_path / "first.tar")
    client.images.remove(image.ref(VERSION), force=True)
    second = _build(client, "victoriametrics", bin_dir)
    images.save(client, image.ref(VERSION), tmp_path / "second.tar")
    expected = hashlib.sha256(images.config(image, digest, VERSION, BUILT_AT)).hexdigest()
    assert first == second == f"sha256:{expected}"
    assert (tmp_path / "first.tar").read_bytes() == (tmp_path / "second.tar").read_bytes()
    # ...and the id does follow the inputs: another build time, another image
    assert _build(client, "victoriametrics", bin_dir, BUILT_AT + 1) != first


def test_an_archive_with_one_flipped_byte_is_refused(client: Any, bin_dir: Path,
                                                     tmp_path: Path) -> None:
    image = ci.images()["victoriametrics"]
    image_id = _build(client, "victoriametrics", bin_dir)
    archive = tmp_path / "vm.tar"
    images.save(client, image.ref(VERSION), archive)
    client.images.remove(image_id, force=True)
    with tarfile.open(archive) as tar:
        layer = next(m for m in tar.getmembers() if m.name.endswith("layer.tar"))
    with archive.open("r+b") as f:  # a byte in the middle of the layer's content
        f.seek(layer.offset_data + layer.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    with archive.open("rb") as f, pytest.raises(docker.errors.ImageLoadError) as refused:
        docker_runtime.load(client, f)
    assert "diff" in str(refused.value).lower() or "digest" in str(refused.value).lower()
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image_id)
    with archive.open("r+b") as f:  # the byte put back, it loads as what it was
        f.seek(layer.offset_data + layer.size // 2)
        f.write(byte)
    with archive.open("rb") as f:
        assert docker_runtime.load(client, f) == [image_id]


@pytest.mark.airgap
def test_the_bundle_carries_the_images_its_lock_and_manifest_name(
        airgap_bundle: Path, client: Any, tmp_path: Path) -> None:
    with tarfile.open(airgap_bundle) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        lock = tomllib.loads(tar.extractfile(f"{top}/images/images.lock").read().decode())  # type: ignore[union-attr]
        manifest = mf.parse(tar.extractfile(f"{top}/{mf.MANIFEST}").read())  # type: ignore[union-attr]
        for name in ("victoriametrics", "appliance"):
            member = tar.extractfile(f"{top}/images/{name}.tar")
            assert member is not None
            (tmp_path / f"{name}.tar").write_bytes(member.read())
    assert set(lock["images"]) == set(ci.images())
    assert manifest.runtimes() == ["native", "docker"]
    by_file = {f.path: f for f in manifest.files}
    components = {c.files[0]: c for c in manifest.components if c.digest}
    for name, entry in lock["images"].items():
        assert entry["archive"] == f"images/{name}.tar" and entry["source"] == "scratch"
        assert entry["ref"] == f"tracehold/{name}:{manifest.version}"
        assert f"{top}/{entry['archive']}" in names
        assert by_file[entry["archive"]].part == "images"
        assert components[entry["archive"]].digest == entry["id"]
    # an archive from the bundle loads into another engine as the id its lock says
    with (tmp_path / "victoriametrics.tar").open("rb") as f:
        assert docker_runtime.load(client, f) == [lock["images"]["victoriametrics"]["id"]]
    # and the appliance's image runs the frozen appliance it carries
    with (tmp_path / "appliance.tar").open("rb") as f:
        appliance_id = lock["images"]["appliance"]["id"]
        assert docker_runtime.load(client, f) == [appliance_id]
    out = _run(client, appliance_id, str(ci.APP_EXECUTABLE), "--help")
    assert "bundle" in out and "up" in out, out
    built = json.loads((Path(os.environ.get("TRACEHOLD_TEST_OUTPUT", "test-output"))
                        / "airgap" / "bundle.json").read_text())
    assert {i["name"] for i in built["images"]} == set(ci.images())


def test_no_images_builds_a_native_only_bundle_without_an_engine(tmp_path: Path) -> None:
    # The frozen folder is a stand-in (one executable): what is checked is the images part.
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    (frozen / "tracehold").write_text("#!/bin/sh\n")
    (frozen / "tracehold").chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "bundle", "build", "--out", str(tmp_path / "out"),
         "--signing-key", str(tmp_path / "key.pem"), "--frozen", str(frozen), "--no-images",
         "--docker-host", f"unix://{tmp_path}/no-engine.sock", "--json"],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout)
    assert built["runtimes"] == ["native"] and built["images"] == []
    with tarfile.open(built["archive"]) as tar:
        top = tar.getnames()[0].split("/")[0]
        manifest = mf.parse(tar.extractfile(f"{top}/{mf.MANIFEST}").read())  # type: ignore[union-attr]
        assert not [n for n in tar.getnames() if n.startswith(f"{top}/images")]
    assert manifest.runtimes() == ["native"]
    assert not [c for c in manifest.components if c.digest]
    assert [c.source for c in manifest.components if c.name == mf.NO_IMAGES] == [
        "not built (bundle build --no-images): a native-only bundle, for install --runtime "
        "native"]
