"""Types of the native walker (appliance/ingest/_wire.c)."""

from typing import Any

def walk(data: bytes | bytearray, vlim: int, max_attrs: int, max_events: int,
         cache: dict[bytes, tuple[str, Any]]) -> list[Any] | None: ...
