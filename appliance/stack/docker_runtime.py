"""The Docker runtime (``runtime = "docker"``): each component runs as a container that the
same supervisor drives (health checks, restarts with backoff, hung-kill, ordered stop).

A ``ComponentSpec`` is the native one, mapped: the binary in the bin folder becomes the
same name under /opt/tracehold/bin in the component's image, an appliance module
(``python -m X`` or the frozen ``tracehold --run-module X``) becomes the image's frozen
``tracehold --run-module X``, and a file of the appliance (the console's ``main.py``)
the same file in the image's frozen folder. Every container uses the host's network
(all components talk over 127.0.0.1, as native), sees the data folder read-write at the
same path and the files the settings name outside it (config file, GGUF model)
read-only at their paths, so every rendered config and argv path means the same inside.

Containers run as root inside the image: what they write in the data folder is root's.
The images are built from scratch by ``tracehold bundle build`` (nothing is pulled, ever);
an image the engine lacks is loaded from the bundle's images folder (``load_missing``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import resources
from appliance.errors import ConfigError, StackError
from appliance.settings import Settings, config_file
from appliance.stack import container_images as ci
from appliance.stack.spec import ComponentSpec

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

LABEL = "tracehold.data_dir"  # every container of one appliance, for uninstall and tests
# Inside the frozen folder PyInstaller puts the packages under _internal/ (build.spec).
FROZEN_PACKAGE = ci.APP / "_internal" / "appliance"
STOP_LOG_WAIT_S = 5.0  # how long a stopped container's last log lines may take to arrive


def client(base_url: str, timeout: float = 60.0) -> DockerClient:
    """The engine at ``base_url``; StackError when it does not answer."""
    import docker
    from docker.errors import DockerException

    try:
        # a waiter and a log stream per container share the pool with the supervisor
        c = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout),
                                max_pool_size=32)
        c.ping()
    except DockerException as exc:
        raise StackError(f"no Docker engine answers at {base_url}: {exc}") from exc
    return c


def version() -> str:
    """The images' tag: the appliance's version, as `bundle build` tagged them."""
    return metadata.version("tracehold")


def container_name(data_dir: Path, component: str) -> str:
    """One name per appliance and component, so a restart finds (and removes) its old one."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"tracehold-{digest}-{component}"


# -- mapping a native spec into its container --------------------------------------------

def _appliance_files() -> dict[Path, str]:
    """The appliance's file folders on this host -> their place in the frozen folder."""
    return {resources.templates(): "bundled", resources.playbooks(): "kb_seed",
            resources.console_main().parent: "console"}


def map_path(arg: str) -> str:
    """A host path of the appliance's own files, as the image has it; others unchanged."""
    if not arg.startswith("/"):
        return arg
    path = Path(arg)
    if getattr(sys, "frozen", False):
        frozen = Path(sys.executable).parent
        if path.is_relative_to(frozen):
            return str(ci.APP / path.relative_to(frozen))
    for folder, name in _appliance_files().items():
        if path.is_relative_to(folder):
            return str(FROZEN_PACKAGE / name / path.relative_to(folder))
    return arg


def map_argv(argv: list[str], binaries: tuple[str, ...]) -> list[str]:
    """The native argv as the component's image runs it."""
    first, rest = argv[0], argv[1:]
    if first == sys.executable and rest[:1] in (["-m"], ["--run-module"]) and len(rest) > 1:
        return [str(ci.APP_EXECUTABLE), "--run-module", rest[1], *map(map_path, rest[2:])]
    if first == sys.executable and rest[:1] == ["-c"]:
        return [str(ci.APP_EXECUTABLE), *rest]
    name = Path(first).name
    if name in binaries:
        return [str(ci.BIN / name), *rest]
    raise ConfigError(f"{first} is not in any image: no image of {ci.LOCK} holds {name!r}")


def environment(spec: ComponentSpec, parent: dict[str, str] | None = None) -> dict[str, str]:
    """What a native child would see of the settings (the TRACEHOLD_* variables it
    inherits), plus the spec's own; nothing else of the host's environment."""
    env = {k: v for k, v in (os.environ if parent is None else parent).items()
           if k.startswith("TRACEHOLD_")}
    return {**env, **spec.env}


