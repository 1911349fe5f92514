"""The text a case is embedded as (appliance/rca/case_text.py) and the suggested fixes
with their confidence (appliance/rca/fixes.py), on facts alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.cases.model import Case, CaseContext, ChangeRef, RcaRun, Resolution, Signal
from appliance.rca.case_text import case_text, compose, direction
from appliance.rca.fixes import OTHER_TYPE, confidence, suggest, title_of
from appliance.rca.kb import Match

NOW = "2026-11-28T10:00:00Z"


def _case(service: str, **extra: object) -> Case:
    return Case(id=f"case_{service}", title="t", service=service,
                failure_type="retrieval_drift", signature=f"{service}|retrieval_drift|x",
                opened_at=NOW, onset_at=NOW, updated_at=NOW,
                signals=[Signal(name="retrieval_score", value=0.4, baseline=0.8),
                         Signal(name="new_index_version", value=f"{service}-v9"),
                         Signal(name="input_tokens_median", value=900, baseline=900)],
                context=CaseContext(changes=[ChangeRef(id="chg_1", kind="documents",
                                                       service=service, source="api")]),
                **extra)  # type: ignore[arg-type]


def test_case_text_keeps_the_shape_and_drops_the_service() -> None:
    text = case_text(_case("billing-bot"), blamed="index")
    assert text == ("retrieval drift. signals: input tokens; new index version; "
                    "retrieval score down. blamed: index. changes: documents.")
    assert case_text(_case("support-rag"), blamed="index") == text


def test_a_resolved_case_reads_the_same_text_from_its_stored_rca() -> None:
    rca = RcaRun(ran_at=NOW, ran_by="rca:worker", runs=1, failure_type="retrieval_drift",
                 details={"hypotheses": [{"kind": "index", "ref": "v9", "score": 0.8}]})
    resolved = _case("billing-bot", status="resolved", rca=rca,
                     resolution=Resolution(root_cause="stale", fix_applied="re-index"))
    assert case_text(resolved) == case_text(_case("billing-bot"), "retrieval_drift", "index")


def test_direction_and_compose_order() -> None:
    assert direction(Signal(name="a", value=2, baseline=1)) == "up"
    assert direction(Signal(name="a", value=1, baseline=2)) == "down"
    assert direction(Signal(name="a", value=3, baseline=None)) == "up"  # against 0
    assert direction(Signal(name="a", value="m2", baseline="m1")) is None
    assert compose("agent_loop", [("b", "up"), ("a", None)]) == compose(
        "agent_loop", [("a", None), ("b", "up")])


def _match(id_: str, source: str, distance: float, verified: bool = False,
           failure_type: str = "retrieval_drift", fix: str = "Re-index the documents. Then "
                                                             "watch it.") -> Match:
    return Match(id=id_, source=source, failure_type=failure_type,  # type: ignore[arg-type]
                 root_cause="r", fix=fix, verify="the detector check", verified=verified,
                 distance=distance, blames="index")


@dataclass
class _H:
    kind: str


@dataclass
class _Diagnosis:
    failure_type: str
    hypotheses: list[_H] = field(default_factory=list)


def test_a_verified_case_ranks_above_a_playbook_at_the_same_distance() -> None:
    book = _match("rd-x", "playbook", 0.2, fix="Roll back the index.")
    case = _match("case_1", "case", 0.2, verified=True)
    unverified = _match("case_2", "case", 0.2, fix="Pin the embedding model.")
    ranked = suggest([book, unverified, case])
    assert [f.source for f in ranked] == ["case:case_1", "case:case_2", "playbook:rd-x"]
    assert ranked[0].verified and ranked[0].confidence > ranked[1].confidence


def test_confidence_falls_with_distance_and_disagreement() -> None:
    near, far = _match("a", "playbook", 0.1), _match("a", "playbook", 0.4)
    assert confidence(near) > confidence(far) > 0
    assert confidence(_match("a", "playbook", 0.9)) == 0  # too far to suggest anything
    agree = _Diagnosis("retrieval_drift", [_H("index")])
    other = _Diagnosis("hallucination", [_H("index")])
    assert confidence(near, other) == round(confidence(near, agree) * OTHER_TYPE, 3)
    assert confidence(near, _Diagnosis("retrieval_drift", [_H("model")])) < confidence(
        near, agree)


def test_one_suggestion_per_fix_with_every_source_and_how_to_verify() -> None:
    ranked = suggest([_match("rd-x", "playbook", 0.25), _match("case_1", "case", 0.1),
                      _match("far", "playbook", 5.0)])
    assert len(ranked) == 1
    fix = ranked[0]
    assert fix.title == "Re-index the documents." == title_of(fix.detail)
    assert fix.sources == ["case:case_1", "playbook:rd-x"]
    model = fix.as_suggested_fix()
    assert "How to verify: the detector check" in model.detail
    assert model.source == "case:case_1, playbook:rd-x"
