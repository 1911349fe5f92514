"""The air-gap bundle end to end: built here (PyInstaller freeze and all), then installed
and run inside a new network namespace that has only loopback, from a clean prefix, with
a PATH that holds no Python of ours and a HOME with no pip cache.

One walk, in order: the install succeeds and starts the stack (time from install.sh to
the first derived metric is measured and written to the test output); a test trace goes
in through Envoy and its metric is queryable; the stack is restarted under strace, a demo
failure opens a case, the RCA runs with the bundled model, the case's export verifies,
and no process of the appliance tried to connect to any address outside loopback but
the one configured notification destination (which it did try);
`--upgrade` over the running appliance keeps every span, case and audit entry; a bundle
with one flipped byte is refused before anything is written. The bundle is the session's
``airgap_bundle`` (tests/conftest.py); what the Docker runtime's air-gap test shares with
this one is in tests/airgap.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.airgap import (
    WEBHOOK,
    Host,
    _counts,
    _json,
    _output_dir,
    _unpack,
    demo_case_walk,
    outside_loopback,
)

pytestmark = [pytest.mark.airgap, pytest.mark.binaries, pytest.mark.root, pytest.mark.stack]


def test_outside_loopback_reads_strace_lines() -> None:
    lines = ['123 connect(7, {sa_family=AF_INET, sin_port=htons(443), '
             'sin_addr=inet_addr("20.42.65.92")}, 16) = -1 ENETUNREACH',
             '5 connect(3, {sa_family=AF_INET, sin_port=htons(18700), '
             'sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
             '6 connect(9, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), '
             'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1',
             '7 connect(4, {sa_family=AF_UNIX, sun_path="/run/x.sock"}, 110) = 0']
    assert outside_loopback("\n".join(lines)) == [("20.42.65.92", 443), ("2001:db8::1", 53)]


def test_the_bundle_installs_and_runs_with_no_network(airgap_bundle: Path, netns: str,
                                                      tmp_path: Path) -> None:
    bundle = airgap_bundle
    out = _output_dir()
    home = tmp_path / "home"
    home.mkdir()
    host = Host(netns, home)
    top = _unpack(bundle, tmp_path / "unpacked")
    prefix, data = tmp_path / "opt" / "tracehold", tmp_path / "var" / "tracehold"
    cmd = str(prefix / "bin" / "tracehold")
    report: dict[str, object] = {"bundle_bytes": bundle.stat().st_size}

    # A flipped byte anywhere is refused before anything is written.
    damaged = _unpack(bundle, tmp_path / "damaged")
    gguf = next((damaged / "models").glob("*.gguf"))
    with gguf.open("r+b") as f:
        f.seek(gguf.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    refused = host.run(str(damaged / "install.sh"), "--prefix", str(prefix), "--data-dir",
                       str(data), check=False)
    assert refused.returncode != 0 and f"models/{gguf.name}: FAILED" in refused.stderr
    assert not prefix.exists() and not data.exists()

    # Install and start; the clock runs to the first derived metric.
    t0 = time.monotonic()
    installed = host.run(str(top / "install.sh"), "--prefix", str(prefix), "--data-dir",
                         str(data), "--free-ports", "--bind", "127.0.0.1", timeout=900)
    assert "First API key" in installed.stdout, installed.stdout
    trace = _json(host.run(cmd, "send-test-trace", "--json", "--timeout", "120",
                           "--data-dir", str(data), timeout=300))
    report["install_to_first_metric_s"] = round(time.monotonic() - t0, 1)
    assert trace.get("ok", True) is not False, trace
    status = _json(host.run(cmd, "status", "--json", "--data-dir", str(data)))
    assert status["running"] and all(c["status"] == "ok" for c in status["components"])

    # Restart under strace: every connect() of every process of the appliance is logged.
    # A webhook destination is configured: the only address outside loopback allowed.
    host.run(cmd, "down", "--data-dir", str(data))
    with (data / "config.toml").open("a") as f:
        f.write(f'\n[[notify.destinations]]\nname = "hook"\nkind = "webhook"\n'
                f'url = "http://{WEBHOOK[0]}:{WEBHOOK[1]}/tracehold"\n')
    log = tmp_path / "connect.strace"
    traced = subprocess.Popen(host.argv(
        "strace", "-f", "--seccomp-bpf", "-e", "trace=connect", "-o", str(log),
        cmd, "up", "--data-dir", str(data), "--free-ports", "--bind", "127.0.0.1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            st = _json(host.run(cmd, "status", "--json", "--data-dir", str(data), check=False))
            if st.get("running") and all(c["status"] == "ok" for c in st["components"]):
                break
            assert traced.poll() is None, "the stack under strace exited"
            time.sleep(1)
        else:
            pytest.fail("the stack under strace did not become healthy")
        host.run(cmd, "notify", "secret", "hook", "--value", "airgap-test-key", "--data-dir",
                 str(data))
        report["rca"] = demo_case_walk(host, cmd, data, prefix, tmp_path / "case.zip",
                                       wait_s=180)
        (out / "airgap-rca.json").write_text(json.dumps(report["rca"], indent=1))
        before = _counts(host, cmd, data)
    finally:
        host.run(cmd, "down", "--data-dir", str(data), check=False)
        traced.wait(timeout=120)
        for name in ("daemon.log", "supervisor.log"):
            if (data / "logs" / name).exists():
                shutil.copy(data / "logs" / name, out / name)
    strace_log = log.read_text(errors="replace")
    shutil.copy(log, out / "connect.strace")
    report["connect_calls"] = strace_log.count("connect(")
    assert report["connect_calls"], "strace recorded nothing"
    leaving = outside_loopback(strace_log)
    report["connects_outside_loopback"] = sorted(set(leaving))
    assert set(leaving) == {WEBHOOK}, leaving  # the configured destination, tried; no other

    # An upgrade over the running appliance keeps every span, case and audit entry.
    host.run(cmd, "up", "--detach", "--data-dir", str(data), "--free-ports", "--bind",
             "127.0.0.1", timeout=400)
    host.run(str(top / "install.sh"), "--upgrade", "--prefix", str(prefix), "--data-dir",
             str(data), "--free-ports", "--bind", "127.0.0.1", timeout=900)
    after = _counts(host, cmd, data)
    report["counts_before_upgrade"], report["counts_after_upgrade"] = before, after
    assert after["spans"] == before["spans"] and after["cases"] == before["cases"]
    assert after["audit_entries"] >= before["audit_entries"]  # the upgrade may add entries
    host.run(str(top / "install.sh"), "--uninstall", "--purge", "--prefix", str(prefix),
             "--data-dir", str(data), timeout=300)
    assert not data.exists()
    (out / "airgap.json").write_text(json.dumps(report, indent=1))
