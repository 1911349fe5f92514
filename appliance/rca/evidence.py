"""The facts of a case, collected before any model: the deterministic half of
root-cause analysis and what every hypothesis points back to.

Each fact has a stable id (``f1``, ``f2``, … in the order they are collected, which is
fixed), a kind, what it is about, the numbers, and trace ids where they help. Kinds:

* ``signal``: one signal of the case's service, recent (since the onset) against its
  baseline (the ``detect.baseline_window_s`` before it), with a robust score;
* ``cohort``: the failing signal per value of a version-like column (prompt template,
  index version, embedding model, request and response model, temperature, top_k),
  and whether the value is new since the onset;
* ``change``: a change event near the onset, in any service, with its time lag and
  scope (same service, and the cohort its new value matches: its canary share);
* ``provider``: a provider's failed-call share across every service (blast radius);
* ``trace_shape``: repeated tool calls with the same arguments, runs hitting the
  iteration limit, spans per trace;
* ``input_size``: input tokens against the model's context window;
* ``turn_trend``: the failing signal early against late in conversations;
* ``telemetry``: what the service sends at all (how complete the evidence can be).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from appliance.cases.model import Case
from appliance.changes.store import ChangeStore
from appliance.rca import probes, signals
from appliance.rca.facts import Evidence, Fact, FactKind
from appliance.rca.reads import Span
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore
from appliance.times import parse_time

# Change events this long before the onset are still candidates (a stale index after a
# document update can take hours to show).
CHANGE_LOOKBACK = timedelta(hours=24)
__all__ = ["CHANGE_LOOKBACK", "Evidence", "Fact", "FactKind", "collect"]


def collect(store: SpanStore, changes: ChangeStore, case: Case, cfg: DetectConfig,
            now: datetime | None = None) -> Evidence:
    """Every fact about ``case``: its service's spans since the onset (the detector's,
    refined to where the main signal shifted) against the baseline before it, the
    change events near it, the providers it calls."""
    detected = parse_time(case.onset_at, "onset_at")
    end = now or datetime.now(UTC)
    if end <= detected:  # an onset in the future (a clock ahead): judge a recent window
        end = detected + timedelta(seconds=cfg.recent_window_s)
    onset = signals.refine_onset(store, case.service, detected, end, case.failure_type, cfg)
    ev = Evidence(case.id, case.service, case.failure_type, case.provider, onset,
                  onset - timedelta(seconds=cfg.baseline_window_s), end, detected)
    w = Span(case.service, ev.baseline_start, onset, end)
    signals.telemetry(store, ev, w, cfg)
    signals.against_baseline(store, ev, w, cfg)
    signals.version_cohorts(store, ev, w, cfg)
    probes.trace_shapes(store, ev, w, cfg)
    probes.input_size(store, ev, w, cfg)
    probes.turn_trend(store, ev, w)
    probes.providers(store, ev, Span(None, ev.baseline_start, onset, end), cfg)
    probes.change_events(changes.list(since=onset - CHANGE_LOOKBACK, until=end), ev)
    return ev
