"""`python -m appliance.demo --data-dir D [--scenario NAME --at S] [--no-app-scores]`:
demo traffic until terminated (the `demo` component of `tracehold up --demo`; the stack
manager stops it with SIGTERM). The stack passes the `demo_scenario` setting, so a failure
starts a couple of minutes in and someone trying the appliance sees a case open and
diagnosed, and `demo_app_scores` (off: no scores of the apps' own)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.demo.names import ScenarioName
from appliance.demo.runner import Options, run_against
from appliance.errors import TraceholdError
from appliance.settings import resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.demo")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--rate", type=float, default=Options.rate)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--daily-shape", action="store_true")
    parser.add_argument("--scenario", type=ScenarioName, choices=list(ScenarioName),
                        default=None, help="inject this failure scenario")
    parser.add_argument("--at", type=float, default=Options.at,
                        help="seconds after the start the scenario begins")
    parser.add_argument("--no-app-scores", action="store_true",
                        help="the apps send no evaluation or retrieval scores of their own")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a log file
    try:
        s = resolve(args.data_dir, running=True)
        summary = run_against(s, Options(rate=args.rate, seed=args.seed,
                                         daily_shape=args.daily_shape, scenario=args.scenario,
                                         at=args.at, progress_every=60.0,
                                         app_scores=not args.no_app_scores), print)
    except TraceholdError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
