"""The bundle as one tar file, written the same way from the same files.

Reproducible where the inputs allow: names in sorted order, every mtime set to the
build's ``SOURCE_DATE_EPOCH`` (or the given time), owner root:root with no names, modes
0755 or 0644 only. Not compressed: the parts are mostly compressed already (binaries
aside), and an uncompressed tar can be checked and unpacked without a second tool.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path

from appliance.errors import BundleCorrupt

Progress = Callable[[int, int], None]


def _normalise(info: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    executable = info.isdir() or bool(info.mode & 0o100)
    info.mode = 0o755 if executable else 0o644
    return info


def write(folder: Path, target: Path, mtime: int, progress: Progress | None = None) -> None:
    """``folder`` (the bundle's top folder) into ``target``, atomically."""
    entries = sorted(p for p in folder.rglob("*"))
    total = sum(p.stat().st_size for p in entries if p.is_file())
    done = 0
    tmp = target.with_name(target.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_normalise(tar.gettarinfo(folder, folder.name), mtime))
        for path in entries:
            name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            info = _normalise(tar.gettarinfo(path, name), mtime)
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
                done += info.size
                if progress is not None:
                    progress(done, total)
            else:
                tar.addfile(info)
    os.replace(tmp, target)


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a bundle archive into ``into``; the bundle's top folder. Only regular files,
    folders and hard links inside that one folder are accepted (tarfile's ``data`` filter
    refuses links out, absolute names and devices)."""
    try:
        with tarfile.open(archive) as tar:
            names = {m.name.split("/", 1)[0] for m in tar.getmembers()}
            if len(names) != 1:
                raise BundleCorrupt(f"{archive.name}: expected one top folder, found "
                                    f"{sorted(names)[:5]}")
            for member in tar.getmembers():
                # hard links: the build links one file into several places (PyInstaller's
                # library links, copied as files); the data filter keeps them inside
                if not (member.isfile() or member.isdir() or member.islnk()):
                    raise BundleCorrupt(f"{member.name}: not a regular file")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleCorrupt(f"{archive.name}: not a readable bundle archive: {exc}") from exc
    return into / names.pop()
