"""Detection end to end on the real stack: demo traffic with a scenario through Envoy,
the daemon's detectors open a case of that type with linked traces, its metric window
and the audit entry; the case's own detector then judges it on `cases check`.
(Every scenario on the real stack, with times to case: bench/detection_bench.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import running_stack, tracehold

pytestmark = [pytest.mark.stack, pytest.mark.binaries]


def test_provider_outage_opens_one_case_with_evidence(tmp_path: Path) -> None:
    data_dir = tmp_path / "detect"
    with running_stack(data_dir):
        demo = tracehold("demo", "--rate", "8", "--seed", "2", "--scenario", "provider_error",
                         "--at", "45", "--duration", "100", "--json", data_dir=data_dir,
                         check=False, timeout=400)
        summary = json.loads(demo.stdout)
        assert summary["acknowledged"] > 0 and summary["ground_truth"]["provider"]
        provider = summary["ground_truth"]["provider"]
        deadline, cases = time.monotonic() + 60, []
        while time.monotonic() < deadline and not cases:
            cases = json.loads(tracehold("cases", "list", "--json", data_dir=data_dir).stdout)
            time.sleep(2)
        assert [c["failure_type"] for c in cases] == ["provider_error"], cases
        case = json.loads(tracehold("cases", "show", cases[0]["id"], "--json",
                                    data_dir=data_dir).stdout)
        assert case["status"] == "open" and case["trace_ids"]
        signals = {s["name"]: s for s in case["signals"]}
        assert signals["provider"]["value"] == provider
        assert signals["provider_error_share"]["value"] > 0.15
        windows = case["context"]["metric_windows"]
        assert windows and windows[0]["name"] == "provider_error_share" and windows[0]["points"]
        # The evidence traces are in the span store, and they are failed calls to that provider.
        with httpx_client(data_dir) as c:
            spans = c.get(f"/api/v1/traces/{case['trace_ids'][0]}").json()["spans"]
        assert any(s["provider"] == provider and s["status_code"] == "error" for s in spans)
        # Resolved too early, while still failing: the check sends it back to investigating.
        tracehold("cases", "resolve", case["id"], "--root-cause", "provider outage",
                  "--fix", "fail over to the second provider", data_dir=data_dir)
        checked = json.loads(tracehold("cases", "check", case["id"], "--json",
                                       data_dir=data_dir).stdout)
        assert checked["status"] == "investigating"
        assert checked["verifications"][-1]["back_to_baseline"] is False
        audit = tracehold("audit", "verify", "--json", data_dir=data_dir)
        assert json.loads(audit.stdout)["ok"] is True


def httpx_client(data_dir: Path):  # type: ignore[no-untyped-def]
    import httpx

    from appliance.settings import Settings

    port = Settings.load_effective(data_dir).ports.daemon
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False)
