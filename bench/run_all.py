"""`make bench`: every benchmark that finishes in minutes, results in bench/results/.

The real-stack detection run (every failure scenario plus 15 minutes of the
harmless one, about 40 minutes) is separate: `python bench/detection_bench.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RUNS = [
    ["bench_decode.py"], ["bench_decode.py", "--gzip"], ["bench_store.py"],
    ["stack_bench.py"], ["console_bench.py"], ["cli_startup.py"], ["embed_bench.py"],
    ["rca_kb_bench.py"],
    ["evals_bench.py"],  # about 3 minutes: the 50 calls/s rounds are paced by the CPU budget
    ["rca_worker_bench.py"],  # a few minutes: the model answers on a busy host
    ["idle_bench.py"],  # about 8 minutes: 3 x 60 s at rest, 3 x 60 s with a browser
    ["backpressure_bench.py"],  # about 6 minutes: the daemon stopped under 10k spans/s
]

if __name__ == "__main__":
    failed = 0
    for args in RUNS:
        print(f"== {' '.join(args)}", flush=True)
        failed += subprocess.call([sys.executable, str(BENCH / args[0]), *args[1:]]) != 0
    sys.exit(1 if failed else 0)
