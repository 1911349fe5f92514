"""The container images' root filesystem and the bundle build's Docker options, without
an engine (tests/integration/test_container_images.py builds, loads and runs them):
the layer is the same bytes twice and holds every library its ELF files link, at the
host's paths; a frozen folder's own libraries are not copied again; the lock text is
the format the runtime reads; no engine is a clear error before anything is written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zlib
from pathlib import Path, PurePosixPath

import pytest

from appliance.airgap import images, rootfs
from appliance.settings import default_docker_host
from appliance.stack import container_images as ci

TRUE = Path(shutil.which("true") or "/bin/true").resolve()  # dynamically linked to libc
ZLIB_MODULE = Path(zlib.__file__ or "")  # an ELF that links libz.so.1


def _resolve(members: dict[str, tarfile.TarInfo], path: str) -> tarfile.TarInfo:
    """Follow the layer's own symlinks, as the loader in the container would."""
    todo = PurePosixPath(path.lstrip("/"))
    for _ in range(40):
        walked = PurePosixPath()
        for part in todo.parts:
            walked /= part
            m = members[str(walked)]
            if m.issym():
                base = PurePosixPath("/") if m.linkname.startswith("/") else walked.parent
                target = os.path.normpath(base / m.linkname).lstrip("/")
                todo = PurePosixPath(target) / todo.relative_to(walked)
                break
        else:
            return members[str(todo)]
    raise AssertionError(f"{path}: a link loop in the layer")


def test_a_layer_is_the_same_bytes_twice_and_holds_every_library_its_files_link(
        tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    shutil.copy(TRUE, tmp_path / "bin" / "true")
    image = ci.Image("t", ("t",), ("true",))
    digests = [rootfs.write_layer(images.tree(image, bin_dir=tmp_path / "bin",
                                              frozen_dir=None), tmp_path / f"{n}.tar",
                                  1790000000) for n in (1, 2)]
    assert digests[0] == digests[1]
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()

    with tarfile.open(tmp_path / "1.tar") as tar:
        listed = tar.getmembers()
        members = {m.name: m for m in listed}
        assert [m.name for m in listed] == sorted(members)
        assert {(m.uid, m.gid, m.mtime) for m in listed} == {(0, 0, 1790000000)}
        assert members["tmp"].mode == 0o1777 and members["tmp"].isdir()
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        assert [ln.split(":")[0] for ln in passwd.splitlines()] == ["root", "nobody"]
        binary = members[str((ci.BIN / "true").relative_to("/"))]
        assert binary.mode == 0o755
        found, missing = rootfs.needed(TRUE)
        assert found and not missing
        for lib in found:  # the host path, symlinks and all, ends at the host's bytes
            inside = _resolve(members, lib)
            assert inside.isfile(), lib
            data = tar.extractfile(inside).read()  # type: ignore[union-attr]
            assert data == Path(lib).resolve().read_bytes(), lib


def test_a_frozen_folders_own_libraries_are_not_copied_but_its_bootloaders_are(
        tmp_path: Path) -> None:
    frozen = tmp_path / "frozen"
    (frozen / "_internal").mkdir(parents=True)
    shutil.copy(TRUE, frozen / "tracehold")  # the bootloader: loaded with the host's path
    shutil.copy(ZLIB_MODULE, frozen / "_internal" / "zlib.so")  # links libz.so.1...
    (frozen / "_internal" / "libz.so.1.9").write_bytes(b"the folder's own")  # ...it has
    (frozen / "_internal" / "libz.so.1").symlink_to("libz.so.1.9")
    t = images.tree(ci.images()["appliance"], bin_dir=tmp_path, frozen_dir=frozen)
    app = str(ci.APP.relative_to("/"))
    assert t.entries[f"{app}/_internal/libz.so.1"].target == "libz.so.1.9"  # a link still
    host_libz = {p for p, e in t.entries.items() if not p.startswith(app)
                 and p.rsplit("/", 1)[-1].startswith("libz.so")}
    assert host_libz == set()
    # A bootloader that links libz itself runs before the folder is on the loader's
    # path: the host's libz goes in too.
    shutil.copy(ZLIB_MODULE, frozen / "tracehold")
    t = images.tree(ci.images()["appliance"], bin_dir=tmp_path, frozen_dir=frozen)
    libz = next(p for p in rootfs.needed(ZLIB_MODULE)[0] if "libz.so" in p)
    assert any(e.source == Path(libz).resolve() for e in t.entries.values())


def test_the_lock_text_is_what_the_runtime_reads() -> None:
    built = [images.BuiltImage("collector", "tracehold/collector:1.2.3", "sha256:" + "a" * 64,
                               "images/collector.tar", 10, 1.0, ("collector",))]
    lock = tomllib.loads(images.lock_text(built))
    assert lock == {"images": {"collector": {
        "ref": "tracehold/collector:1.2.3", "id": "sha256:" + "a" * 64,
        "archive": "images/collector.tar", "components": ["collector"],
        "source": "scratch"}}}


def test_the_docker_host_is_docker_host_else_the_local_socket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert default_docker_host() == "tcp://10.0.0.1:2375"
    monkeypatch.delenv("DOCKER_HOST")
    assert default_docker_host() == "unix:///var/run/docker.sock"


def test_no_engine_is_a_clear_error_before_anything_is_written(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/no-engine.sock"
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "bundle", "build", "--out", str(tmp_path / "out"),
         "--signing-key", str(tmp_path / "key.pem"), "--docker-host", address, "--json"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert address in done.stderr and "No such file" in done.stderr
    assert "--docker-host" in done.stderr and "--no-images" in done.stderr  # both ways out
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "key.pem").exists()
