"""The offline installer (``install.sh`` → ``tracehold bundle install``): checks the whole
bundle before touching anything, then installs it under a prefix and starts it.

Layout under the prefix (default ``/opt/tracehold``)::

    releases/<version>-<manifest digest>/   one folder per installed bundle
    current -> releases/...                 switched atomically (a symlink replaced)
    bin/tracehold -> ../current/appliance/tracehold

Data (default ``/var/lib/tracehold``, 0700) holds the span store, the keys, the
secrets and ``config.toml``; an upgrade and an uninstall without ``--purge`` never touch
it. A release is copied into ``<release>.partial`` and renamed only when complete, so an
install interrupted halfway leaves nothing in use and can simply be run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance.airgap import manifest as mf
from appliance.airgap.verify import verify_bundle
from appliance.errors import ConfigError, Conflict, StackError
from appliance.settings import default_docker_host

Progress = Callable[[str], None]
Runtime = Literal["native", "docker"]
DEFAULT_PREFIX = Path("/opt/tracehold")
DEFAULT_DATA = Path("/var/lib/tracehold")


@dataclass(frozen=True)
class Layout:
    prefix: Path

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    @property
    def releases(self) -> Path:
        return self.prefix / "releases"

    @property
    def command(self) -> Path:
        return self.prefix / "bin" / "tracehold"

    def release(self, manifest: mf.Manifest) -> Path:
        digest = hashlib.sha256(manifest.dumps()).hexdigest()[:12]
        return self.releases / f"{manifest.version}-{digest}"

    def installed(self) -> bool:
        return self.current.is_symlink() and self.current.resolve().is_dir()


def _relink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one step (a new link renamed over the old)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def copy_release(bundle: Path, manifest: mf.Manifest, release: Path,
                 progress: Progress) -> None:
    if release.is_dir():
        progress(f"{release.name}: already in place")
        return
    partial = release.with_name(release.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a run interrupted earlier
    for n, entry in enumerate(sorted(manifest.files, key=lambda f: f.path), 1):
        dst = partial / entry.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle / entry.path, dst)
        os.chmod(dst, 0o755 if entry.executable else 0o644)
        if n % 500 == 0 or n == len(manifest.files):
            progress(f"copied {n}/{len(manifest.files)} files")
    for name in (mf.MANIFEST, mf.SIGNATURE, mf.PUBLIC_KEY, mf.SUMS):
        shutil.copyfile(bundle / name, partial / name)
    os.replace(partial, release)


def config_text(layout: Layout, manifest: mf.Manifest) -> str:
    """The installed appliance's settings: where the bundle's binaries and model are."""
    model = next((f.path for f in manifest.files
                  if f.part == "models" and f.path.endswith(".gguf")), None)
    lines = ["# Written by the Tracehold installer; edit freely, `--upgrade` keeps it.",
             f'bin_dir = "{layout.current / "bin"}"']
    if model is not None:
        lines.append(f'rca_model_name = "{layout.current / model}"')
    return "\n".join(lines) + "\n"


def with_settings(text: str, values: dict[str, str]) -> str:
    """``config.toml`` with these top-level keys set (TOML strings), the rest kept: an
    earlier value of a key is dropped, the new ones go first, above any table."""
    lines, in_table = [], False
    for line in text.splitlines():
        in_table = in_table or line.lstrip().startswith("[")
        key = line.split("=", 1)[0].strip()
        if not in_table and "=" in line and key in values:
            continue
        lines.append(line)
    head = 1 if lines and lines[0].startswith("#") else 0
    new = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines[:head] + new + lines[head:]) + "\n"


def docker_settings(layout: Layout, docker_host: str) -> dict[str, str]:
    """What config.toml says for the docker runtime; the images folder is the current
    release's, so an upgrade's images are the ones found."""
    return {"runtime": "docker", "docker_host": docker_host,
            "images_dir": str(layout.current / "images")}


def load_images(layout: Layout, docker_host: str, progress: Progress) -> None:
    """Load the bundle's container images the engine lacks (checked against the lock)."""
    from appliance.stack import docker_runtime

    images = layout.current / "images"
    if not (images / "images.lock").is_file():
        raise ConfigError("this bundle has no container images (built with --no-images?): "
                          "install with --runtime native")
    client = docker_runtime.client(docker_host, timeout=1800)  # a load of ~1 GB
    try:
        loaded = docker_runtime.load_missing(client, images, progress)
    finally:
        client.close()
    progress(f"images: {len(loaded)} loaded, the others already in the engine")


