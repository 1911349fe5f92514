"""`tracehold bundle build|verify|install`: the air-gap bundle (appliance/airgap/)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.output import JsonOpt, emit

app = typer.Typer(no_args_is_help=True, help="Build, check and install the air-gap bundle.")

Bundle = Annotated[Path, typer.Option(
    "--bundle", help="The bundle: its .tar, or the folder it unpacked to")]
TrustedKey = Annotated[str | None, typer.Option(
    "--trusted-key", help="Refuse a bundle not signed by this key id (ed25519:..., as "
                          "`bundle build` printed it)")]
Prefix = Annotated[Path, typer.Option(help="Where the program goes")]
Data = Annotated[Path, typer.Option("--data-dir", help="Where the data goes")]


@contextlib.contextmanager
def _unpacked(bundle: Path) -> Iterator[Path]:
    from appliance.airgap import tarball

    if bundle.is_dir():
        yield bundle
        return
    with tempfile.TemporaryDirectory(prefix="tracehold-bundle-") as tmp:
        typer.echo(f"unpacking {bundle}", err=True)
        yield tarball.unpack(bundle, Path(tmp))


def _bar(label: str) -> tuple[contextlib.AbstractContextManager[object],
                            Callable[[int, int], None]]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        DownloadColumn(), TimeRemainingColumn(), transient=True)
    task = progress.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, advance


@app.command()
def build(
    out: Annotated[Path, typer.Option(help="Folder for the .tar")] = Path("dist"),
    signing_key: Annotated[Path | None, typer.Option(
        help="The build host's Ed25519 key (made if absent); its public half is in the "
             "bundle. Default: ~/.tracehold-build/bundle-signing-key.pem")] = None,
    frozen: Annotated[Path | None, typer.Option(
        help="Use this PyInstaller folder instead of freezing again")] = None,
    docker_host: Annotated[str | None, typer.Option(
        help="The Docker engine the container images are built in (default: DOCKER_HOST, "
             "else unix:///var/run/docker.sock)")] = None,
    images: Annotated[bool, typer.Option(
        help="Build the Docker runtime's images; --no-images: a native-only bundle")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Build tracehold-<version>-linux-x86_64.tar (on a connected build host, after
    `make setup`): frozen appliance, binaries, model, knowledge base, licences, the
    Docker runtime's images (built from scratch), signed."""
    from appliance.airgap.build import build as build_bundle
    from appliance.settings import resolve

    def stage(line: str) -> None:
        typer.echo(f"==> {line}" if not line.startswith(" ") else line, err=True)

    key = signing_key or Path.home() / ".tracehold-build" / "bundle-signing-key.pem"
    bar, advance = _bar("writing the archive")
    with bar:
        built = build_bundle(resolve(None), out, key, frozen=frozen, stage=stage,
                             advance=advance, images=images, docker_host=docker_host)
    m = built.manifest
    data = {"archive": str(built.archive), "version": m.version, "bytes": m.size(),
            "by_part": m.by_part(), "files": len(m.files), "signing_key": m.signing_key,
            "seconds": round(built.seconds, 1), "runtimes": m.runtimes(),
            "images": [{"name": i.name, "ref": i.ref, "id": i.id, "archive": i.archive,
                        "bytes": i.bytes, "seconds": i.seconds} for i in built.images]}
    parts = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in m.by_part().items())
    emit(data, as_json, [f"{built.archive}: {m.size() / 2**20:.0f} MiB ({parts})",
                         *(f"  {i.ref}: {i.id[:19]}, {i.bytes / 2**20:.0f} MiB"
                           for i in built.images),
                         f"signed by {m.signing_key}; took {built.seconds:.0f} s"])


@app.command()
def verify(bundle: Bundle, trusted_key: TrustedKey = None, as_json: JsonOpt = False) -> None:
    """Check every file's sha256 and the manifest's signature; change nothing."""
    from appliance.airgap.verify import verify_bundle

    with _unpacked(bundle) as root:
        bar, advance = _bar("checking sha256")
        with bar:
            m = verify_bundle(root, trusted_key, advance)
    emit({"ok": True, "version": m.version, "files": len(m.files), "bytes": m.size(),
          "signing_key": m.signing_key}, as_json,
         [f"{bundle}: OK, {len(m.files)} files match the manifest signed by {m.signing_key}"])


@app.command("install")
def install_cmd(
    bundle: Bundle,
    prefix: Prefix = Path("/opt/tracehold"),
    data_dir: Data = Path("/var/lib/tracehold"),
    upgrade: Annotated[bool, typer.Option(help="Replace the program; keep data and keys")] = False,
    uninstall: Annotated[bool, typer.Option(help="Remove the program (data stays)")] = False,
    purge: Annotated[bool, typer.Option(help="With --uninstall: remove the data too")] = False,
    runtime: Annotated[str, typer.Option(help="native (default) or docker")] = "native",
    docker_host: Annotated[str | None, typer.Option(
        help="--runtime docker: the engine's address (default: DOCKER_HOST, else the "
             "local socket)")] = None,
    trusted_key: TrustedKey = None,
    start: Annotated[bool, typer.Option(help="Start the appliance when installed")] = True,
    bind: Annotated[str | None, typer.Option(help="Address for Envoy's external listeners")]
    = None,
    free_ports: Annotated[bool, typer.Option(help="Pick free ports (tests)")] = False,
    systemd: Annotated[bool, typer.Option(help="Print a systemd unit to install")] = False,
) -> None:
    """Install from an unpacked bundle (what install.sh runs), with no network."""
    from appliance.airgap import installer
    from appliance.errors import InvalidRequest

    def say(line: str) -> None:
        typer.echo(line)

    if uninstall:
        installer.uninstall(prefix, data_dir, purge=purge, progress=say)
        return
    if purge:
        raise InvalidRequest("--purge goes with --uninstall")
    if runtime not in ("native", "docker"):
        raise InvalidRequest(f"runtime {runtime!r}: native or docker")
    args = (*(["--bind", bind] if bind else []), *(["--free-ports"] if free_ports else []))
    with _unpacked(bundle) as root:
        installer.install(root, prefix, data_dir, upgrade=upgrade, trusted_key=trusted_key,
                          start=start, start_args=args, progress=say,
                          runtime="docker" if runtime == "docker" else "native",
                          docker_host=docker_host)
    say(f"program: {prefix}/bin/tracehold; data: {data_dir}")
    say(f"`{prefix}/bin/tracehold status --data-dir {data_dir}` lists the endpoints")
    if systemd:
        say(installer.systemd_unit(prefix, data_dir))
