"""What the air-gap tests share (tests/integration/test_airgap.py, the native runtime, and
test_airgap_docker.py, the Docker runtime): a network namespace with only loopback, a
host that runs commands inside it with a bare environment, and small readers of the
installed appliance's answers. The bundle itself is the session fixture
``airgap_bundle`` in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # no venv, no pyenv: nothing of ours


def _output_dir() -> Path:
    out = Path(os.environ.get("TRACEHOLD_TEST_OUTPUT", "test-output")) / "airgap"
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def network_namespace(name: str | None = None) -> Iterator[str]:
    """A new network namespace whose only link is loopback (up); whatever still runs in
    it on the way out (a failed test's stack) is killed, then it is deleted."""
    name = name or f"tracehold-airgap-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        links = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "link"],
                               capture_output=True, text=True, check=True).stdout
        assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"]
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A loopback-only network namespace for one test."""
    with network_namespace() as name:
        yield name


class Host:
    """Runs commands inside the namespace with a bare environment."""

    def __init__(self, ns: str, home: Path) -> None:
        self.ns, self.home = ns, home

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, "env", "-i", f"PATH={PATH}",
                f"HOME={self.home}", "LANG=C.UTF-8", *args]

    def run(self, *args: str, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout)
        if check:
            assert done.returncode == 0, f"{args}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done


def _json(done: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    return json.loads(done.stdout)


def _unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(into)], check=True)
    (top,) = list(into.iterdir())
    return top


def _counts(host: Host, cmd: str, data: Path) -> dict[str, int]:
    status = _json(host.run(cmd, "status", "--json", "--data-dir", str(data)))
    cases = _json(host.run(cmd, "cases", "list", "--json", "--data-dir", str(data)))
    audit = _json(host.run(cmd, "audit", "verify", "--json", "--data-dir", str(data)))
    assert audit["ok"] is True, audit
    return {"spans": int(status["spans_stored"] or 0), "cases": len(cases),
            "audit_entries": int(audit["entries"])}


CONNECT = re.compile(
    r'connect\(\d+, \{sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\), '
    r'(?:sin_addr=inet_addr\("(?P<v4>[^"]+)"\)|[^}]*?inet_pton\(AF_INET6, "(?P<v6>[^"]+)")')


def outside_loopback(strace_log: str) -> list[tuple[str, int]]:
    """Every (address, port) the log shows a connect() to, IPv4 or IPv6, that is not
    loopback; in order, repeats kept."""
    bad = []
    for line in strace_log.splitlines():
        m = CONNECT.search(line)
        if not m:
            continue
        addr = m.group("v4") or m.group("v6")
        if not (addr.startswith("127.") or addr == "::1" or addr.startswith("::ffff:127.")):
            bad.append((addr, int(m.group("port"))))
    return bad


# The one address the appliance may contact beyond loopback in the air-gap tests: a
# webhook destination (TEST-NET-1, unroutable here). Its attempts prove the recording
# sees connections that leave loopback; nothing else may appear.
WEBHOOK = ("192.0.2.10", 8080)


def demo_case_walk(host: Host, cmd: str, data: Path, prefix: Path, export: Path,
                   wait_s: float) -> dict[str, object]:
    """A demo provider failure opens a case, the RCA runs on it with the bundled GGUF, and
    the case's export verifies; what the RCA did, for the report."""
    demo = _json(host.run(cmd, "demo", "--rate", "8", "--seed", "2", "--scenario",
                          "provider_error", "--at", "45", "--duration", "100", "--json",
                          "--data-dir", str(data), timeout=400))
    assert demo["acknowledged"] > 0
    deadline, case = time.monotonic() + wait_s, None
    while time.monotonic() < deadline:
        cases = _json(host.run(cmd, "cases", "list", "--json", "--data-dir", str(data)))
        if cases:
            case = _json(host.run(cmd, "cases", "show", cases[0]["id"], "--json",
                                  "--data-dir", str(data)))
            if case.get("rca"):
                break
        time.sleep(2)
    assert case is not None and case["failure_type"] == "provider_error", case
    assert case.get("rca"), "no RCA ran on the case"
    details = case["rca"]["details"]
    # The bundled GGUF loaded in the frozen appliance and was asked (on a loaded machine
    # it may run out of its time: the status says so and the rules answer).
    gguf_name = next((prefix / "current" / "models").glob("*.gguf")).stem
    assert details.get("model_name") == gguf_name, details.get("status")
    assert not str(details.get("status")).startswith("model_unavailable"), details
    host.run(cmd, "cases", "export", case["id"], "--out", str(export), "--data-dir",
             str(data))
    verified = _json(host.run(cmd, "verify-export", str(export), "--json", "--data-dir",
                              str(data)))
    assert verified["ok"] is True, verified
    return {"model": case["rca"].get("model"), "status": details.get("status"),
            "model_name": details.get("model_name"),
            "model_seconds": (details.get("model_answer") or {}).get("seconds"),
            "root_cause": case.get("root_cause")}
