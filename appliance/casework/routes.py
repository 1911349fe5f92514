"""Every casework route in one router, so create_app includes it with one line."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.audit.api import router as audit_router
from appliance.cases.api import router as cases_router
from appliance.changes.api import router as changes_router
from appliance.report.api import router as report_router

router = APIRouter()
for _sub in (changes_router, cases_router, audit_router, report_router):
    router.include_router(_sub)
