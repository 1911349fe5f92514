"""Check an unpacked bundle before anything is installed from it.

In this order, each failure a ``BundleCorrupt`` naming the file:

1. the four files that describe the bundle are there (manifest, its signature, the
   public key, SHA256SUMS);
2. the manifest's Ed25519 signature verifies with the bundled public key, and, when the
   operator gives one, that key is the one they trust (``--trusted-key``: its id, as the
   build printed it). Without it the signature proves the bundle is intact, not who made
   it; the installer says so and prints the key id to compare;
3. SHA256SUMS says exactly what the signed manifest says (it is not signed itself);
4. every listed file is there, with its size and sha256, and no file is there that the
   manifest does not list (a file slipped in would be installed unchecked).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance.airgap import manifest as mf
from appliance.audit.signing import key_id, verify
from appliance.errors import BundleCorrupt, ConfigError

Progress = Callable[[int, int], None]  # bytes checked so far, bytes in all


def _read(root: Path, name: str) -> bytes:
    path = root / name
    if not path.is_file():
        raise BundleCorrupt(f"{name}: missing from the bundle at {root}")
    return path.read_bytes()


def listed_files(root: Path) -> set[str]:
    """Every regular file under ``root`` as a bundle path; a link or a special file is
    refused, since it could point outside the bundle."""
    found: set[str] = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BundleCorrupt(f"{rel}: not a regular file (links are not allowed)")
        if path.is_file():
            found.add(rel)
    return found


def verify_bundle(root: Path, trusted_key: str | None = None,
                  progress: Progress | None = None) -> mf.Manifest:
    """The bundle's manifest, once every check above has passed."""
    raw = _read(root, mf.MANIFEST)
    signature = _read(root, mf.SIGNATURE).decode("ascii", "replace").strip()
    public_pem = _read(root, mf.PUBLIC_KEY)
    sums = _read(root, mf.SUMS)
    try:
        kid = key_id(public_pem)
    except ConfigError as exc:
        raise BundleCorrupt(f"{mf.PUBLIC_KEY}: {exc}") from exc
    if not verify(public_pem, raw, signature):
        raise BundleCorrupt(f"{mf.SIGNATURE}: the signature of {mf.MANIFEST} does not verify "
                            f"with the bundled key {kid}")
    if trusted_key is not None and kid != trusted_key:
        raise BundleCorrupt(f"{mf.PUBLIC_KEY}: the bundle is signed by {kid}, not by the "
                            f"trusted key {trusted_key}")
    try:
        manifest = mf.parse(raw)
    except ValueError as exc:
        raise BundleCorrupt(f"{mf.MANIFEST}: not a bundle manifest: {exc}") from exc
    if manifest.signing_key != kid:
        raise BundleCorrupt(f"{mf.MANIFEST}: names signing key {manifest.signing_key}, "
                            f"but {mf.PUBLIC_KEY} is {kid}")
    if sums != manifest.sums():
        raise BundleCorrupt(f"{mf.SUMS}: differs from the signed {mf.MANIFEST}")
    present = listed_files(root) - mf.UNLISTED
    listed = {f.path for f in manifest.files}
    if missing := sorted(listed - present):
        raise BundleCorrupt(f"{missing[0]}: missing from the bundle at {root}")
    if added := sorted(present - listed):
        raise BundleCorrupt(f"{added[0]}: not in the signed manifest (a file was added)")
    total, done = manifest.size(), 0
    for entry in sorted(manifest.files, key=lambda f: f.path):
        path = root / entry.path
        size = path.stat().st_size
        if size != entry.size:
            raise BundleCorrupt(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
        if mf.sha256_file(path) != entry.sha256:
            raise BundleCorrupt(f"{entry.path}: sha256 differs from the signed manifest")
        done += size
        if progress is not None:
            progress(done, total)
    return manifest