def remove_containers(data_dir: Path, progress: Progress) -> None:
    """Remove what is left of the appliance's containers (a supervisor killed -9 leaves
    them); the images stay in the engine."""
    from appliance.settings import Runtime, resolve
    from appliance.stack import docker_runtime

    try:
        s = resolve(data_dir)
    except ConfigError:
        return
    if s.runtime is not Runtime.docker:
        return
    try:
        client = docker_runtime.client(s.docker_host)
    except StackError as exc:
        progress(f"containers not checked: {exc}")
        return
    try:
        gone = docker_runtime.remove_containers(client, data_dir)
    finally:
        client.close()
    if gone:
        progress(f"removed containers {', '.join(gone)}")
    progress("the images stay in the engine (`docker image ls tracehold/*`; "
             "`docker image rm` removes them)")


def _tracehold(layout: Layout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(layout.command), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise StackError(f"`tracehold {' '.join(args)}` failed ({done.returncode}):\n"
                         + (done.stderr or done.stdout)[-3000:])
    return done


def install(bundle: Path, prefix: Path = DEFAULT_PREFIX, data_dir: Path = DEFAULT_DATA, *,
            upgrade: bool = False, trusted_key: str | None = None, start: bool = True,
            start_args: tuple[str, ...] = (), runtime: Runtime = "native",
            docker_host: str | None = None, progress: Progress = print) -> Path:
    """Install (or with ``upgrade`` replace) the program; the release folder."""
    progress("checking every file's sha256 and the manifest's signature")
    manifest = verify_bundle(bundle, trusted_key)
    if trusted_key is None:
        progress(f"bundle intact; signed by {manifest.signing_key} (give --trusted-key to "
                 "require that key)")
    layout = Layout(prefix)
    if layout.installed() and not upgrade:
        raise Conflict(f"Tracehold is already installed in {prefix}: use --upgrade "
                       "(keeps data and keys) or --uninstall first")
    if upgrade and layout.installed():
        progress("stopping the running appliance")
        _tracehold(layout, "down", "--data-dir", str(data_dir), check=False)
    release = layout.release(manifest)
    copy_release(bundle, manifest, release, progress)
    _relink(layout.current, str(release.relative_to(prefix)))
    _relink(layout.command, "../current/appliance/tracehold")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    config = data_dir / "config.toml"
    if not config.exists():
        config.write_text(config_text(layout, manifest))
    before = tomllib.loads(config.read_text())
    if runtime == "docker" or (upgrade and before.get("runtime") == "docker"):
        host = docker_host or before.get("docker_host") or default_docker_host()
        load_images(layout, host, progress)
        config.write_text(with_settings(config.read_text(), docker_settings(layout, host)))
    progress(f"installed {manifest.version} in {release}")
    if start:
        progress("starting the appliance")
        done = _tracehold(layout, "up", "--detach", "--data-dir", str(data_dir), *start_args)
        progress(done.stdout.strip())
    return release


def uninstall(prefix: Path = DEFAULT_PREFIX, data_dir: Path = DEFAULT_DATA, *,
              purge: bool = False, progress: Progress = print) -> None:
    layout = Layout(prefix)
    if layout.command.exists():
        progress("stopping the appliance")
        _tracehold(layout, "down", "--data-dir", str(data_dir), check=False)
    remove_containers(data_dir, progress)
    for path in (layout.current, layout.command):
        path.unlink(missing_ok=True)
    shutil.rmtree(layout.releases, ignore_errors=True)
    shutil.rmtree(prefix / "bin", ignore_errors=True)
    progress(f"removed the program from {prefix}")
    if purge:
        shutil.rmtree(data_dir, ignore_errors=True)
        progress(f"removed the data in {data_dir}")
    else:
        progress(f"kept the data in {data_dir} (--purge removes it)")


def systemd_unit(prefix: Path, data_dir: Path) -> str:
    """A unit the operator may install; the installer prints it, never enables it."""
    return (f"[Unit]\nDescription=Tracehold GenAI observability appliance\n"
            f"After=network.target\n\n[Service]\n"
            f"ExecStart={prefix}/bin/tracehold up --data-dir {data_dir}\n"
            f"ExecStop={prefix}/bin/tracehold down --data-dir {data_dir}\n"
            f"Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n")