def binds(s: Settings) -> dict[str, dict[str, str]]:
    """The data folder read-write; the files settings name outside it read-only, each at
    its own path so every path in the settings and configs holds inside."""
    data = s.data_dir.resolve()
    out = {str(data): {"bind": str(data), "mode": "rw"}}
    outside: list[Path] = []
    config = config_file(s.data_dir)
    if config is not None:
        outside.append(config)
    model = Path(s.rca_model_name)
    if model.is_absolute() and model.is_file():
        outside.append(model)
    for path in outside:
        real = path.resolve()
        if not real.is_relative_to(data):
            out[str(real)] = {"bind": str(path), "mode": "ro"}
    return out


@dataclass(frozen=True)
class ContainerSpec:
    """What ``docker create`` is given for one component."""

    name: str
    image: str
    command: list[str]
    environment: dict[str, str]
    volumes: dict[str, dict[str, str]]
    labels: dict[str, str]


def container_spec(s: Settings, spec: ComponentSpec, tag: str | None = None) -> ContainerSpec:
    image = ci.for_component(spec.name)
    return ContainerSpec(
        name=container_name(s.data_dir, spec.name),
        image=image.ref(tag or version()),
        command=map_argv(spec.argv, image.binaries),
        environment=environment(spec),
        volumes=binds(s),
        labels={LABEL: str(s.data_dir.resolve()), "tracehold.component": spec.name},
    )


# -- images -------------------------------------------------------------------------------

def _lock(images_dir: Path) -> dict[str, dict[str, Any]]:
    path = images_dir / ci.LOCK
    try:
        data: dict[str, dict[str, Any]] = tomllib.loads(path.read_text())["images"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the bundle's image list {path}: {exc}") from exc
    return data


def load(client: Any, data: Any) -> list[str]:
    """``docker load`` of ``data`` (a file, bytes or a stream of chunks); the ids loaded.
    The engine's refusal (a layer that is not its diff id) raises the SDK's
    ImageLoadError. Done here rather than with ``client.images.load``, which leaves its
    response (and a socket) open. Both the runtime and `bundle build` load through it."""
    import docker

    api = client.api  # the SDK's low-level client is a requests session
    url = f"{api.base_url}/v{api.api_version}/images/load"
    ids: list[str] = []
    with api.post(url, data=data, stream=True) as res:
        if res.status_code != 200:
            raise docker.errors.ImageLoadError(f"{res.status_code}: {res.text[:500]}")
        for line in res.iter_lines():
            if not line.strip():
                continue
            msg = json.loads(line)
            if "errorDetail" in msg:
                raise docker.errors.ImageLoadError(msg["errorDetail"].get("message", msg))
            said = str(msg.get("stream", ""))
            if said.startswith("Loaded image ID: "):
                ids.append(said.split(": ", 1)[1].strip())
            elif said.startswith("Loaded image: "):
                ids.append(client.images.get(said.split(": ", 1)[1].strip()).id)
    return ids


def load_missing(docker_client: DockerClient, images_dir: Path,
                 progress: Any = print) -> list[str]:
    """Load every image of ``images_dir/images.lock`` the engine lacks; the refs loaded.
    An archive whose image id differs from the lock's is refused (and removed again)."""
    from docker.errors import ImageNotFound

    loaded = []
    for name, entry in _lock(images_dir).items():
        with contextlib.suppress(ImageNotFound):
            docker_client.images.get(entry["id"])
            continue
        archive = images_dir.parent / entry["archive"]
        if not archive.is_file():
            archive = images_dir / Path(entry["archive"]).name
        progress(f"loading image {entry['ref']} from {archive.name}")
        with archive.open("rb") as data:
            load(docker_client, data)
        got = docker_client.images.get(entry["ref"]).id
        if got != entry["id"]:
            with contextlib.suppress(Exception):
                docker_client.images.remove(entry["ref"], force=True)
            raise ConfigError(f"image archive {archive} holds {got}, not the {entry['id']} "
                              f"{ci.LOCK} names for {name}: refused")
        loaded.append(str(entry["ref"]))
    return loaded


def ensure_images(docker_client: DockerClient, specs: list[ComponentSpec],
                  images_dir: Path | None, tag: str | None = None) -> None:
    """Every image these components need is in the engine, loaded from ``images_dir`` if
    need be; ConfigError naming the missing ones otherwise."""
    from docker.errors import ImageNotFound

    def missing() -> list[str]:
        refs = {ci.for_component(sp.name).ref(tag or version()) for sp in specs}
        out = []
        for ref in sorted(refs):
            try:
                docker_client.images.get(ref)
            except ImageNotFound:
                out.append(ref)
        return out

    lacking = missing()
    if lacking and images_dir is not None:
        load_missing(docker_client, images_dir)
        lacking = missing()
    if lacking:
        where = (f"not in {images_dir} either" if images_dir is not None else
                 "and no images folder is set (images_dir; `tracehold bundle install "
                 "--runtime docker` loads them from the bundle)")
        raise ConfigError(f"the Docker engine lacks {', '.join(lacking)}, {where}")


def remove_containers(docker_client: DockerClient, data_dir: Path) -> list[str]:
    """Remove every container of the appliance on ``data_dir`` (uninstall, tests)."""
    found = docker_client.containers.list(all=True,
                                          filters={"label": f"{LABEL}={data_dir.resolve()}"})
    for c in found:
        with contextlib.suppress(Exception):
            c.remove(force=True)
    return [c.name for c in found]


# -- the launcher -------------------------------------------------------------------------

class ContainerProcess:
    """A running container, as the supervisor sees a process (supervisor.Process).

    A waiter thread blocks on the engine's wait; when the container ends, its last log
    lines are flushed, it is removed, and only then ``returncode`` is set, so an exited
    component leaves no container behind."""

    def __init__(self, container: Container, log: Path) -> None:
        self._c = container
        self.container_id: str = container.id or ""
        container.reload()
        self.pid: int = int(container.attrs["State"].get("Pid") or 0)
        self.returncode: int | None = None
        self._done = threading.Event()
        self._logger = threading.Thread(target=self._stream, args=(log,), daemon=True,
                                        name=f"log-{container.name}")
        self._logger.start()
        threading.Thread(target=self._wait, daemon=True, name=f"wait-{container.name}").start()

    def _stream(self, log: Path) -> None:
        with contextlib.suppress(Exception), open(log, "ab") as out:
            for chunk in self._c.logs(stream=True, follow=True):
                out.write(chunk)
                out.flush()

    def _wait(self) -> None:
        code = -1
        try:
            code = int(self._c.wait(timeout=None)["StatusCode"])
        except Exception:  # noqa: BLE001 - removed under us or the engine went away
            with contextlib.suppress(Exception):
                self._c.reload()
                code = int(self._c.attrs["State"]["ExitCode"])
        self._logger.join(STOP_LOG_WAIT_S)
        with contextlib.suppress(Exception):
            self._c.remove(force=True)
        # like Popen's: -N for a signal, here from the engine's 128+N
        self.returncode = -(code - 128) if 128 < code < 160 else code
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def _signal(self, sig: str) -> None:
        if self.returncode is None:
            with contextlib.suppress(Exception):  # already gone: the waiter notices
                self._c.kill(signal=sig)

    def terminate(self) -> None:
        self._signal("SIGTERM")

    def kill(self) -> None:
        self._signal("SIGKILL")

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self._c.name or self.container_id, timeout or 0)
        assert self.returncode is not None
        return self.returncode


