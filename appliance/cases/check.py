"""Verification after a fix: the case's own detector judges the current window.

The check records the current value of the case's main signal beside its
baseline, and whether the detector still fires for that service; the case
store then moves the case to verified (back to baseline) or back to
investigating.

It lives with the cases (it reads a Case and answers a Verify) and asks the
detectors, which sit below the cases and know nothing of them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from appliance.cases.model import Case, Check, Verify
from appliance.detect.runner import still_firing
from appliance.detect.series import SERIES
from appliance.detect.windows import SEEN, Windows
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore


def check_case(store: SpanStore, cfg: DetectConfig, case: Case,
               now: datetime | None = None) -> Verify:
    now = now or datetime.now(UTC)
    firing, _ = still_firing(store, cfg, case.failure_type, case.service, now)
    name, value, where = SERIES[case.failure_type]
    w = Windows.at(now, cfg)
    # a provider outage is judged on the provider, as its detector and metric window do
    provider = case.provider
    group, key = ("provider", provider) if provider else ("service_name", case.service)
    row = store.read(f"SELECT avg({value}) AS v, count(*) AS n FROM spans WHERE {group} = ? "
                     f"AND {SEEN} >= ? AND {SEEN} < ? AND ({where})",
                     [key, w.recent_start, w.now])[0]
    baseline = next((s.baseline for s in case.signals if isinstance(s.baseline, int | float)),
                    None)
    checks = [Check(signal=name, value=float(row["v"]), baseline=baseline)] \
        if row["v"] is not None else []
    detail = (f"{case.failure_type} detector {'still fires' if firing else 'is quiet'} "
              f"for {key} over {w.label} ({row['n']} spans)")
    return Verify(back_to_baseline=not firing and bool(checks), checks=checks, detail=detail)
