from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError, InvalidRequest, NotFound
from appliance.secrets import SecretsFile


def test_first_key_once_then_never(tmp_path: Path) -> None:
    f = SecretsFile(tmp_path / "secrets.json")
    first = f.ensure_initial_key()
    assert first is not None and first.key.startswith("thk_") and len(first.key) > 40
    assert f.ensure_initial_key() is None
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    listed = [k.public() for k in f.load().api_keys]
    assert first.key not in str(listed)


def test_rotation_keeps_other_keys_live(tmp_path: Path) -> None:
    f = SecretsFile(tmp_path / "s.json")
    a, b = f.create("a"), f.create("b")
    f.revoke(a.id)
    assert [k.id for k in f.load().active_keys()] == [b.id]
    assert f.revoke(a.id).revoked_at is not None  # revoking twice is harmless


def test_bad_calls(tmp_path: Path) -> None:
    f = SecretsFile(tmp_path / "s.json")
    with pytest.raises(NotFound):
        f.revoke("key_nope")
    with pytest.raises(InvalidRequest):
        f.create("")
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        f.load()
