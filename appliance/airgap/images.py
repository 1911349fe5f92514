"""The Docker runtime's images (``bundled-stack/images.lock``), built from scratch.

Nothing can be pulled where Tracehold is built or installed, so there is no base image:
each image is one layer, a minimal root filesystem (appliance/airgap/rootfs.py) of the
binaries from the bin folder, or the frozen appliance folder, plus the libraries they
link. Its config is written here with the build's fixed time, so the image id (the
config's sha256) is the same whenever the inputs are. The image is loaded into the build
host's engine in ``docker load`` form, tagged ``tracehold/<name>:<version>``, and what
``docker save`` gives back is what the bundle carries (``images/<name>.tar``), with
``images/images.lock`` saying which id each archive must load as.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.airgap import rootfs
from appliance.errors import ConfigError, StackError
from appliance.stack import container_images as ci
from appliance.stack import docker_runtime

WORKDIR = str(ci.ROOT)
ENV = [f"PATH={ci.BIN}:/usr/bin:/bin"]
BUILT_BY = "tracehold bundle build"
CHUNK = 1 << 20
BLOCK = 512

Stage = Callable[[str], None]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    ref: str
    id: str  # sha256:<config digest>
    archive: str  # in the bundle, images/<name>.tar
    bytes: int
    seconds: float
    components: tuple[str, ...]


def connect(url: str) -> Any:
    """A Docker SDK client of the engine at ``url``; a ConfigError if none answers."""
    try:
        return docker_runtime.client(url, timeout=900)
    except StackError as e:
        raise ConfigError(
            f"no Docker engine answers at {url} ({_reason(e)}): the bundle's container "
            "images are built with one. Start it or name another with --docker-host URL "
            "(or DOCKER_HOST), or build a native-only bundle with --no-images") from e


def _reason(e: BaseException) -> str:
    """The OS's word for why (refused, no such file), not the SDK's three wrappers."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(e)[:160]


def _add_frozen(tree: rootfs.Tree, folder: Path) -> frozenset[str]:
    """The frozen appliance folder at /opt/tracehold/app (links inside it stay links);
    the file names it carries, which the libraries' search then skips."""
    base, real_base = ci.APP.relative_to("/"), folder.resolve()
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        here = Path(dirpath)
        rel_dir = here.relative_to(folder)
        for name in sorted(dirnames + filenames):
            path, dest = here / name, str(base / rel_dir / name)
            names.add(name)
            if path.is_symlink():
                real = path.resolve()
                if real.is_relative_to(real_base):
                    tree.symlink(dest, os.path.relpath(real, real_base / rel_dir))
                    if name in dirnames:
                        dirnames.remove(name)  # walked where it points
                    continue
                path = real  # outside the folder: stored as what it names
            if path.is_dir():
                tree.dir(dest)
            elif path.is_file():
                tree.file(dest, path)
    return frozenset(names)


def tree(image: ci.Image, *, bin_dir: Path, frozen_dir: Path | None,
         stage: Stage | None = None) -> rootfs.Tree:
    """What goes into ``image``: its binaries or the frozen folder, and their libraries."""
    from appliance.stack.envoy import envoy_binary

    t, have, first = rootfs.Tree(), frozenset[str](), frozenset[Path]()
    if image.frozen_appliance:
        if frozen_dir is None or not (frozen_dir / ci.APP_EXECUTABLE.name).is_file():
            raise ConfigError(f"the {image.name} image needs the frozen appliance folder "
                              f"(no `tracehold` executable in {frozen_dir})")
        have = _add_frozen(t, frozen_dir)
        first = frozenset(p.resolve() for p in frozen_dir.iterdir() if p.is_file())
    for name in image.binaries:
        src = envoy_binary(bin_dir) if name == "envoy" else bin_dir / name
        if not src.is_file():
            raise ConfigError(f"{name} not in {bin_dir}: run `tracehold setup` (or "
                              "`make setup`) on this build host first")
        t.file(str((ci.BIN / name).relative_to("/")), src.resolve())
    missing = rootfs.add_libraries(t, have, first)
    if missing and not image.frozen_appliance:
        raise ConfigError(f"the {image.name} image: {', '.join(missing)} linked but not "
                          "found on this build host")
    if missing and stage is not None:
        # A frozen folder's optional extension modules may link what nothing here has;
        # PyInstaller collected them all the same. Said, not fatal.
        stage(f"  {image.name}: not found on this host (optional modules): "
              f"{', '.join(missing)}")
    return t


