"""Shared fixtures. Tests marked `stack` start the real telemetry stack (collector,
Prometheus, VictoriaMetrics, Envoy, daemon) on free ports with its own data folder.
Most share the session's `stack`; a test that breaks its stack on purpose (kill -9,
SIGSTOP) takes `own_stack`, so no other test runs on what it left behind. The markers
(`stack`, `binaries`, `browser`, `root`) are registered in pyproject.toml.

Envoy's external listeners bind 127.0.0.2: still loopback, but a different
address from the 127.0.0.1 every internal component binds, so a socket scan can
tell the two apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.settings import Settings
from tests.airgap import _output_dir, netns  # noqa: F401  (netns: a fixture of both air-gap modules)

EXTERNAL_BIND = "127.0.0.2"
AIRGAP_FREE_GB = 10
TRACEHOLD = [sys.executable, "-m", "appliance"]


def tracehold(*args: str, data_dir: Path, check: bool = True, timeout: float = 240,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*TRACEHOLD, *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"tracehold {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Stack:
    data_dir: Path
    settings: Settings
    key: str

    @property
    def endpoints(self) -> dict[str, str]:
        return self.status()["endpoints"]

    def status(self) -> dict[str, Any]:
        out = tracehold("status", "--json", data_dir=self.data_dir, check=False)
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    def component(self, name: str) -> dict[str, Any]:
        comp: dict[str, Any] = next(c for c in self.status()["components"] if c["name"] == name)
        return comp

    def daemon(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.settings.ports.daemon}",
                            timeout=10, trust_env=False)

    def stored(self, service: str) -> int:
        with self.daemon() as c:
            r = c.get("/api/v1/count", params={"service": service})
            r.raise_for_status()
            count: int = r.json()["spans"]
            return count

    def wait_stored(self, service: str, expected: int, timeout: float = 60) -> int:
        """Poll until expected spans of service are stored; then, once the collector has
        delivered all it accepted (so an excess would show too), the count."""
        deadline, got = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            got = self.stored(service)
            if got >= expected:
                self.wait_delivered()
                return self.stored(service)
            time.sleep(0.25)
        return got

    def collector_counter(self, name: str, **labels: str) -> float:
        """A counter of the collector's own telemetry, read from the collector (not as
        scraped), summed over the series that carry labels; 0 before its first increment."""
        text = httpx.get(f"http://127.0.0.1:{self.settings.ports.collector_telemetry}/metrics",
                         timeout=10, trust_env=False).text
        total = 0.0
        for line in text.splitlines():
            m = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)(?: -?\d+)?", line)
            if m is None or m[1].removesuffix("_total") != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[2] or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m[3])
        return total

    def wait_delivered(self, timeout: float = 60) -> None:
        """Until the store's exporter has sent (and the daemon committed) as many spans as
        the collector accepted: nothing acknowledged is still on its way. With tail
        sampling the store gets fewer on purpose (test_pipeline_options waits for the
        sampler itself)."""
        if self.settings.tail_sampling:
            return
        deadline = time.monotonic() + timeout
        while True:
            accepted = self.collector_counter("otelcol_receiver_accepted_spans")
            sent = self.collector_counter("otelcol_exporter_sent_spans",
                                          exporter="otlp_http/store")
            if sent >= accepted:
                return
            assert time.monotonic() < deadline, (
                f"the collector accepted {accepted} spans, delivered {sent} to the store")
            time.sleep(0.25)

    def query(self, which: str, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.endpoints[which]}/api/v1/query", params={"query": promql},
                      headers={"X-API-Key": self.key}, timeout=10, trust_env=False)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result

    def wait_series(self, which: str, promql: str, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(which, promql)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no series for {promql} in {which} within {timeout}s")

    def wait_above(self, which: str, promql: str, floor: float,
                   timeout: float = 60) -> float:
        """Poll until the single result is above floor; return that value."""
        deadline, seen = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            seen = [float(r["value"][1]) for r in self.query(which, promql)]
            if len(seen) == 1 and seen[0] > floor:
                return seen[0]
            time.sleep(0.5)
        raise AssertionError(f"{promql} in {which}: {seen}, expected one value above {floor}")

    def wait_value(self, which: str, promql: str, expected: float,
                   timeout: float = 60) -> None:
        """Stores are eventually consistent: poll until the single result equals expected."""
        deadline, seen = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            result = self.query(which, promql)
            seen = [float(r["value"][1]) for r in result]
            if seen == [expected]:
                return
            time.sleep(0.5)
        raise AssertionError(f"{promql} in {which}: {seen}, expected [{expected}]")


def start_stack(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Stack:
    """A real stack on free ports; `env` sets TRACEHOLD_* settings for it."""
    tracehold("up", "--detach", "--free-ports", "--bind", EXTERNAL_BIND, *extra,
              data_dir=data_dir, env=env)
    settings = Settings.load_effective(data_dir)
    key = json.loads((data_dir / "secrets.json").read_text())["api_keys"][0]["key"]
    return Stack(data_dir, settings, key)


@contextlib.contextmanager
def running_stack(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[Stack]:
    st = start_stack(data_dir, env=env)
    try:
        yield st
    finally:
        tracehold("down", data_dir=data_dir, check=False)
        out = (Path(os.environ.get("TRACEHOLD_TEST_OUTPUT", "test-output")) / "stack-logs"
               / data_dir.name)
        out.mkdir(parents=True, exist_ok=True)
        for log in (data_dir / "logs").glob("*.log"):
            (out / log.name).write_bytes(log.read_bytes()[-200_000:])


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as st:
        yield st


@pytest.fixture
def own_stack(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack for this one test, for faults that leave a stack restarted or half
    recovered (kill -9 of a component, SIGSTOP of the daemon). Its logs are kept under
    the test's name."""
    name = re.sub(r"\W+", "-", request.node.name)[:60]
    with running_stack(tmp_path_factory.mktemp(name)) as st:
        yield st


@pytest.fixture(scope="session")
def airgap_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The air-gap bundle's .tar, built as a build host would (`tracehold bundle build`),
    its container images built into and saved from a dockerd of the test's own.
    TRACEHOLD_TEST_FROZEN names an already frozen folder to skip the ~10 minute freeze
    when iterating locally; CI freezes. Its build report goes to airgap/bundle.json."""
    from tests.dockerd import dockerd

    out = tmp_path_factory.mktemp("bundle")
    # The bundle is ~4.3 GB and each test that installs it writes as much again: a clear
    # failure up front rather than a build or install that dies of a full disk.
    free = shutil.disk_usage(out).free / 2**30
    if free < AIRGAP_FREE_GB:
        pytest.fail(f"the air-gap tests need about {AIRGAP_FREE_GB} GB free under {out.parent} "
                    f"(a 4.3 GB bundle and its installs); {free:.1f} GB is free. Set TMPDIR "
                    "or --basetemp to a roomier disk.", pytrace=False)
    frozen = os.environ.get("TRACEHOLD_TEST_FROZEN")
    with dockerd() as engine:
        argv = [*TRACEHOLD, "bundle", "build", "--out", str(out), "--signing-key",
                str(out / "keys" / "bundle.pem"), "--json", "--docker-host", engine.url,
                *(["--frozen", frozen] if frozen else [])]
        t0 = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                              env={**os.environ, "SOURCE_DATE_EPOCH": "1790000000"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    built = json.loads(done.stdout)
    built["build_seconds"] = round(time.monotonic() - t0, 1)
    (_output_dir() / "bundle.json").write_text(json.dumps(built, indent=1))
    return Path(built["archive"])
