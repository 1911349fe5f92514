"""A minimal root filesystem for an image built from scratch, as one layer tar.

The tree holds what the image's files need and nothing else: the files themselves, every
shared library any ELF file among them links (found with ``ldd``, stored under the path
and symlink names the build host has, so the loader finds them without a cache), and a
bare ``/etc`` (root and nobody) and ``/tmp``. The tar is written the same way from the
same files: sorted names, one mtime, owner 0:0, modes 0755/0644 (and 1777 for /tmp), so
its sha256 (the layer's diff id) is the same for the same inputs.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from appliance.errors import ConfigError

CHUNK = 1 << 20
ELF_MAGIC = b"\x7fELF"
# /etc/nsswitch.conf: names resolve from /etc/hosts before DNS, so `localhost` never asks
# a resolver (there is none in an air gap, and a query would be traffic off loopback).
ETC = {
    "etc/passwd": b"root:x:0:0:root:/root:/sbin/nologin\n"
                  b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
    "etc/nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files dns\n",
}
_LIB = re.compile(r"^\s*(?:(?P<name>\S+) => )?(?P<path>/\S+|not found) \(0x[0-9a-f]+\)$|"
                  r"^\s*(?P<missing>\S+) => not found$")


@dataclass(frozen=True)
class Entry:
    kind: Literal["dir", "file", "symlink", "data"]
    mode: int = 0o755
    source: Path | None = None  # a file's content on the build host
    target: str = ""  # a symlink's
    data: bytes = b""  # a small generated file's


class Tree:
    """The image's files by path (relative to /, no leading slash)."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.dir("tmp", 0o1777)
        for path, data in ETC.items():
            self.put(path, Entry("data", 0o644, data=data))

    def put(self, path: str, entry: Entry) -> None:
        parent = str(PurePosixPath(path).parent)
        if parent != "." and parent not in self.entries:
            self.dir(parent)
        self.entries.setdefault(path, entry)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self.put(path, Entry("dir", mode))

    def file(self, path: str, source: Path) -> None:
        self.put(path, Entry("file", 0o755 if os.access(source, os.X_OK) else 0o644, source))

    def symlink(self, path: str, target: str) -> None:
        self.put(path, Entry("symlink", 0o777, target=target))

    def host_path(self, path: str) -> None:
        """An absolute path of the build host, at the same place in the image: each
        symlink on the way (``/lib -> usr/lib``, ``libz.so.1 -> libz.so.1.3``) is stored
        as a symlink and followed, the file at the end as a file."""
        todo = PurePosixPath(path)
        for _ in range(40):  # the kernel's own limit on links in one lookup
            walked = PurePosixPath("/")
            for part in todo.parts[1:]:
                walked /= part
                if os.path.islink(walked):
                    target = os.readlink(walked)
                    self.symlink(str(walked)[1:], target)
                    rest = todo.relative_to(walked)
                    todo = PurePosixPath(os.path.normpath(walked.parent / target)) / rest
                    break
            else:
                if not os.path.isfile(todo):
                    raise ConfigError(f"{path}: not a file on this build host")
                self.file(str(todo)[1:], Path(todo))
                return
        raise ConfigError(f"{path}: too many symbolic links")

    def elf_files(self) -> list[Path]:
        return sorted({e.source for e in self.entries.values()
                       if e.kind == "file" and e.source is not None and is_elf(e.source)})


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == ELF_MAGIC


def needed(elf: Path) -> tuple[list[str], list[str]]:
    """The shared libraries ``elf`` loads (their paths on this host, the loader
    included) and the names ``ldd`` found nowhere; nothing for a static executable."""
    done = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    if done.returncode != 0:
        if "not a dynamic executable" in done.stderr + done.stdout:
            return [], []
        raise ConfigError(f"ldd {elf} failed: {done.stderr.strip()[-500:]}")
    found, missing = [], []
    for line in done.stdout.splitlines():
        m = _LIB.match(line)
        if m is None:
            continue
        if m["missing"] or m["path"] == "not found":
            missing.append(m["missing"] or m["name"])
        else:
            found.append(m["path"])
    return found, missing


def add_libraries(tree: Tree, have: frozenset[str] = frozenset(),
                  first: frozenset[Path] = frozenset()) -> list[str]:
    """Every library the tree's ELF files link, unless its file name is in ``have``
    (what a frozen folder already carries); returns the names found nowhere. The
    ``first`` files (a frozen folder's bootloader) are loaded before that folder is on
    the loader's path, so all of theirs come from the host."""
    unresolved: set[str] = set()
    for elf in tree.elf_files():
        skip = frozenset[str]() if elf in first else have
        found, missing = needed(elf)
        for lib in found:
            if PurePosixPath(lib).name not in skip:
                tree.host_path(lib)
        unresolved.update(n for n in missing if n not in skip)
    return sorted(unresolved)


class _Hashing:
    """A write-only file that hashes what goes through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.sha.update(b)
        return self.f.write(b)


def write_layer(tree: Tree, out: Path, mtime: int) -> str:
    """The tree as an uncompressed tar at ``out``; its digest (``sha256:...``), which is
    the layer's diff id."""
    with out.open("wb") as raw:
        sink = _Hashing(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for path in sorted(tree.entries):
                e = tree.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime, info.mode = mtime, e.mode
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, e.target
                    tar.addfile(info)
                elif e.kind == "data":
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
                else:
                    assert e.source is not None
                    info.size = e.source.stat().st_size
                    with e.source.open("rb") as f:
                        tar.addfile(info, f)
    return f"sha256:{sink.sha.hexdigest()}"