def config(image: ci.Image, diff_id: str, version: str, built_at: int) -> bytes:
    """The image config; its sha256 is the image id."""
    created = datetime.fromtimestamp(built_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "architecture": "amd64", "os": "linux", "created": created, "author": BUILT_BY,
        "config": {"Env": ENV, "WorkingDir": WORKDIR, "Labels": {
            "org.opencontainers.image.title": f"{ci.REPOSITORY}/{image.name}",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": created,
            "org.tracehold.components": ",".join(image.components),
            "org.tracehold.source": "scratch",
            "org.tracehold.built-by": f"{BUILT_BY}, from scratch (no base image)"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"{BUILT_BY}: from scratch, "
                     f"{' '.join(image.binaries) or 'the frozen appliance'} and the "
                     "libraries they link"}],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _member(name: str, size: int, mtime: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def load_stream(ref: str, cfg: bytes, layer: Path, diff_id: str,
                mtime: int) -> Iterator[bytes]:
    """A ``docker load`` archive (manifest.json, the config, the layer) as a stream, so
    a layer of a gigabyte is not written twice."""
    config_name, layer_dir = f"{hashlib.sha256(cfg).hexdigest()}.json", diff_id[7:]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref],
                            "Layers": [f"{layer_dir}/layer.tar"]}]).encode()
    for name, data in ((config_name, cfg), ("manifest.json", manifest)):
        yield _member(name, len(data), mtime) + data + _pad(len(data))
    yield _member(layer_dir, 0, mtime, directory=True)
    size = layer.stat().st_size
    yield _member(f"{layer_dir}/layer.tar", size, mtime)
    with layer.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
    yield _pad(size) + b"\0" * (2 * BLOCK)


def build_image(client: Any, image: ci.Image, *, bin_dir: Path, frozen_dir: Path | None,
                version: str, built_at: int, stage: Stage | None = None) -> str:
    """Build ``image`` from scratch, load it into ``client``'s engine tagged
    ``tracehold/<name>:<version>``; its id (``sha256:...``, the same for the same
    inputs)."""
    import docker

    t = tree(image, bin_dir=bin_dir, frozen_dir=frozen_dir, stage=stage)
    ref = image.ref(version)
    with tempfile.TemporaryDirectory(prefix="tracehold-image-") as tmp:
        layer = Path(tmp) / "layer.tar"
        diff_id = rootfs.write_layer(t, layer, built_at)
        cfg = config(image, diff_id, version, built_at)
        image_id = f"sha256:{hashlib.sha256(cfg).hexdigest()}"
        try:
            loaded = docker_runtime.load(client, load_stream(ref, cfg, layer, diff_id, built_at))
        except docker.errors.DockerException as e:
            raise ConfigError(f"the Docker engine refused the {ref} image: {e}") from e
    if loaded != [image_id]:
        raise ConfigError(f"{ref} loaded as {loaded}, built as {image_id}")
    return image_id


def save(client: Any, ref: str, out: Path) -> int:
    """``docker save`` of ``ref`` into ``out``; its size."""
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("wb") as f:
        for chunk in client.images.get(ref).save(chunk_size=CHUNK, named=ref):
            f.write(chunk)
    os.replace(tmp, out)
    return out.stat().st_size


def lock_text(built: list[BuiltImage]) -> str:
    """The bundle's ``images/images.lock``: each image's ref, id and archive."""
    lines = ["# The container images in this bundle, built from scratch by "
             f"`{BUILT_BY}`;", "# an archive that does not load as its id is refused.", ""]
    for b in built:
        lines += [f"[images.{b.name}]", f"ref = {json.dumps(b.ref)}",
                  f"id = {json.dumps(b.id)}", f"archive = {json.dumps(b.archive)}",
                  f"components = {json.dumps(list(b.components))}", 'source = "scratch"', ""]
    return "\n".join(lines)


def stage_images(client: Any, top: Path, *, bin_dir: Path, frozen_dir: Path, version: str,
                 built_at: int, stage: Stage) -> list[BuiltImage]:
    """Every image of the lock, built, saved into ``top/images`` and listed in its
    ``images.lock``."""
    out = top / "images"
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for name, image in ci.images().items():
        t0 = time.monotonic()
        ref = image.ref(version)
        stage(f"image {ref}: building from scratch")
        image_id = build_image(client, image, bin_dir=bin_dir, frozen_dir=frozen_dir,
                               version=version, built_at=built_at, stage=stage)
        size = save(client, ref, out / f"{name}.tar")
        b = BuiltImage(name, ref, image_id, f"images/{name}.tar", size,
                       round(time.monotonic() - t0, 1), image.components)
        stage(f"  {ref}: {image_id[:19]}, {size / 2**20:.0f} MiB in {b.seconds:.0f} s")
        built.append(b)
    (out / ci.LOCK).write_text(lock_text(built))
    return built
