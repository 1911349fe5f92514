"""What a handler gets from the app it runs in: the objects the composition root built."""

from __future__ import annotations

from fastapi import Request

from appliance.ingest.limits import IngestLimits
from appliance.records import Records
from appliance.settings import Settings
from appliance.store.spans import SpanStore


def records_of(request: Request) -> Records:
    records: Records = request.app.state.records
    return records


def store_of(request: Request) -> SpanStore:
    return records_of(request).store


def settings_of(request: Request) -> Settings:
    return records_of(request).settings


def limits_of(request: Request) -> IngestLimits:
    limits: IngestLimits = request.app.state.limits
    return limits
