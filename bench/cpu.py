"""CPU seconds of the stack's processes, for the benches that account where CPU goes.

Per-process CPU seconds (user + system) are what a process itself used, whatever else
runs on the machine: on a shared, noisy host they are steadier than wall-clock rates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psutil

Reader = Callable[[], dict[int, float]]


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system, children reaped are not counted) of pid and every
    descendant, per pid."""
    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            continue
    return out


def self_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of pid alone (the supervisor, whose children are the components)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return {}
    return {pid: t.user + t.system}


def stack_readers(data_dir: Path) -> dict[str, Reader]:
    """A reader per component's process tree and one for the supervisor, from the
    running stack's state file."""
    state = json.loads((data_dir / "run" / "state.json").read_text())
    readers: dict[str, Reader] = {
        c["name"]: (lambda pid=c["pid"]: tree_cpu(pid)) for c in state["components"]}
    readers["supervisor"] = lambda pid=state["supervisor_pid"]: self_cpu(pid)
    return readers


def sample(readers: dict[str, Reader]) -> dict[str, dict[int, float]]:
    return {name: read() for name, read in readers.items()}


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples; a process born in between counts from 0."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())
