"""The daemon's HTTP API on loopback: OTLP/HTTP trace ingest and the JSON read API.

``create_app`` takes what the composition root (``appliance/daemon.py``) built; every
route is in ``routes.ROUTES`` and every error has the one shape of ``errors``.
"""

from __future__ import annotations

from fastapi import FastAPI

from appliance.api import errors, routes
from appliance.api.ingest import IngestCounters
from appliance.ingest.limits import IngestLimits
from appliance.records import Records


def create_app(records: Records, limits: IngestLimits | None = None,
               native_walker: bool = True) -> FastAPI:
    app = FastAPI(title="Tracehold daemon", version="0.1.0")
    app.state.records = records
    app.state.limits = limits or IngestLimits()
    app.state.native_walker = native_walker
    app.state.counters = IngestCounters()
    errors.install(app)
    routes.register(app)
    return app
