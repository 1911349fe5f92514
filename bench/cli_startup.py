"""Start-up cost of every `tracehold` read command against a running stack: wall and
CPU seconds per call (median of N), for this checkout and, with --before REV, for an
older revision run from a git worktree against a stack of its own.

    python bench/cli_startup.py [--runs 9] [--before 3968965]

Writes bench/results/cli-startup.json. The goal (issue 8): `tracehold status --json`
under 0.3 s wall and 0.3 s CPU, so `watch tracehold status` costs the appliance little.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cli-startup.json"
COMMANDS = [
    ["status", "--json"], ["--help"], ["keys", "list", "--json"], ["users", "list", "--json"],
    ["cases", "list", "--json"], ["change", "list", "--json"], ["audit", "list", "--json"],
]


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


def measure(source: Path, module: str, runs: int, bin_dir: Path) -> dict[str, object]:
    """Start a stack with the code in `source`, time every command, stop the stack."""
    data = Path(tempfile.mkdtemp(prefix="th-cli-bench-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACEHOLD_")},
           "PYTHONPATH": str(source), "TRACEHOLD_BIN_DIR": str(bin_dir),
           "TRACEHOLD_DATA_DIR": str(data)}
    cli = [sys.executable, "-m", module]
    subprocess.run([*cli, "up", "--detach", "--free-ports", "--bind", "127.0.0.1"], env=env,
                   cwd=source, check=True, stdout=subprocess.DEVNULL, timeout=300)
    try:
        out: dict[str, object] = {}
        for command in COMMANDS:
            _timed([*cli, *command], env, source)  # warm the page cache
            samples = [_timed([*cli, *command], env, source) for _ in range(runs)]
            out[" ".join(command)] = {
                "wall_s_median": round(statistics.median(s[0] for s in samples), 3),
                "cpu_s_median": round(statistics.median(s[1] for s in samples), 3),
                "exit_codes": sorted({s[2] for s in samples}),
            }
            print(f"  {' '.join(command):22} {out[' '.join(command)]}", flush=True)
        return out
    finally:
        subprocess.run([*cli, "down"], env=env, cwd=source, timeout=120,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--before", help="git revision to compare with (run from a worktree)")
    args = parser.parse_args()
    bin_dir = Path(os.environ.get("TRACEHOLD_BIN_DIR", ROOT / ".stack" / "bin"))
    result: dict[str, object] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/cli_startup.py " + " ".join(sys.argv[1:]),
        "runs": args.runs, "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
    }
    if args.before:
        tree = Path(tempfile.mkdtemp(prefix="th-before-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        try:
            print(f"before ({args.before}):", flush=True)
            # that revision's CLI lived in appliance/cli.py
            result["before"] = {"revision": args.before,
                                **measure(tree, "appliance.cli", args.runs, bin_dir)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    print("after (this checkout):", flush=True)
    result["after"] = measure(ROOT, "appliance", args.runs, bin_dir)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
