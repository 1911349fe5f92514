"""Unit-test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.store.spans import SpanStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    """A real DuckDB span store in a fresh folder."""
    s = SpanStore(tmp_path / "spans.duckdb")
    yield s
    s.close()
