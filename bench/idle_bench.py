"""The cost at rest (issue 9): CPU of the whole stack with no traffic.

    .venv/bin/python bench/idle_bench.py [--windows 3] [--window-s 60] [--settle-s 30]
                                         [--no-browser] [--out idle]

Starts a stack on free ports with its own data folder and sends it nothing. Once every
component is healthy and the stack has settled, it reads the CPU seconds (user + system)
of each component's process tree (pids from the state file) and of the supervisor itself
at the start and end of each window, and reports each as % of one core. Per-process CPU
seconds are what the stack itself used, whatever else runs on the machine; the medians
of several windows are the numbers to read.

A second phase opens the console's Overview in headless Chromium (through Envoy's
console listener with basic auth, as tests/integration/test_console_browser.py does) and
measures again: the Overview's auto-refresh costs only while someone looks. Chromium's
own CPU is reported beside the stack's, not in its total.

Writes bench/results/<out>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.settings import Settings  # noqa: E402
from bench.cpu import Reader, sample, stack_readers, tree_cpu, used  # noqa: E402
from bench.stack_bench import _write  # noqa: E402
from tests.conftest import tracehold  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Streamlit has finished the run (as in tests/integration/test_console_browser.py).
DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelector('[data-testid="stSkeleton"]') === null;
}"""


def measure(targets: dict[str, Reader], windows: int,
            window_s: float) -> dict[str, Any]:
    per: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(windows):
        t0, s0 = time.monotonic(), sample(targets)
        time.sleep(window_s)
        t1, s1 = time.monotonic(), sample(targets)
        for name in targets:
            per[name].append(100 * used(s0[name], s1[name]) / (t1 - t0))
    return {name: {"median_pct": round(statistics.median(v), 2),
                   "windows_pct": [round(x, 2) for x in v]} for name, v in per.items()}


def _table(result: dict[str, Any], stack_names: list[str]) -> dict[str, Any]:
    """Per-component medians and the total of the stack's components (median over the
    windows of each window's sum)."""
    windows = len(next(iter(result.values()))["windows_pct"])
    totals = [sum(result[n]["windows_pct"][i] for n in stack_names) for i in range(windows)]
    return {"components": result, "total_median_pct": round(statistics.median(totals), 2),
            "total_windows_pct": [round(t, 2) for t in totals]}


@contextmanager
def _stack(data_dir: Path) -> Iterator[dict[str, Any]]:
    tracehold("up", "--detach", "--free-ports", "--bind", "127.0.0.1", data_dir=data_dir)
    try:
        yield json.loads((data_dir / "run" / "state.json").read_text())
    finally:
        tracehold("down", data_dir=data_dir, check=False)


@contextmanager
def _browser(console_url: str, user: str,
             password: str) -> Iterator[Reader]:
    """The Overview open in headless Chromium; yields a reader of Chromium's CPU."""
    from playwright import sync_api as playwright

    with playwright.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-idle-"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 2200},
            http_credentials={"username": user, "password": password})
        try:
            page = ctx.new_page()
            deadline = time.monotonic() + 30
            while True:  # Envoy applies a new user within a second or two
                response = page.goto(console_url + "/")
                if response is not None and response.status != 401:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the console kept refusing the new user")
                time.sleep(0.5)
            page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
            # the Overview has drawn its first run (with no traffic its charts say no data)
            page.get_by_text("Auto-refresh every").wait_for(timeout=60_000)
            page.wait_for_function(DRAWN, timeout=60_000)
            # Chromium is a child of playwright's driver, itself a child of this process.
            chromium = [c for c in psutil.Process().children(recursive=True)
                        if "chrom" in c.name().lower() and
                        not any("chrom" in a.name().lower() for a in c.parents())]
            yield lambda: {k: v for c in chromium for k, v in tree_cpu(c.pid).items()}
        finally:
            ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=60)
    ap.add_argument("--settle-s", type=float, default=30)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--out", default="idle", help="bench/results/<out>.json")
    ap.add_argument("--note", default="", help="what this run measured (e.g. a commit)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tracehold-idle-") as tmp, _stack(Path(tmp)) as st:
        data_dir = Path(tmp)
        comps = [c["name"] for c in st["components"]]
        names = [*comps, "supervisor"]
        targets = stack_readers(data_dir)
        print(f"stack up ({', '.join(comps)}); settling {args.settle_s:.0f} s",
              file=sys.stderr)
        time.sleep(args.settle_s)
        print(f"idle: {args.windows} windows of {args.window_s:.0f} s", file=sys.stderr)
        idle = _table(measure(targets, args.windows, args.window_s), names)
        result: dict[str, Any] = {
            "windows": args.windows, "window_s": args.window_s, "settle_s": args.settle_s,
            "unit": "% of one core (CPU seconds user+system per wall second x 100)",
            "goal_total_pct": 5, "idle": idle}
        if not args.no_browser:
            user = f"idle-bench-{int(time.time())}"
            password = json.loads(tracehold("users", "create", user, "--json",
                                            data_dir=data_dir).stdout)["password"]
            with _browser(st["endpoints"]["console"], user, password) as chromium:
                print(f"browser on the Overview; settling {args.settle_s:.0f} s, then "
                      f"{args.windows} windows", file=sys.stderr)
                time.sleep(args.settle_s)
                result["with_browser"] = _table(
                    measure({**targets, "chromium": chromium}, args.windows, args.window_s),
                    names)
        s = Settings.load_effective(data_dir)
        result["settings"] = {"scrape_interval_s": s.scrape_interval_s,
                              "spanmetrics_flush_interval": s.spanmetrics_flush_interval,
                              "console_refresh_s": s.console_refresh_s,
                              "detect_interval_s": s.detect.interval_s}
        if args.note:
            result["note"] = args.note
    _write(args.out, result)


if __name__ == "__main__":
    main()
