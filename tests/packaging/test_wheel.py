"""A real package: the wheel carries the console and every template, and the installed
appliance runs away from the source tree.

The wheel is built from a copy of the checkout with the setuptools of this venv (the
dev extras pin it; no isolated build env, so nothing is fetched) and installed into
a fresh venv with ``--no-deps --no-index``. That venv sees the pinned dependencies
through one ``.pth`` line naming this venv's site-packages, so nothing is downloaded
twice; a site-packages reached that way has its own ``.pth`` files ignored, so the
editable install there cannot leak the checkout in (asserted), and the wheel's
requirements are checked against what it sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = ROOT / ".stack" / "bin"
# Never copied: build output in-tree would leak stale files into the wheel.
NOT_SOURCE = (".git", ".venv", ".stack", ".tracehold", "build", "dist", "*.egg-info",
              "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "test-output")
JUNK = {"__pycache__", "_build"}  # never templates (pyproject's exclude-package-data)


@dataclass(frozen=True)
class Installed:
    python: Path
    tracehold: Path
    package: Path  # the installed appliance/
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: nothing of the checkout's or the caller's settings."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TRACEHOLD_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**env, "HOME": str(self.home), **extra}

    def run(self, argv: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, env=self.env(**extra), capture_output=True,
                              text=True, timeout=300)


def _run(argv: list[str]) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(argv)}\n{out.stdout}\n{out.stderr}"


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not JUNK & set(p.relative_to(folder).parts)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    import setuptools

    assert int(setuptools.__version__.split(".")[0]) >= 69, (
        f"setuptools {setuptools.__version__} cannot build the wheel: run `make setup` "
        "(the dev extras pin a newer one)")
    tmp = tmp_path_factory.mktemp("wheel")
    src, wheels, venv = tmp / "src", tmp / "wheels", tmp / "venv"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(wheels)])
    (wheel,) = wheels.glob("tracehold-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)])
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                   "print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # every site-packages this interpreter sees (its own, and any it reaches by .pth)
    deps = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    (purelib / "_tracehold_test_deps.pth").write_text("\n".join(deps) + "\n")
    home = tmp / "home"
    home.mkdir()
    yield Installed(python, venv / "bin" / "tracehold", purelib / "appliance", home)


def test_wheel_carries_the_console_and_every_template(installed: Installed) -> None:
    assert (installed.package / "console" / "main.py").is_file()
    assert _files(ROOT / "app") <= _files(installed.package / "console")
    templates = _files(ROOT / "bundled-stack")
    assert {"otelcol/manifest.yaml", "otelcol/config.yaml.j2", "debian-packages.txt",
            "envoy/bootstrap.yaml.j2"} <= templates
    shipped = installed.package / "bundled"
    missing = templates - _files(shipped)
    assert not missing, f"templates left out of the wheel: {sorted(missing)}"
    for name in templates:
        assert (shipped / name).read_bytes() == (ROOT / "bundled-stack" / name).read_bytes()


def test_wheel_carries_every_knowledge_base_playbook(installed: Installed) -> None:
    playbooks = {f for f in _files(ROOT / "kb") if f.endswith(".yaml")}
    assert len(playbooks) >= 24
    shipped = installed.package / "kb_seed"
    missing = playbooks - _files(shipped)
    assert not missing, f"playbooks left out of the wheel: {sorted(missing)}"


def test_installed_package_finds_its_files_and_pins_outside_the_checkout(
        installed: Installed, tmp_path: Path) -> None:
    probe = """
import json, importlib.metadata as md
from packaging.requirements import Requirement
import appliance
from appliance import resources
from appliance.settings import Settings
from appliance.stack import console
from appliance.ingest import _wire
unmet = [r for r in map(Requirement, md.requires("tracehold") or [])
         if not r.marker and not r.specifier.contains(md.version(r.name))]
print(json.dumps({"package": appliance.__file__, "templates": str(resources.templates()),
                  "console": str(console.APP), "checkout": str(resources.checkout_root()),
                  "bin_dir": str(Settings().bin_dir), "unmet": [str(r) for r in unmet],
                  "walker": _wire.__file__}))
"""
    out = installed.run([str(installed.python), "-c", probe], cwd=tmp_path,
                        TRACEHOLD_DATA_DIR=str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert Path(got["package"]).parent == installed.package  # the wheel, not the checkout
    assert got["templates"] == str(installed.package / "bundled")
    assert got["console"] == str(installed.package / "console" / "main.py")
    assert got["checkout"] == "None"
    assert got["bin_dir"] == str(tmp_path / "data" / "bin")  # installed: <data_dir>/bin
    # the native OTLP walker was compiled into the wheel
    assert Path(got["walker"]).parent == installed.package / "ingest"
    assert Path(got["walker"]).suffix == ".so"
    assert got["unmet"] == [], "the venv the test borrows does not have the wheel's pins"


@pytest.mark.binaries
def test_installed_validate_runs_from_another_folder(installed: Installed,
                                                     tmp_path: Path) -> None:
    assert (BIN_DIR / "otelcol-tracehold").is_file(), "run `make setup` first"
    out = installed.run([str(installed.tracehold), "validate", "--data-dir",
                         str(tmp_path / "data")], cwd=tmp_path, TRACEHOLD_BIN_DIR=str(BIN_DIR))
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"


def test_console_runs_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    # Streamlit's AppTest runs main.py as `streamlit run` would; every backend is down,
    # so each panel must say so rather than fail to import or crash.
    script = """
from streamlit.testing.v1 import AppTest
from appliance import resources
at = AppTest.from_file(str(resources.console_main()), default_timeout=60).run()
assert not at.exception, [e.value for e in at.exception]
print(resources.console_main())
"""
    dead = "http://127.0.0.1:9"
    out = installed.run([str(installed.python), "-c", script], cwd=tmp_path,
                        TRACEHOLD_CONSOLE_DAEMON_URL=dead, TRACEHOLD_CONSOLE_PROMETHEUS_URL=dead,
                        TRACEHOLD_CONSOLE_VICTORIAMETRICS_URL=dead,
                        TRACEHOLD_DATA_DIR=str(tmp_path / "data"))
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    assert out.stdout.strip() == str(installed.package / "console" / "main.py")
