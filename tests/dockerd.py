"""A Docker engine of the test's own: Debian's dockerd started by hand.

No image can be pulled here and no bridge or iptables is wanted, so it runs with
``--iptables=false --bridge=none`` and its own data root, exec root and socket (under a
short /tmp path: a unix socket path has a 108-byte limit). Containers on it use host
networking only. Given a network namespace, dockerd starts inside it, so host-network
containers share that namespace (the air-gap test's loopback-only one).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Dockerd:
    root: Path
    pid: int

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        """The engine's address, as ``DOCKER_HOST`` and the SDK's ``base_url`` take it."""
        return f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"


def _ping(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=2) as c:
            return c.get("http://docker/_ping").status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def dockerd(netns: str | None = None, timeout: float = 60.0) -> Iterator[Dockerd]:
    """Start dockerd, wait until it answers, yield it; stop it (and every container of
    its own) on the way out."""
    binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(binary).exists():
        raise RuntimeError("dockerd is not installed (Debian's docker.io; `make test-setup`)")
    root = Path(tempfile.mkdtemp(prefix="thd-", dir="/tmp"))
    # containerd refuses a namespace with "__" or a trailing "_" (mkdtemp's names have "_")
    tag = "".join(c for c in root.name[4:] if c.isalnum())
    argv = [binary, "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{root / 'docker.sock'}",
            "--containerd-namespace", f"thd{tag}", "--containerd-plugins-namespace", f"thdp{tag}"]
    if netns is not None:
        # nsenter joins only the network namespace: `ip netns exec` also remounts /sys,
        # which hides the cgroup mounts dockerd needs ("Devices cgroup isn't mounted")
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    with open(root / "dockerd.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    engine = Dockerd(root, proc.pid)
    try:
        deadline = time.monotonic() + timeout
        while not _ping(engine.socket):
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {proc.returncode}:\n"
                                   + engine.log.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd not answering after {timeout:.0f}s:\n"
                                   + engine.log.read_text()[-3000:])
            time.sleep(0.2)
        yield engine
    finally:
        if _ping(engine.socket):
            ids = subprocess.run(["docker", "-H", engine.url, "ps", "-aq"],
                                 capture_output=True, text=True, check=False).stdout.split()
            if ids:
                subprocess.run(["docker", "-H", engine.url, "rm", "-f", *ids],
                               capture_output=True, check=False)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # overlay mounts under the data root go with dockerd; whatever is left is ours, as is
        # the bind mount of the network namespace that host-network containers leave in the
        # exec root (exec/netns/default), which kept the folder: deepest first
        mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
            subprocess.run(["umount", mount], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
