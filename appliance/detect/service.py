"""The daemon's detection loop: findings become cases (one per incident, deduplicated
by signature and service in the case store), each with the metric window that shows
its main signal around the onset."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from appliance.cases.model import CaseOpen
from appliance.casework.services import records_for
from appliance.detect.model import Finding
from appliance.detect.runner import DetectorRunner
from appliance.detect.series import window_for
from appliance.settings import Settings
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.detect")


def start(store: SpanStore, s: Settings, stop: threading.Event) -> DetectorRunner | None:
    if not s.detect.enabled:
        return None
    cases = records_for(store, s).cases

    def open_case(finding: Finding) -> None:
        body = finding.as_case_request()
        window = window_for(store, finding, timedelta(seconds=s.detect.baseline_window_s))
        if window is not None:
            body["metric_windows"] = [window]
        case = cases.open(CaseOpen.model_validate(body), actor=f"detector:{finding.detector}")
        log.warning("%s on %s -> case %s", finding.failure_type, finding.service, case["id"])

    runner = DetectorRunner(store, s.detect, open_case)
    runner.start()
    threading.Thread(target=lambda: (stop.wait(), runner.stop()), daemon=True).start()
    return runner
