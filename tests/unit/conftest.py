"""Unit-test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.records import Records
from appliance.store.spans import SpanStore
from tests.casework import open_records


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    """A real DuckDB span store in a fresh folder."""
    s = SpanStore(tmp_path / "spans.duckdb")
    yield s
    s.close()


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    """The record stores over a real DuckDB file, as the daemon builds them."""
    r = open_records(tmp_path)
    yield r
    r.store.close()
