"""Findings become cases: one per incident (the case store deduplicates by signature and
service), each with the metric window that shows its main signal around the onset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from appliance.cases.model import CaseOpen
from appliance.cases.store import CaseStore
from appliance.detect.model import Finding
from appliance.detect.series import window_for
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.detect")


def case_opener(store: SpanStore, cases: CaseStore,
                cfg: DetectConfig) -> Callable[[Finding], None]:
    """The detector runner's callback: open (or join) the finding's case."""

    def open_case(finding: Finding) -> None:
        body = finding.as_case_request()
        window = window_for(store, finding, timedelta(seconds=cfg.baseline_window_s))
        if window is not None:
            body["metric_windows"] = [window]
        case = cases.open(CaseOpen.model_validate(body), actor=f"detector:{finding.detector}")
        log.warning("%s on %s -> case %s", finding.failure_type, finding.service, case.id)

    return open_case
