"""The command table: every word builds alone and together, and a read command loads
none of the heavy libraries (the start-up time, measured in bench/cli_startup.py,
comes from what is imported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from appliance.cli.main import COMMANDS, build

HEAVY = ("fastapi", "duckdb", "pandas", "matplotlib", "reportlab", "streamlit", "jinja2",
         "yaml", "opentelemetry", "cryptography", "httpx", "uvicorn", "envoy")


def _words(app: typer.Typer) -> set[str]:
    return ({c.name for c in app.registered_commands if c.name}
            | {g.name for g in app.registered_groups if g.name})


def test_the_whole_tree_is_the_table() -> None:
    assert _words(build()) == set(COMMANDS)


@pytest.mark.parametrize("word", sorted(COMMANDS))
def test_each_word_builds_alone(word: str) -> None:
    assert _words(build(word)) == {word}


@pytest.mark.parametrize("argv", [["status", "--json"], ["down"], ["keys", "list"]])
def test_a_read_command_loads_no_heavy_library(argv: list[str], tmp_path: Path) -> None:
    # -X importtime names every module the real run imports, on stderr
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "appliance", *argv,
                          "--data-dir", str(tmp_path)], capture_output=True, text=True)
    loaded = {line.split("|")[-1].strip().split(".")[0]
              for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "appliance" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
