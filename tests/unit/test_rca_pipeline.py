"""The combining RCA pipeline over a replayed incident in a real DuckDB store, with the
real knowledge base (Chroma, the local embedder, the shipped playbooks) and the real
local model (llama.cpp, SmolLM2-135M GGUF).

The full run records the model's name and sha256, the evidence ids, the similar cases
with their distances and the suggested fixes. The model picks among the rules'
candidates but never overrides strong rule evidence. Every bad input (a missing or
corrupt GGUF, an answer that is not JSON, a timeout, an empty or corrupt knowledge base,
a case with no traces) gives a clear status and the rules-only answer, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.cases.model import UNDETERMINED, CaseOpen
from appliance.domain.taxonomy import FailureType
from appliance.rca import answer as answers
from appliance.rca.embed import Embedder
from appliance.rca.evidence import collect
from appliance.rca.kb import KnowledgeBase
from appliance.rca.model import LocalModel, known_models
from appliance.rca.pipeline import (
    STRONG_HYPOTHESIS_MARGIN,
    Unavailable,
    _combine,
    diagnose_case,
)
from appliance.rca.prompt import ModelQuestion
from appliance.rca.rules import diagnose
from appliance.rca.run import rules_rca
from appliance.rca.worker import load_model, open_kb
from appliance.records import Records
from appliance.settings import DetectConfig
from tests.casework import open_records
from tests.otlp_payloads import export_request
from tests.unit.test_rca_rules import Incident, _incident
from tests.unit.test_rca_rules import N as Scenario

CFG = DetectConfig()
# The full run waits for the model however busy the machine is: this test is about what
# the run records, the timeout has its own test.
PATIENT_S = 600.0


@dataclass
class Parts:
    incident: Incident
    kb: KnowledgeBase
    model: LocalModel


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    """An agent-loop incident (strong rule evidence: one tool, 50 identical calls), the
    seeded knowledge base and the default GGUF, each built once for the module."""
    incident = _incident(tmp_path_factory.mktemp("rca-pipeline"), Scenario.agent_loop)
    settings = incident.records.settings
    kb = KnowledgeBase.open(settings.kb_dir, Embedder())
    model = LocalModel.load(settings)
    yield Parts(incident, kb, model)
    kb.close()
    incident.records.store.close()


def _rca(p: Parts, kb: Any = None, model: Any = None, timeout_s: float | None = None) -> Any:
    i = p.incident
    return diagnose_case(i.records, i.case.id, kb, model, now=i.at, timeout_s=timeout_s)


def _same_answer_as_rules(p: Parts, rca: Any) -> None:
    rules = rules_rca(p.incident.records, p.incident.case.id, now=p.incident.at)
    assert rca.failure_type == rules.failure_type
    assert rca.root_cause == rules.root_cause
    assert [h.cause for h in rca.hypotheses] == [h.cause for h in rules.hypotheses]


def test_rules_only_is_the_rules_answer(parts: Parts) -> None:
    rca = _rca(parts)
    _same_answer_as_rules(parts, rca)
    assert rca.confidence == rules_rca(parts.incident.records, parts.incident.case.id,
                                       now=parts.incident.at).confidence
    assert rca.details["engine"] == "rules" and rca.details["status"] == "ok"
    assert rca.model is None and rca.details["similar"] is None
    assert rca.details["explanation"]["by"] == "rules"


def test_the_full_run_records_model_evidence_similar_cases_and_fixes(parts: Parts) -> None:
    rca = _rca(parts, parts.kb, parts.model, timeout_s=PATIENT_S)
    d = rca.details
    assert d["engine"] == "rules+kb+model", d["status"]
    assert d["status"] == "ok"
    # the rules' strong evidence stands whatever the model chose
    assert rca.failure_type == FailureType.agent_loop
    assert (d["hypotheses"][0]["kind"], d["hypotheses"][0]["ref"]) == ("tool", "web_search")
    assert rca.confidence >= 0.5 and "web_search" in (rca.root_cause or "")
    # which model answered, by name and sha256 (the manifest's)
    known = known_models()["smollm2-135m-instruct"]
    assert rca.model == "smollm2-135m-instruct" and d["model_name"] == rca.model
    assert d["model_sha256"] == known.sha256
    got = d["model_answer"]
    assert got["failure_type"] in FailureType.__members__ and got["seconds"] > 0
    assert got["agreement"] == d["confidence_parts"]["model_agreement"]
    facts = {f["id"] for f in d["evidence"]["facts"]}
    assert set(got["evidence_ids"]) <= facts
    assert d["evidence_ids"] and set(d["evidence_ids"]) <= facts
    # the explanation says whose it is
    explanation = d["explanation"]
    assert explanation["by"] in ("model", "rules") and explanation["text"]
    if explanation["by"] == "model":
        assert explanation["model"] == rca.model and explanation["text"] == got["explanation"]
    # similar past cases and playbooks with their distances, agent-loop ones first
    similar = d["similar"]
    assert similar and all(0 <= s["distance"] <= 2 for s in similar)
    assert [s["distance"] for s in similar] == sorted(s["distance"] for s in similar)
    assert similar[0]["failure_type"] == "agent_loop"
    assert d["confidence_parts"]["kb_agreement"] > 0.5
    # suggested fixes, each with how to verify it and where it comes from
    assert rca.suggested_fixes and len(rca.suggested_fixes) == len(d["suggested_fixes"])
    assert all("How to verify:" in f.detail and f.source for f in rca.suggested_fixes)
    assert all(0 < f["confidence"] <= 1 for f in d["suggested_fixes"])
    stored = parts.incident.records.cases.set_rca(parts.incident.case.id, rca, "rca:test")
    assert stored.rca is not None and stored.rca.model == rca.model


class Says:
    """A stand-in for the model that answers what a test tells it to (the combining rule
    is the subject here, not the model's judgement), through the real answer checker."""

    def __init__(self, model: LocalModel, failure_type: str, hypothesis_id: str | None,
                 raw: str | None = None) -> None:
        self.info = model.info
        self.failure_type, self.hypothesis_id, self.raw = failure_type, hypothesis_id, raw
        self.asked: list[ModelQuestion] = []

    def answer(self, question: ModelQuestion,
               timeout_s: float | None = None) -> answers.ModelAnswer:
        self.asked.append(question)
        ids = question.fact_ids[:1]
        raw = self.raw or json.dumps({
            "failure_type": self.failure_type, "hypothesis_id": self.hypothesis_id,
            "evidence_ids": ids, "explanation": f"Fact {ids[0]} supports it."})
        return answers.parse(raw, question, seconds=0.1, tokens=30)


def test_the_model_never_overrides_strong_rule_evidence(parts: Parts) -> None:
    d = diagnose(collect(parts.incident.records.store, parts.incident.records.changes,
                         parts.incident.case, CFG, now=parts.incident.at))
    assert d.margins["hypothesis"] >= STRONG_HYPOTHESIS_MARGIN  # strong: one tool loops
    alone = _rca(parts).confidence
    for says in (Says(parts.model, "provider_error", "H1"),
                 Says(parts.model, "agent_loop", "H2"), Says(parts.model, "agent_loop", None)):
        rca = _rca(parts, model=says)
        assert says.asked, "the model was asked"
        _same_answer_as_rules(parts, rca)
        got = rca.details["model_answer"]
        assert got["overruled"] and not got["adopted"]
        assert rca.details["explanation"]["by"] == "rules"  # it argued for something else
        # another type or no cause at all lowers the confidence; another cause of the same
        # type is no vote
        if says.hypothesis_id == "H2":
            assert rca.confidence == alone
        else:
            assert rca.confidence < alone
    agreeing = _rca(parts, model=Says(parts.model, "agent_loop", "H1"))
    assert agreeing.confidence > alone
    explanation = agreeing.details["explanation"]
    assert explanation["by"] == "model" and explanation["model"] == parts.model.info.name
    assert explanation["text"].startswith("Fact f") and "local model" in explanation["note"]


def test_on_close_candidates_the_model_picks(parts: Parts) -> None:
    """Where the rules' top two hypotheses are within the strong margin, the model's
    pick of the second one is taken (and its explanation shown as the model's)."""
    i = parts.incident
    ev = collect(i.records.store, i.records.changes, i.case, CFG, now=i.at)
    d = diagnose(ev)
    assert len(d.hypotheses) >= 2
    close = dataclasses.replace(d, margins={**d.margins, "hypothesis": 0.02})
    says = Says(parts.model, str(d.failure_type), "H2")
    from appliance.rca.prompt import question_of

    got = says.answer(question_of(ev, close, []))
    rca = _combine(ev, close, None, got, parts.model.info, [])
    assert rca.details["model_answer"]["adopted"] is True
    assert rca.details["hypotheses"][0]["ref"] == d.hypotheses[1].ref
    assert rca.details["rules_top"]["ref"] == d.hypotheses[0].ref
    assert rca.details["explanation"]["by"] == "model"


def test_an_answer_that_is_not_json_leaves_the_rules_answer(parts: Parts) -> None:
    rca = _rca(parts, model=Says(parts.model, "agent_loop", "H1", raw='{"failure_type": '))
    _same_answer_as_rules(parts, rca)
    assert rca.details["status"].startswith("model_invalid_json: the model's answer is not "
                                            "valid JSON")
    assert rca.details["engine"] == "rules" and rca.model is None
    assert rca.details["model_name"] == parts.model.info.name  # who failed is recorded


def test_a_model_timeout_leaves_the_rules_answer(parts: Parts) -> None:
    rca = _rca(parts, parts.kb, parts.model, timeout_s=0.001)
    _same_answer_as_rules(parts, rca)
    assert rca.details["status"].startswith("model_timeout: smollm2-135m-instruct did not "
                                            "answer within 0.001 s")
    assert rca.details["engine"] == "rules+kb"


def test_a_missing_or_corrupt_gguf_leaves_the_rules_answer(parts: Parts, tmp_path: Path) -> None:
    settings = parts.incident.records.settings
    missing = load_model(settings.model_copy(
        update={"rca_model_name": str(tmp_path / "nowhere.gguf")}))
    assert isinstance(missing, Unavailable)
    assert missing.status.startswith("model_unavailable: ") and "nowhere.gguf" in missing.status
    broken = tmp_path / "broken.gguf"
    with parts.model.info.path.open("rb") as src, broken.open("wb") as dst:
        dst.write(src.read(4096))  # a truncated copy
    corrupt = load_model(settings.model_copy(update={"rca_model_name": str(broken)}))
    assert isinstance(corrupt, Unavailable) and corrupt.status.startswith("model_unavailable")
    for part in (missing, corrupt):
        rca = _rca(parts, parts.kb, part)
        _same_answer_as_rules(parts, rca)
        assert rca.details["status"] == part.status and rca.details["engine"] == "rules+kb"


def test_an_empty_knowledge_base_says_so(parts: Parts, tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", Embedder(), seed=False) as empty:
        rca = _rca(parts, empty)
    _same_answer_as_rules(parts, rca)
    assert rca.details["status"] == "kb_empty" and rca.details["similar"] == []
    assert rca.suggested_fixes == []


def test_a_corrupt_chroma_folder_leaves_the_rules_answer_and_ingest_goes_on(
        parts: Parts, tmp_path: Path) -> None:
    records = open_records(tmp_path)
    try:
        shutil.copytree(parts.kb.path, records.settings.kb_dir)
        sqlite = records.settings.kb_dir / "chroma.sqlite3"
        sqlite.write_bytes(b"not a database at all" * 100)
        kb = open_kb(records.settings)
        assert isinstance(kb, Unavailable) and kb.status.startswith("kb_unavailable: ")
        assert str(records.settings.kb_dir) in kb.status
        rca = _rca(parts, kb)
        _same_answer_as_rules(parts, rca)
        assert rca.details["status"] == kb.status
        # the store takes spans as before
        _ingest(records)
        assert records.store.count() == 4
    finally:
        records.store.close()


def _ingest(records: Records) -> None:
    from tests.casework import call

    r = call(records.store, "POST", "/v1/traces", headers={
        "Content-Type": "application/x-protobuf"},
        content=export_request("after-kb", 4).SerializeToString())
    assert r.status_code == 200, r.text


def test_a_case_with_no_traces_is_undetermined_and_the_model_is_not_asked(
        parts: Parts, tmp_path: Path) -> None:
    records = open_records(tmp_path)
    try:
        case = records.cases.open(CaseOpen(service="ghost-svc",
                                           failure_type=FailureType.hallucination), "alice")
        says = Says(parts.model, "hallucination", "H1")
        rca = diagnose_case(records, case.id, parts.kb, says)
        assert says.asked == []
        assert rca.details["statuses"][0] == "no_traces"
        assert rca.root_cause == UNDETERMINED and rca.confidence < 0.5
        assert records.cases.set_rca(case.id, rca, "rca:test").root_cause == UNDETERMINED
    finally:
        records.store.close()
