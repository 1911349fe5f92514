"""The air-gap bundle's checks and installer, on a small bundle of made-up parts (the real
bundle, frozen appliance and all, is tests/integration/test_airgap.py's): any flipped byte,
missing or added file, wrong signature or untrusted key is refused before anything is
installed, naming the file; the archive is byte-for-byte the same when built twice; an
interrupted install completes when run again; an upgrade keeps the data and an uninstall
keeps it unless purged."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.airgap import build, installer, tarball
from appliance.airgap import manifest as mf
from appliance.airgap.verify import verify_bundle
from appliance.audit.signing import Signer
from appliance.errors import BundleCorrupt, Conflict

EPOCH = 1_790_000_000


def _signer(tmp: Path, name: str = "key") -> Signer:
    return Signer.load_or_create(tmp / f"{name}.pem", tmp / f"{name}.pub.pem")[0]


def _make(top: Path, signer: Signer, payload: bytes = b"v1",
          calls: Path | None = None) -> mf.Manifest:
    """A bundle folder with one file of every part and a stand-in frozen `tracehold`."""
    files = {"bin/prometheus": b"\x7fELF prometheus " + payload,
             "models/tiny.gguf": b"GGUF" + payload * 100,
             "kb/retrieval-drift-stale-index.md": b"# stale index\n",
             "licenses/INDEX.md": b"# licences\n",
             "appliance/_internal/lib.so": b"\x7fELF lib"}
    for rel, data in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
    exe = top / "appliance" / "tracehold"
    # what the installer asks of the frozen CLI (`down` before an upgrade) is logged
    calls = calls or top.parent / "calls.log"
    exe.write_text(f'#!/bin/sh\necho "tracehold $*" >> "{calls}"\n')
    exe.chmod(0o755)
    shutil.copy(Path(build.__file__).with_name("install.sh"), top / "install.sh")
    (top / "install.sh").chmod(0o755)
    return build.seal(top, "9.9.9", "2026-09-21T12:53:20Z", signer, [])


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, Signer]:
    signer = _signer(tmp_path)
    top = tmp_path / "tracehold-9.9.9-linux-x86_64"
    top.mkdir()
    _make(top, signer)
    return top, signer


def test_an_intact_bundle_verifies_and_lists_every_file(bundle: tuple[Path, Signer]) -> None:
    top, signer = bundle
    m = verify_bundle(top, trusted_key=signer.key_id)
    assert {f.path for f in m.files} == {
        "bin/prometheus", "models/tiny.gguf", "kb/retrieval-drift-stale-index.md",
        "licenses/INDEX.md", "appliance/_internal/lib.so", "appliance/tracehold", "install.sh"}
    assert next(f for f in m.files if f.path == "appliance/tracehold").executable
    # SHA256SUMS is the usual tool's input
    done = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=top,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rel", ["bin/prometheus", "models/tiny.gguf", "appliance/tracehold",
                                 "install.sh", "kb/retrieval-drift-stale-index.md"])
def test_one_flipped_byte_in_any_file_is_refused_naming_it(bundle: tuple[Path, Signer],
                                                            rel: str) -> None:
    top, _ = bundle
    data = bytearray((top / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (top / rel).write_bytes(bytes(data))
    with pytest.raises(BundleCorrupt, match=rf"^{rel}: sha256 differs"):
        verify_bundle(top)


def test_a_missing_or_an_added_file_is_refused_naming_it(bundle: tuple[Path, Signer]) -> None:
    top, _ = bundle
    (top / "kb" / "extra.md").write_text("slipped in")
    with pytest.raises(BundleCorrupt, match=r"^kb/extra.md: not in the signed manifest"):
        verify_bundle(top)
    (top / "kb" / "extra.md").unlink()
    (top / "models" / "tiny.gguf").unlink()
    with pytest.raises(BundleCorrupt, match=r"^models/tiny.gguf: missing"):
        verify_bundle(top)
    (top / mf.SIGNATURE).unlink()
    with pytest.raises(BundleCorrupt, match=rf"^{mf.SIGNATURE}: missing"):
        verify_bundle(top)


def test_a_wrong_signature_or_an_edited_manifest_is_refused(bundle: tuple[Path, Signer],
                                                             tmp_path: Path) -> None:
    top, _ = bundle
    good = (top / mf.SIGNATURE).read_text()
    other = _signer(tmp_path, "other")
    (top / mf.SIGNATURE).write_text(other.sign((top / mf.MANIFEST).read_bytes()))
    with pytest.raises(BundleCorrupt, match=rf"^{mf.SIGNATURE}: the signature .* does not"):
        verify_bundle(top)
    (top / mf.SIGNATURE).write_text(good)
    raw = (top / mf.MANIFEST).read_bytes().replace(b'"9.9.9"', b'"9.9.8"')
    (top / mf.MANIFEST).write_bytes(raw)
    with pytest.raises(BundleCorrupt, match=rf"^{mf.SIGNATURE}"):
        verify_bundle(top)


def test_sha256sums_must_say_what_the_signed_manifest_says(bundle: tuple[Path, Signer]) -> None:
    top, _ = bundle
    (top / "bin" / "prometheus").write_bytes(b"replaced")
    sums = (top / mf.SUMS).read_text().splitlines()
    digest = hashlib.sha256(b"replaced").hexdigest()
    (top / mf.SUMS).write_text("\n".join(
        f"{digest}  bin/prometheus" if line.endswith("bin/prometheus") else line
        for line in sums) + "\n")
    with pytest.raises(BundleCorrupt, match=rf"^{mf.SUMS}: differs"):
        verify_bundle(top)


def test_a_bundle_re_signed_by_another_key_fails_only_against_the_trusted_key(
        bundle: tuple[Path, Signer], tmp_path: Path) -> None:
    top, signer = bundle
    other = _signer(tmp_path, "other")
    for name in mf.UNLISTED:
        (top / name).unlink()
    build.seal(top, "9.9.9", "2026-09-21T12:53:20Z", other, [])
    assert verify_bundle(top).signing_key == other.key_id  # intact, another signer
    with pytest.raises(BundleCorrupt, match=rf"signed by {other.key_id}, not by the trusted"):
        verify_bundle(top, trusted_key=signer.key_id)


def test_the_archive_is_the_same_bytes_when_built_twice(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        signer = Signer.load_or_create(tmp_path / "k.pem", tmp_path / "k.pub.pem")[0]
        top = tmp_path / run / "tracehold-9.9.9-linux-x86_64"
        top.mkdir(parents=True)
        _make(top, signer, calls=tmp_path / "calls.log")
        os.utime(top / "bin" / "prometheus", (EPOCH + hash(run) % 1000,) * 2)
        archive = tmp_path / run / "bundle.tar"
        tarball.write(top, archive, EPOCH)
        digests.append(hashlib.sha256(archive.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    unpacked = tarball.unpack(archive, tmp_path / "unpacked")
    assert verify_bundle(unpacked).version == "9.9.9"


def test_a_file_linked_into_two_places_is_stored_once_and_unpacks_as_both(
        tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    top = tmp_path / "tracehold-9.9.9-linux-x86_64"
    lib = top / "appliance" / "_internal" / "pyarrow" / "libarrow.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(os.urandom(200_000))
    build._copy(lib, top / "appliance" / "_internal" / "libarrow.so")  # as build does
    _make(top, signer)
    archive = tmp_path / "b.tar"
    tarball.write(top, archive, EPOCH)
    assert archive.stat().st_size < 2 * 200_000  # the second place is a link entry
    unpacked = tarball.unpack(archive, tmp_path / "out")
    assert (unpacked / "appliance/_internal/libarrow.so").read_bytes() == lib.read_bytes()
    assert verify_bundle(unpacked).version == "9.9.9"


def test_a_damaged_archive_is_refused(tmp_path: Path, bundle: tuple[Path, Signer]) -> None:
    top, _ = bundle
    archive = tmp_path / "b.tar"
    tarball.write(top, archive, EPOCH)
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(BundleCorrupt, match="b.tar: not a readable bundle archive"):
        tarball.unpack(archive, tmp_path / "out")


def test_install_sh_refuses_a_damaged_bundle_before_running_anything(
        bundle: tuple[Path, Signer]) -> None:
    top, _ = bundle
    (top / "appliance" / "tracehold").write_text("#!/bin/sh\necho tampered\n")
    done = subprocess.run([str(top / "install.sh"), "--prefix", str(top.parent / "opt")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "appliance/tracehold: FAILED" in done.stderr
    assert "tampered" not in done.stdout
    assert not (top.parent / "opt").exists()


def test_install_is_rerunnable_upgrade_keeps_data_and_uninstall_keeps_it_unless_purged(
        bundle: tuple[Path, Signer], tmp_path: Path) -> None:
    top, signer = bundle
    prefix, data = tmp_path / "opt", tmp_path / "var"
    m = verify_bundle(top)
    layout = installer.Layout(prefix)
    # an install interrupted while copying leaves a .partial release and no `current`
    partial = layout.release(m).with_name(layout.release(m).name + ".partial")
    (partial / "bin").mkdir(parents=True)
    (partial / "bin" / "prometheus").write_bytes(b"half")
    release = installer.install(top, prefix, data, start=False, progress=lambda _: None)
    assert not partial.exists() and layout.installed()
    assert (release / "bin" / "prometheus").read_bytes() == (top / "bin/prometheus").read_bytes()
    assert layout.command.resolve() == (release / "appliance" / "tracehold").resolve()
    assert oct(data.stat().st_mode & 0o777) == "0o700"
    config = (data / "config.toml").read_text()
    assert f'bin_dir = "{prefix}/current/bin"' in config
    assert f'rca_model_name = "{prefix}/current/models/tiny.gguf"' in config
    with pytest.raises(Conflict, match="already installed"):
        installer.install(top, prefix, data, start=False, progress=lambda _: None)

    (data / "spans.duckdb").write_bytes(b"the spans")
    (data / "config.toml").write_text(config + "# the operator's edit\n")
    new = tmp_path / "v2" / top.name
    new.mkdir(parents=True)
    _make(new, signer, payload=b"v2")
    release2 = installer.install(new, prefix, data, upgrade=True, start=False,
                                 progress=lambda _: None)
    assert release2 != release and layout.current.resolve() == release2.resolve()
    assert (data / "spans.duckdb").read_bytes() == b"the spans"
    assert (data / "config.toml").read_text().endswith("# the operator's edit\n")
    # the old release's `down` ran before the switch
    assert "tracehold down --data-dir" in (top.parent / "calls.log").read_text()

    installer.uninstall(prefix, data, progress=lambda _: None)
    assert not layout.command.exists() and not layout.releases.exists()
    assert (data / "spans.duckdb").exists()
    installer.uninstall(prefix, data, purge=True, progress=lambda _: None)
    assert not data.exists()
