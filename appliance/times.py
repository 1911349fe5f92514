"""ISO 8601 times from users and clients, parsed once, with a clear error."""

from __future__ import annotations

from datetime import UTC, datetime

from appliance.errors import InvalidRequest


def parse_time(value: str, field: str) -> datetime:
    """An aware UTC datetime. Accepts ``2024-05-01``, ``2024-05-01T10:00:00Z`` or any
    offset; a time without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError) as exc:
        raise InvalidRequest(f"{field}: {value!r} is not an ISO 8601 time "
                             "(e.g. 2024-05-01T10:00:00Z)") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def optional_time(value: str | None, field: str) -> datetime | None:
    return None if value is None or value == "" else parse_time(value, field)


def iso(value: datetime | None) -> str | None:
    """UTC ISO text with a Z, as every API answer writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