class DockerLauncher:
    """Starts a component's container (supervisor.Launcher)."""

    def __init__(self, s: Settings, docker_client: DockerClient | None = None,
                 tag: str | None = None) -> None:
        self.s = s
        self.client = docker_client or client(s.docker_host)
        self.tag = tag

    def prepare(self, specs: list[ComponentSpec]) -> None:
        """Check every image is there (loading from the bundle) before anything starts, and
        remove what an earlier run on this data folder left (its supervisor killed -9:
        its containers outlive it, holding their ports)."""
        for sp in specs:
            ci.for_component(sp.name)  # KeyError for a component no image runs
        ensure_images(self.client, specs, self.s.images_dir, self.tag)
        remove_containers(self.client, self.s.data_dir)

    def __call__(self, spec: ComponentSpec, log: Path) -> ContainerProcess:
        from docker.errors import DockerException, NotFound

        cs = container_spec(self.s, spec, self.tag)
        try:
            with contextlib.suppress(NotFound):  # an earlier run's, e.g. after kill -9
                self.client.containers.get(cs.name).remove(force=True)
            # entrypoint given too: whatever the image declares, this argv runs
            container = self.client.containers.create(
                cs.image, cs.command[1:], entrypoint=cs.command[:1], name=cs.name,
                network_mode="host", environment=cs.environment, volumes=cs.volumes,
                labels=cs.labels,
                detach=True, stdin_open=False, tty=False, init=False)
            container.start()
        except DockerException as exc:
            raise OSError(f"container {cs.name} ({cs.image}): {exc}") from exc
        return ContainerProcess(container, log)

    def containers(self) -> Iterator[str]:
        for c in self.client.containers.list(
                all=True, filters={"label": f"{LABEL}={self.s.data_dir.resolve()}"}):
            yield str(c.name)
