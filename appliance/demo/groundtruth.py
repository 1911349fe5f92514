"""The onset of an injected scenario, appended to ``<data_dir>/run/demo-scenarios.jsonl``
so the time a detector takes to notice it can be measured."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE_NAME = "demo-scenarios.jsonl"


def record(run_dir: Path, scenario: str, service: str, services: list[str], onset: float,
           seed: int, **extra: Any) -> dict[str, Any]:
    line = {"scenario": scenario, "service": service,
            "onset": datetime.fromtimestamp(onset, UTC).isoformat(timespec="milliseconds"),
            "seed": seed, "services": services, **extra}
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / FILE_NAME, "a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line


def read(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / FILE_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
