"""The bundle's manifest: every file with its sha256 and size, the versions of what is
inside, and when it was built. ``manifest.json`` is what the build host signs;
``SHA256SUMS`` is the same file list in ``sha256sum -c`` form, for people, and the
installer checks that it says exactly what the signed manifest says.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
PUBLIC_KEY = "signing-key.pub.pem"
SUMS = "SHA256SUMS"
INSTALLER = "install.sh"
# Files the manifest cannot list (they describe or sign it); everything else is listed.
UNLISTED = frozenset({MANIFEST, SIGNATURE, PUBLIC_KEY, SUMS})
CHUNK = 1 << 20

Part = Literal["installer", "appliance", "binaries", "images", "models", "kb", "licenses"]
Runtime = Literal["native", "docker"]
# A bundle built with --no-images says so with this component (not a new field: the
# manifest forbids unknown fields, so an installer frozen before it could not read it).
NO_IMAGES = "container images"


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    executable: bool = False
    part: Part


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: str
    source: str  # where the build host took it from, e.g. "Debian package prometheus"
    files: list[str] = Field(default_factory=list)
    digest: str | None = None  # an image's digest, for images


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: int = FORMAT
    name: str = "tracehold"
    version: str
    platform: str
    built_at: str
    signing_key: str  # the key id (appliance.audit.signing.key_id) that signed it
    components: list[Component] = Field(default_factory=list)
    files: list[FileEntry]

    def dumps(self) -> bytes:
        """The exact bytes that are signed: sorted keys, files in path order."""
        body = self.model_dump(mode="json")
        body["files"] = sorted(body["files"], key=lambda f: f["path"])
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()

    def sums(self) -> bytes:
        """``SHA256SUMS``: one ``<sha256>  <path>`` line per file, in path order."""
        lines = [f"{f.sha256}  {f.path}\n" for f in sorted(self.files, key=lambda f: f.path)]
        return "".join(lines).encode()

    def runtimes(self) -> list[Runtime]:
        """What `bundle install --runtime` can take: docker only with container images
        (components with a digest) in the bundle."""
        return ["native", "docker"] if any(c.digest for c in self.components) else ["native"]

    def size(self) -> int:
        return sum(f.size for f in self.files)

    def by_part(self) -> dict[str, int]:
        """Bytes per part, for the build's report of what makes the bundle up."""
        out: dict[str, int] = {}
        for f in self.files:
            out[f.part] = out.get(f.part, 0) + f.size
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def parse(raw: bytes) -> Manifest:
    data: Any = json.loads(raw)
    return Manifest.model_validate(data)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
