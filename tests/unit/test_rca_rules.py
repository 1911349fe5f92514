"""Rules-only root-cause analysis over the real demo generator and a real DuckDB store,
in simulated time: for each failure scenario the detector's case is diagnosed as its
type, and the top hypothesis names what the scenario changed (the change event the
appliance inferred or a person recorded, the provider, the tool, or the service
itself); a harmless change in another service at the same moment is not blamed, and
too little telemetry answers 'unable to determine root cause'.

Each scenario is replayed once per module (a few seconds each) and shared by the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.cases.model import UNDETERMINED, Case, CaseOpen
from appliance.changes.store import ChangeIn
from appliance.demo import agents, catalog, chat, rag
from appliance.demo.names import ScenarioName
from appliance.demo.replay import Replay, first_detection, replay
from appliance.demo.scenarios import BASELINE, SCENARIOS
from appliance.domain.change_kinds import ChangeKind
from appliance.domain.taxonomy import FailureType
from appliance.rca.evidence import Evidence, FactKind, collect
from appliance.rca.rules import diagnose
from appliance.rca.run import rules_rca
from appliance.records import Records
from appliance.settings import DetectConfig, Settings
from appliance.store.spans import SpanStore
from tests.casework import open_records

SECONDS, RATE, ONSET, SEED = 600, 1.5, 420, 11
CFG = DetectConfig()
N = ScenarioName
FAILURES = [n for n in ScenarioName if n != ScenarioName.normal]
# The scenario changes that change inference records from spans (kind, new value).
INFERRED: dict[ScenarioName, tuple[ChangeKind, str]] = {
    N.hallucination: (ChangeKind.model_swap, rag.MODEL.name
                      + SCENARIOS[N.hallucination].change(BASELINE).response_model_suffix),
    N.retrieval_drift: (ChangeKind.index_refresh,
                        SCENARIOS[N.retrieval_drift].change(BASELINE).index_version),
    N.prompt_regression: (ChangeKind.prompt_template,
                          SCENARIOS[N.prompt_regression].change(BASELINE).template_version),
}
# What no span shows: the retrieval setting the context_overflow scenario turns up, as
# the person who changed it would record it.
TOP_K = (f"top_k={BASELINE.top_k}",
         f"top_k={SCENARIOS[N.context_overflow].change(BASELINE).top_k}")
# Who is to blame when the scenario has no change event.
ENTITY: dict[ScenarioName, tuple[str, str]] = {
    N.agent_loop: ("tool", "web_search"),
    N.provider_error: ("provider", catalog.OPENAI),
    N.coherence_degradation: ("agent", chat.SERVICE),
    N.latency_cost_regression: ("agent", chat.SERVICE),
}


@dataclass
class Incident:
    records: Records
    run: Replay
    case: Case
    at: datetime  # when the detector first fired
    change: str | None  # the scenario's own change event
    confounder: str  # a harmless deploy of another service just before the onset

    @property
    def onset(self) -> datetime:
        assert self.run.onset is not None
        return self.run.onset


def _record(records: Records, kind: ChangeKind, service: str, at: datetime,
            before: str, after: str) -> str:
    body = {"kind": kind, "service": service, "from": before, "to": after,
            "at": at.isoformat()}
    return str(records.changes.record(ChangeIn.model_validate(body), "tester")["id"])


def _incident(root: Path, name: ScenarioName) -> Incident:
    records = open_records(root)  # change inference watches every insert of the replay
    run = replay(records.store, root, SECONDS, RATE, seed=SEED, scenario=name, at=ONSET)
    assert run.onset is not None
    target = SCENARIOS[name].target(None)
    change = None
    if name in INFERRED:
        kind, value = INFERRED[name]
        (found,) = [c for c in records.changes.list(service=target) if c["kind"] == kind]
        assert found["to"] == value and found["source"] == "inferred"
        change = found["id"]
    if name == N.context_overflow:
        change = _record(records, ChangeKind.config, target, run.onset, *TOP_K)
    other = agents.SERVICE if target != agents.SERVICE else rag.SERVICE
    confounder = _record(records, ChangeKind.deploy, other, run.onset - timedelta(seconds=20),
                         "1.4.2", "1.5.0")
    found_at, finding = first_detection(records.store, CFG, run.onset,
                                        run.start + timedelta(seconds=SECONDS))[0]
    case = records.cases.open(CaseOpen.model_validate(finding.as_case_request()), "detector:t")
    return Incident(records, run, case, found_at, change, confounder)


class Incidents:
    """Each scenario replayed at first use, then shared by every test of the module."""

    def __init__(self, root: Path) -> None:
        self.root, self.built = root, dict[ScenarioName, Incident]()

    def __getitem__(self, name: ScenarioName) -> Incident:
        if name not in self.built:
            self.built[name] = _incident(self.root / str(name), name)
        return self.built[name]


@pytest.fixture(scope="module")
def incidents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incidents]:
    got = Incidents(tmp_path_factory.mktemp("rca"))
    yield got
    for incident in got.built.values():
        incident.records.store.close()


def _top(details: dict[str, Any]) -> tuple[str, str]:
    first = details["hypotheses"][0]
    return first["kind"], first["ref"]


@pytest.mark.parametrize("name", FAILURES)
def test_each_scenario_is_its_type_and_blames_what_changed(incidents: Incidents,
                                                           name: ScenarioName) -> None:
    incident = incidents[name]
    rca = rules_rca(incident.records, incident.case.id, now=incident.at)
    assert rca.failure_type == FailureType(name)
    expected = ("change", incident.change) if incident.change else ENTITY[name]
    assert _top(rca.details) == expected, rca.details["hypotheses"]
    # the evidence is split where the signal shifted, near the scenario's real onset
    # (the detector's onset can be a minute early; an agent loop's run starts earlier)
    if name != N.agent_loop:
        onset = datetime.fromisoformat(rca.details["evidence"]["onset"])
        assert abs(onset - incident.onset) <= timedelta(seconds=30)
    # every hypothesis points at facts that exist; at most four of them
    facts = {f["id"] for f in rca.details["evidence"]["facts"]}
    assert 1 <= len(rca.hypotheses) <= 4
    assert all(set(h.evidence_ids) <= facts and h.evidence_ids for h in rca.hypotheses)
    if expected[0] != "agent":  # a narrower entity than the service itself: determined
        assert rca.confidence >= 0.5 and rca.root_cause != UNDETERMINED
        assert expected[1] in (rca.root_cause or "")
        # ... and shown by example traces in the store
        by_id = {f["id"]: f for f in rca.details["evidence"]["facts"]}
        traces = {t for i in rca.details["hypotheses"][0]["evidence_ids"]
                  for t in by_id[i]["trace_ids"]}
        assert traces and all(len(t) == 32 for t in traces)
        assert {r["trace_id"] for r in incident.records.store.read(
            "SELECT DISTINCT trace_id FROM spans WHERE list_contains(?, trace_id)",
            [sorted(traces)])} == traces
    case = incident.records.cases.set_rca(incident.case.id, rca, "rca:rules")
    assert case.rca is not None and case.rca.failure_type == FailureType(name)
    assert case.confidence == rca.confidence


@pytest.mark.parametrize("name", [N.hallucination, N.latency_cost_regression])
def test_a_deploy_of_another_service_at_the_same_time_is_not_blamed(
        incidents: Incidents, name: ScenarioName) -> None:
    """latency_cost_regression has no change of its own: the other service's deploy is
    the only change event there is, 20 s before the onset, and still not the answer."""
    incident = incidents[name]
    d = diagnose(collect(incident.records.store, incident.records.changes, incident.case, CFG,
                         now=incident.at))
    assert (d.hypotheses[0].kind, d.hypotheses[0].ref) != ("change", incident.confounder)
    scores = {h.ref: h.score for h in d.hypotheses}
    assert scores.get(incident.confounder, 0.0) < 0.2


def test_without_its_change_event_the_data_names_the_model_over_another_service_change(
        tmp_path: Path) -> None:
    """No change inference while the traffic arrives (a store filled before the appliance
    watched it): the only change event is a model swap in another service at the onset,
    a change that fits hallucination well. The response-model cohort names the culprit;
    then a swap to that very model, recorded against the gateway, takes the blame."""
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        run = replay(store, tmp_path, SECONDS, RATE, seed=SEED, scenario=N.hallucination,
                     at=ONSET)
        assert run.onset is not None
        records = Records.open(store, Settings(data_dir=tmp_path))
        assert records.changes.list() == []  # the seeded baseline is not a change
        other = _record(records, ChangeKind.model_swap, chat.SERVICE, run.onset,
                        "gpt-4o-2024-08-06", "gpt-4o-2024-11-20")
        at, finding = first_detection(store, CFG, run.onset,
                                      run.start + timedelta(seconds=SECONDS))[0]
        case = records.cases.open(CaseOpen.model_validate(finding.as_case_request()), "d:t")
        rca = rules_rca(records, case.id, now=at)
        assert rca.failure_type == FailureType.hallucination
        model = INFERRED[N.hallucination][1]
        assert _top(rca.details) == ("model", model)
        assert "temperature=" in rca.details["hypotheses"][0]["summary"]  # same rollout
        assert [h["ref"] for h in rca.details["hypotheses"]].index(other) > 0
        # Scope is also the value: the swap recorded against the model gateway, another
        # service, whose new model is the one rag-api's calls answer with, is to blame.
        gateway = _record(records, ChangeKind.model_swap, "model-gateway",
                          run.onset - timedelta(seconds=30),
                          rag.MODEL.name + rag.MODEL.response_suffix, model)
        rca = rules_rca(records, case.id, now=at)
        assert _top(rca.details) == ("change", gateway), rca.details["hypotheses"]
        assert rca.confidence >= 0.5
    finally:
        store.close()


def test_a_hallucination_case_whose_retrieval_fell_too_is_retrieval_drift(
        incidents: Incidents) -> None:
    """The detected type is a prior, not the answer: a person files the retrieval
    incident as hallucination (groundedness fell too), the rules say retrieval drift."""
    incident = incidents[N.retrieval_drift]
    filed = incident.records.cases.open(CaseOpen(
        service=incident.case.service, failure_type=FailureType.hallucination,
        onset_at=incident.case.onset_at), "alice")
    rca = rules_rca(incident.records, filed.id, now=incident.at)
    assert rca.failure_type == FailureType.retrieval_drift
    assert _top(rca.details) == ("change", incident.change)
    scores = rca.details["type_scores"]
    assert scores[FailureType.hallucination] < 0.5 <= scores[FailureType.retrieval_drift]


def test_too_little_telemetry_is_unable_to_determine(tmp_path: Path) -> None:
    """A quiet service (a trace every few seconds for two minutes) and a case filed by
    hand: no signal has enough samples, so the answer is undetermined and whatever is
    listed is unconfirmed."""
    records = open_records(tmp_path)
    run = replay(records.store, tmp_path, 120, 0.2, seed=5, scenario=N.hallucination, at=80)
    assert run.onset is not None
    case = records.cases.open(CaseOpen(service=rag.SERVICE,
                                       failure_type=FailureType.hallucination,
                                       onset_at=run.onset.isoformat()), "alice")
    rca = rules_rca(records, case.id, now=run.start + timedelta(seconds=120))
    assert rca.details["determined"] is False and rca.confidence < 0.5
    assert rca.root_cause == UNDETERMINED
    assert all(h.cause.startswith("unconfirmed: ") for h in rca.hypotheses)
    stored = records.cases.set_rca(case.id, rca, "rca:rules")
    assert stored.root_cause == UNDETERMINED
    records.store.close()


def test_fact_ids_are_stable_and_agreement_moves_confidence(incidents: Incidents) -> None:
    incident = incidents[N.prompt_regression]
    r = incident.records

    def evidence() -> list[tuple[str, str, str]]:
        ev = collect(r.store, r.changes, incident.case, CFG, now=incident.at)
        return [(f.id, str(f.kind), f.about) for f in ev.facts]

    first = evidence()
    assert first == evidence()
    assert [i for i, _, _ in first] == [f"f{n}" for n in range(1, len(first) + 1)]
    ev = collect(r.store, r.changes, incident.case, CFG, now=incident.at)
    alone = diagnose(ev).confidence
    assert diagnose(ev, kb_agreement=1.0).confidence > alone
    assert diagnose(ev, model_agreement=0.0).confidence < alone
    assert diagnose(ev, kb_agreement=None, model_agreement=None).confidence == alone


def _synthetic() -> Evidence:
    """Facts as ``collect`` writes them, for a hallucination in rag-api: groundedness
    fell, retrieval held; a new response model carries the drop, a new template version
    does not."""
    onset = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ev = Evidence("case_x", rag.SERVICE, FailureType.hallucination, None, onset,
                  onset - timedelta(seconds=CFG.baseline_window_s), onset + timedelta(minutes=2),
                  onset)
    ev.add(FactKind.telemetry, rag.SERVICE, {
        "traces": 300, "model_calls_recent": 60, "model_calls_baseline": 240, "evaluated": 300,
        "retrievals": 300, "templated": 300, "with_tokens": 300, "with_model": 300,
        "min_recent": CFG.min_recent, "min_baseline": CFG.min_baseline})
    for name, recent, baseline, z in (("groundedness", 0.5, 0.89, -12.0),
                                      ("retrieval_score", 0.83, 0.84, -0.2)):
        ev.add(FactKind.signal, name, {
            "recent": recent, "baseline": baseline, "n_recent": 60, "n_baseline": 240,
            "robust_z": z, "worse": -1, "threshold": CFG.score_drop, "measure": "difference",
            "enough": True})
    first = (onset - timedelta(seconds=30)).isoformat()
    for column, value, entity, recent, others, at in (
            ("prompt_template_version", "v8", "template", 0.5, 0.5, first),
            ("response_model", "m-q4", "model", 0.45, 0.88, first),
            ("response_model", "m", "model", 0.88, 0.45, "2026-05-01T11:00:00+00:00")):
        ev.add(FactKind.cohort, f"{column}={value}", {
            "column": column, "value": value, "entity": entity, "signal": "groundedness",
            "worse": -1, "threshold": CFG.score_drop, "measure": "difference",
            "recent": recent, "n_recent": 30, "baseline": None, "n_baseline": 0,
            "others_recent": others, "others_baseline": 0.89, "new": at == first,
            "recent_share": 0.5, "first_seen": at})
    template, model = ev.facts[3], ev.facts[4]
    for change_id, kind, before, after, lag, cohort in (
            ("chg_template", ChangeKind.prompt_template, "v7", "v8", 30.0, template.id),
            ("chg_late", ChangeKind.model_swap, "m", "m-q5", -600.0, None)):
        ev.add(FactKind.change, change_id, {
            "change_kind": kind, "service": rag.SERVICE, "from": before, "to": after,
            "at": None, "source": "manual", "lag_s": lag, "same_service": True,
            "scope": "service", "cohort": cohort, "canary_share": 0.5})
    assert model.about == "response_model=m-q4"
    return ev


def test_a_change_whose_new_value_is_healthy_is_cleared_and_a_later_one_cannot_cause() -> None:
    """Rules alone, on facts: the template change lands in the same service 30 s before
    the onset, but the traffic on its new version is no worse than the rest; a model swap
    ten minutes after the onset comes too late. The new model's cohort is the answer."""
    d = diagnose(_synthetic())
    assert d.failure_type == FailureType.hallucination and d.determined
    ranked = [(h.kind, h.ref) for h in d.hypotheses]
    assert ranked[0] == ("model", "m-q4")
    scores = {h.ref: h.score for h in d.hypotheses}
    assert scores.get("chg_template", 0.0) < 0.5 * scores["m-q4"]
    assert scores.get("chg_late", 0.0) < 0.2
    cleared = next(h for h in d.hypotheses if h.ref == "chg_template")
    assert "healthy" in cleared.summary
