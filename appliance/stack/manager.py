"""Run the whole stack in the foreground: render, start, supervise, stop on a signal.

This is the parent process of every component (``tracehold up``). The daemon
that owns DuckDB is one of its children, so a crashed daemon is restarted
like any other component and the collector's on-disk queue covers the gap.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from appliance.errors import StackError
from appliance.secrets import SecretsFile
from appliance.settings import Runtime, Settings
from appliance.stack import components, render, state
from appliance.stack.docker_runtime import DockerLauncher
from appliance.stack.supervisor import Launcher, Supervisor, popen


class StackManager:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._stop = threading.Event()
        self.supervisor: Supervisor | None = None
        self.first_key: str | None = None

    def prepare(self) -> Supervisor:
        """Everything short of starting processes; safe to call again."""
        s = self.s
        if state.read(s.state_file) is not None:
            raise StackError(f"a Tracehold stack already runs with data folder {s.data_dir}")
        for sub in (s.data_dir, s.run_dir, s.log_dir):
            sub.mkdir(parents=True, exist_ok=True)
        secrets = SecretsFile(s.secrets_file)
        new_key = secrets.ensure_initial_key()
        if new_key is not None:
            self.first_key = new_key.key
        rendered = render.write_all(s, secrets.load().api_keys)
        specs = components.build(s, rendered)
        launcher: Launcher = popen
        if s.runtime is Runtime.docker:
            docker = DockerLauncher(s)
            docker.prepare(specs)  # every image there (or loaded) before anything starts
            launcher = docker
        else:
            components.check_binaries(specs)
        s.dump_effective()
        self.supervisor = Supervisor(
            specs, s.log_dir, backoff_max=s.restart_backoff_max_s, on_change=self._write_state,
            unhealthy_restart_s=s.restart_unhealthy_after_s,
            health_interval=s.health_check_interval_s, launcher=launcher,
        )
        return self.supervisor

    def run(self, progress: Callable[[str], None] = print) -> None:
        """Start everything, then supervise until SIGTERM/SIGINT."""
        sup = self.prepare()
        self._started = datetime.now(UTC).isoformat(timespec="seconds")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        t0 = time.monotonic()
        try:
            sup.start(progress=progress)
            progress(f"all components healthy in {time.monotonic() - t0:.1f}s")
            if self.first_key:
                progress(f"first API key (shown once, also in {self.s.secrets_file}): "
                         f"{self.first_key}")
            for name, url in state.endpoints(self.s).items():
                progress(f"  {name:16} {url}")
            sup.run(self._stop.is_set)
        finally:
            progress("stopping …")
            sup.stop()
            self.s.state_file.unlink(missing_ok=True)
            # Stopped, its effective settings no longer win: a config.toml edited now is
            # what the next CLI command reads.
            self.s.effective_file.unlink(missing_ok=True)
            progress("stopped")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _write_state(self, snapshot: list[dict[str, object]]) -> None:
        state.write(self.s.state_file, {
            "supervisor_pid": os.getpid(),
            "started_at": getattr(self, "_started", None),
            "data_dir": str(self.s.data_dir),
            "profile": str(self.s.profile),
            "runtime": str(self.s.runtime),
            "components": snapshot,
            "endpoints": state.endpoints(self.s),
        })
