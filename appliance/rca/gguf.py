"""Reads and checks a GGUF file's header before llama.cpp sees it.

llama.cpp has aborted the whole process (``GGML_ASSERT``) on malformed files in the
past, which in the daemon would take ingest down with it. The build pinned here
(llama-cpp-python 0.3.36) refused each corruption tried while writing this (a
truncated file, a garbage metadata count, a zero head count, a wrong embedding length,
an unknown tensor type) with a ValueError and no crash; the checks stay so a bad file
gets a message that says what is wrong, and so a future build's asserts are never the
only guard. Every file is first walked here, in Python, from the header to the last
tensor: magic and version, every metadata key and value, every tensor's name, shape,
type and offset; and every tensor must lie inside the file. A file that fails is a
``ModelUnavailable`` naming what is wrong, and llama.cpp never opens it. Known models
are also checked against the manifest's sha256 (``appliance/rca/model.py``), which
catches a flipped byte inside the weights that no header check can see.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (versions 2 and 3,
little-endian).
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ModelUnavailable

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Bounds that no real file reaches; past them the file is corrupt, and we stop before
# allocating for a count read from garbage.
MAX_COUNT = 1 << 24
MAX_DIMS = 8

# Metadata value types: struct format of the scalars (8: string, 9: array).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# ggml tensor types: (bytes per block, values per block), for the size check. A type not
# listed is only checked to start inside the file.
_BLOCKS = {0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32),
           8: (34, 32), 9: (36, 32), 10: (84, 256), 11: (110, 256), 12: (144, 256),
           13: (176, 256), 14: (210, 256), 15: (292, 256), 24: (1, 1), 25: (2, 1),
           26: (4, 1), 27: (8, 1), 28: (8, 1), 30: (2, 1)}


@dataclass
class GgufInfo:
    version: int
    tensors: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def context_length(self) -> int | None:
        v = self.metadata.get(f"{self.architecture}.context_length")
        return int(v) if isinstance(v, int) else None

    @property
    def chat_template(self) -> str | None:
        v = self.metadata.get("tokenizer.chat_template")
        return v if isinstance(v, str) else None


class _Reader:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def fail(self, why: str) -> ModelUnavailable:
        return ModelUnavailable(f"{self.path} is not a usable GGUF file: {why}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"it ends at byte {len(self.buf)}, inside the header "
                            f"(truncated?)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        n = int(self.unpack("<Q"))
        if n > MAX_COUNT:
            raise self.fail(f"{what} is {n}, past any real file")
        return n

    def string(self) -> str:
        raw = self.take(self.count("a string length"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"a string at byte {self.pos - len(raw)} is not UTF-8") from None

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, n = int(self.unpack("<I")), self.count("an array length")
            if item in _SCALARS:  # fixed size: skipped, not decoded
                self.take(n * struct.calcsize(_SCALARS[item]))
            elif item in (_STRING, _ARRAY):
                for _ in range(n):
                    self.value(item)
            else:
                raise self.fail(f"unknown array item type {item}")
            return n
        raise self.fail(f"unknown metadata value type {kind}")


def read_header(path: Path) -> GgufInfo:
    """Walk ``path``'s header and tensor table; raise ``ModelUnavailable`` saying what
    is wrong (missing, empty, not GGUF, truncated, a tensor past the end)."""
    if not path.is_file():
        raise ModelUnavailable(f"the GGUF file {path} does not exist")
    size = path.stat().st_size
    if size < 24:
        raise ModelUnavailable(f"{path} is not a usable GGUF file: only {size} bytes")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        r = _Reader(buf, path)
        if r.take(4) != MAGIC:
            raise r.fail("it does not start with the GGUF magic")
        version = int(r.unpack("<I"))
        if version not in VERSIONS:
            raise r.fail(f"GGUF version {version} (this reader knows {VERSIONS})")
        n_tensors, n_kv = r.count("the tensor count"), r.count("the metadata count")
        info = GgufInfo(version, n_tensors)
        for _ in range(n_kv):
            key = r.string()
            info.metadata[key] = r.value(int(r.unpack("<I")))
        ends = []
        for _ in range(n_tensors):
            name, dims = r.string(), int(r.unpack("<I"))
            if not 0 < dims <= MAX_DIMS:
                raise r.fail(f"tensor {name!r} has {dims} dimensions")
            shape = [int(r.unpack("<Q")) for _ in range(dims)]
            kind, offset = int(r.unpack("<I")), int(r.unpack("<Q"))
            ends.append((name, offset, _nbytes(kind, shape)))
        align = info.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(align, int) or align <= 0:
            raise r.fail(f"general.alignment is {align!r}")
        data_start = -(-r.pos // align) * align
        for name, offset, nbytes in ends:
            end = data_start + offset + (nbytes or 1)
            if end > size:
                raise r.fail(f"tensor {name!r} ends at byte {end}, past the end of the "
                             f"file ({size} bytes; truncated?)")
    return info


def _nbytes(kind: int, shape: list[int]) -> int:
    if kind not in _BLOCKS:
        return 0
    per_block, block = _BLOCKS[kind]
    n = 1
    for d in shape:
        n *= d
    return -(-n // block) * per_block


def sha256_of(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
