"""The case page's diagnosis, on a real incident: demo traffic with the retrieval_drift
scenario replayed into a real DuckDB store, the detector's case opened, the rules-only
RCA stored on it (and, for the pipeline's additions, the same answer with a status,
similar cases, fixes and a model's explanation).

The tables (app/diagnosis.py) are checked on their own; the page runs in Streamlit's
AppTest against the real daemon app (a thread on a real port): the verdict, the evidence
with trace links, hypotheses, similar cases and fixes show, the model's words are marked
as such and stay literal text, a degraded run says so, and "Resolve with this fix"
resolves the case through the API with that fix and the diagnosis as root cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from appliance.cases.model import UNDETERMINED, Case, CaseOpen, Rca, SuggestedFix
from appliance.console import diagnosis
from appliance.console.safe_text import md
from appliance.demo.names import ScenarioName
from appliance.demo.replay import first_detection, replay
from appliance.rca.embed import Embedder
from appliance.rca.kb import KnowledgeBase
from appliance.rca.pipeline import Unavailable, diagnose_case
from appliance.rca.run import rules_rca
from appliance.records import Records
from appliance.settings import DetectConfig
from appliance.store.spans import SpanStore
from tests.casework import records_of
from tests.unit.test_casework_pages import USER, daemon_url, page  # noqa: F401 (fixture)
from tests.unit.test_console_pages import Daemon, texts

FIX_TEXT = ("Re-embed the index with the embedding model the queries use. Or roll the "
            "index back to idx-2024.06.1.")
VERIFY = "retrieval_score back above 0.7 and embedding_mismatch_share at 0"
# as appliance/rca/fixes.py's Fix.as_suggested_fix writes it
FIX = SuggestedFix(title="Re-embed the index with the embedding model the queries use.",
                   detail=f"{FIX_TEXT}\nHow to verify: {VERIFY}\n"
                          "Confidence 0.71 (distance 0.120).",
                   source="playbook:retrieval_drift/embedding-mismatch, case:case_old2")
INJECTED = "See ![pixel](http://elsewhere.example/p.png) and **trust me**"


@dataclass
class Incident:
    store: SpanStore
    records: Records
    finding: dict[str, Any]
    rules: Rca
    at: Any


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    root = tmp_path_factory.mktemp("dx")
    store = SpanStore(root / "spans.duckdb")
    records = records_of(store)
    run = replay(store, root, 600, 1.5, seed=11, scenario=ScenarioName.retrieval_drift,
                 at=420)
    assert run.onset is not None
    at, finding = first_detection(store, DetectConfig(), run.onset,
                                  run.start + timedelta(seconds=600))[0]
    body = finding.as_case_request()
    case = records.cases.open(CaseOpen.model_validate(body), "detector:retrieval_drift")
    rules = rules_rca(records, case.id, now=at)
    records.cases.set_rca(case.id, rules, "rca:rules")
    yield Incident(store, records, body, rules, at)
    store.close()


def _case(incident: Incident, name: str, rca: Rca | None) -> Case:
    """Another case of the same finding (its own signature), with ``rca`` stored."""
    body = CaseOpen.model_validate({**incident.finding, "signature": f"dx-test:{name}"})
    case = incident.records.cases.open(body, "detector:retrieval_drift")
    if rca is not None:
        case = incident.records.cases.set_rca(case.id, rca, "rca:worker")
    return incident.records.cases.get(case.id)


def _pipeline(rules: Rca, **details: Any) -> Rca:
    """The rules' answer with what the pipeline adds (appliance/rca/pipeline.py's
    ``_combine``: statuses, the model, its explanation, similar cases, fixes)."""
    extra = {"engine": "rules+kb+model", "status": "ok", "statuses": ["ok"],
             "model_name": "smollm2-135m-instruct", "model_sha256": "ab12" * 16,
             "explanation": {"by": "model", "model": "smollm2-135m-instruct",
                             "text": "Retrieval scores fell right after the index refresh "
                                     "(f15, f23).\n" + INJECTED},
             "similar": [{"id": "case_old2", "source": "case", "failure_type": "retrieval_drift",
                          "root_cause": "index rebuilt with another embedding model",
                          "fix": "re-embedded", "verify": VERIFY, "distance": 0.31,
                          "verified": False},
                         {"id": "retrieval_drift/embedding-mismatch", "source": "playbook",
                          "failure_type": "retrieval_drift", "root_cause": "embedding mismatch",
                          "fix": FIX_TEXT, "verify": VERIFY, "distance": 0.12,
                          "verified": True}],
             "suggested_fixes": [{"title": FIX.title, "detail": FIX_TEXT, "verify": VERIFY,
                                  "source": "playbook:retrieval_drift/embedding-mismatch",
                                  "confidence": 0.71, "distance": 0.12, "verified": False,
                                  "sources": ["playbook:retrieval_drift/embedding-mismatch",
                                              "case:case_old2"]}]}
    return rules.model_copy(update={"details": {**rules.details, **extra, **details},
                                    "suggested_fixes": [FIX], "model": "smollm2-135m-instruct"})


# ---------------------------------------------------------------- the tables

def test_rules_answer_reads_as_tables(incident: Incident) -> None:
    case = incident.records.cases.get(incident.records.cases.list()[-1].id)
    v = diagnosis.verdict(case)
    assert v.failure_type == "retrieval_drift" and v.determined and v.engine == "rules"
    assert v.root_cause == incident.rules.root_cause and "idx-2024.07.0" in v.root_cause
    assert v.notes == [] and v.ran.startswith("run 1 · ")
    rows = diagnosis.evidence_rows(case)
    facts = {f["id"] for f in incident.rules.details["evidence"]["facts"]}
    assert {r["id"] for r in rows} == facts
    cited = {i for h in incident.rules.hypotheses for i in h.evidence_ids}
    assert {r["id"] for r in rows if r["cited"]} == cited
    assert [r["cited"] for r in rows] == sorted((r["cited"] for r in rows), reverse=True)
    score = next(r for r in rows if r["what"] == "retrieval_score")
    assert float(score["value"]) < float(score["baseline"])  # value vs baseline
    assert "robust_z=" in score["more"]
    change = next(r for r in rows if r["kind"] == "change")
    assert (change["value"], change["baseline"]) == ("idx-2024.07.0", "idx-2024.06.1")
    hyps = diagnosis.hypotheses(case)
    assert hyps[0]["blames"].startswith("change: chg_") and hyps[0]["rank"] == "1"
    links = diagnosis.trace_links(case)
    assert links and all(len(t) == 32 for t, _ in links)
    assert len({t for t, _ in links}) == len(links)
    assert diagnosis.similar(case) == [] and diagnosis.explanation(case) is None


def test_pipeline_additions_and_degraded_status(incident: Incident) -> None:
    case = _case(incident, "tables", _pipeline(incident.rules))
    similar = diagnosis.similar(case)
    assert [s["distance"] for s in similar] == ["0.12", "0.31"]  # nearest first
    assert similar[0]["verified"] == "" and similar[1]["verified"] == "no"  # playbook, case
    ex = diagnosis.explanation(case)
    assert ex is not None and ex.by == "model" and ex.model == "smollm2-135m-instruct"
    assert ex.sha256 == "ab12" * 16
    (fix,) = diagnosis.fixes(case)
    assert (fix.verify, fix.confidence, fix.detail) == (VERIFY, 0.71, FIX_TEXT)
    assert diagnosis.fix_text(fix) == FIX_TEXT  # the fix itself, no "How to verify" line
    # without the run's structured fixes, the case's own SuggestedFix is read
    bare = case.model_copy(update={"rca": case.rca.model_copy(update={"details": {}})})
    (fix,) = diagnosis.fixes(bare)
    assert (fix.verify, fix.detail, fix.confidence) == (VERIFY, FIX_TEXT, None)
    assert "retrieval_drift detector" in diagnosis.verify_hint(case)
    assert diagnosis.resolution_root_cause(case) == incident.rules.root_cause
    assert diagnosis.status_notes("model_unavailable: no GGUF at models/x.gguf; kb_empty") == [
        "model unavailable, rules-only answer (no GGUF at models/x.gguf)",
        "the knowledge base is empty, no similar cases retrieved"]
    assert diagnosis.status_notes(["model_timeout: 20 s", "no_traces"])[0] == (
        "the model timed out, rules-only answer (20 s)")
    templated = _case(incident, "templated", _pipeline(
        incident.rules, explanation={"by": "rules", "text": "Most likely: retrieval drift."}))
    ex = diagnosis.explanation(templated)
    assert ex is not None and ex.by == "rules" and ex.model == ""
    assert diagnosis.status_notes("ok") == [] and diagnosis.status_notes(None) == []
    assert diagnosis.status_notes("something_new") == ["something new"]


def test_an_undetermined_or_bare_answer_is_read_without_error(incident: Incident) -> None:
    low = incident.rules.model_copy(update={
        "confidence": 0.31, "root_cause": UNDETERMINED,
        "details": {**incident.rules.details, "determined": False}})
    case = _case(incident, "low", low)
    v = diagnosis.verdict(case)
    assert not v.determined and v.root_cause == UNDETERMINED
    assert diagnosis.resolution_root_cause(case) == incident.rules.hypotheses[0].cause
    bare = _case(incident, "bare", Rca(confidence=0.7, root_cause="a person said so"))
    assert diagnosis.verdict(bare).determined and diagnosis.evidence_rows(bare) == []
    assert diagnosis.hypotheses(bare) == [] and diagnosis.trace_links(bare) == []
    odd = Rca(confidence=0.6, root_cause="x", details={"evidence": {"facts": "x"},
                                                          "similar": [1, None],
                                       "hypotheses": "?", "explanation": 3, "model": 7})
    case = _case(incident, "odd", odd)
    assert diagnosis.evidence_rows(case) == [] and diagnosis.similar(case) == []
    assert diagnosis.explanation(case) is None
    assert not diagnosis.has_diagnosis(_case(incident, "none", None))


def test_the_real_pipeline_output_reads_as_tables(incident: Incident,
                                                 tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    """What appliance/rca/pipeline.py really stores: the real knowledge base (seeded
    playbooks, the real embedder), the model missing (its status and the rules' answer)."""
    case = _case(incident, "real", None)
    path = tmp_path_factory.mktemp("dx-kb") / "kb"
    with KnowledgeBase.open(path, Embedder()) as kb:
        rca = diagnose_case(incident.records, case.id, kb,
                            Unavailable("model_unavailable: no GGUF at models/missing.gguf"),
                            now=incident.at)
    case = incident.records.cases.set_rca(case.id, rca, "rca:worker")
    v = diagnosis.verdict(case)
    assert v.failure_type == "retrieval_drift" and v.engine == "rules+kb"
    assert v.notes == ["model unavailable, rules-only answer (no GGUF at models/missing.gguf)"]
    similar = diagnosis.similar(case)
    assert similar and [float(s["distance"]) for s in similar] == sorted(
        float(s["distance"]) for s in similar)
    assert all(s["source"] == "playbook" and s["verified"] == "" for s in similar)
    fixes = diagnosis.fixes(case)
    assert fixes and all(f.verify and f.confidence is not None for f in fixes)
    assert [f.confidence for f in fixes] == sorted((f.confidence or 0 for f in fixes),
                                                   reverse=True)
    assert all("How to verify" not in diagnosis.fix_text(f) for f in fixes)
    ex = diagnosis.explanation(case)
    assert ex is not None and ex.by == "rules" and "retrieval drift" in ex.text
    assert diagnosis.evidence_rows(case) and diagnosis.hypotheses(case)[0]["blames"]


# ---------------------------------------------------------------- the page

def _page(cid: str) -> AppTest:
    at = page("cases")
    at.query_params["case"] = cid
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _markdown(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_page_shows_the_diagnosis_and_resolves_with_a_fix(
        incident: Incident, daemon_url: str) -> None:  # noqa: F811
    case = _case(incident, "page", _pipeline(incident.rules))
    with Daemon(incident.store, int(daemon_url.rsplit(":", 1)[1])):
        at = _page(case.id)
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Failure type"] == "retrieval drift"
        assert metrics["Determined"] == "yes" and metrics["Confidence"].endswith("%")
        assert any("Root cause" in s and "idx" in s for s in texts(at, "success"))
        frames = [d.value for d in at.dataframe]
        facts = next(f for f in frames if "cited" in f)
        assert set(facts["id"]) == {f["id"] for f in incident.rules.details["evidence"]["facts"]}
        assert any("blames" in f and f["blames"][0].startswith("change: chg_") for f in frames)
        similar = next(f for f in frames if "distance" in f)
        assert list(similar["distance"]) == ["0.12", "0.31"]
        shown = _markdown(at)
        # the model's words: marked as such, and literal (no image, no bold of its own)
        assert "Written by the local model smollm2\\-135m\\-instruct**" in shown
        assert md(INJECTED) in shown
        assert "](http://" not in shown and "**trust me**" not in shown
        assert "**How to verify**: retrieval\\_score back above 0\\.7" in shown
        assert "confidence 0.71" in shown
        trace_links = [p.label for p in at.get("page_link") if "(f" in p.label]
        assert trace_links and all(lbl.startswith("Trace ") for lbl in trace_links)

        button = next(b for b in at.button if b.label == "Resolve with this fix")
        button.click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Resolved with this fix" in s for s in texts(at, "success")), \
            texts(at, "success")
        assert next(b for b in at.button if b.label == "Resolve with this fix").disabled
        assert "The fix applied when this case was resolved." in texts(at, "success")
    after = incident.records.cases.get(case.id)
    assert after.status == "resolved"
    assert after.resolution.fix_applied == diagnosis.fix_text(diagnosis.fixes(case)[0])
    assert after.resolution.root_cause == incident.rules.root_cause
    assert after.resolution.resolved_by == USER


def test_page_says_when_the_answer_is_degraded_or_undetermined(
        incident: Incident, daemon_url: str) -> None:  # noqa: F811
    degraded = _pipeline(incident.rules, status="model_unavailable: no GGUF at models/x.gguf",
                         statuses=["model_unavailable: no GGUF at models/x.gguf"],
                         explanation={"by": "rules", "text": "Unconfirmed: retrieval drift."},
                         model_name=None, model_sha256=None, similar=[])
    low = degraded.model_copy(update={"confidence": 0.3, "root_cause": UNDETERMINED,
                                      "details": {**degraded.details, "determined": False}})
    case = _case(incident, "degraded", low)
    with Daemon(incident.store, int(daemon_url.rsplit(":", 1)[1])):
        at = _page(case.id)
    warnings = " ".join(texts(at, "warning"))
    assert "model unavailable, rules\\-only answer" in warnings, warnings
    assert "unable to determine root cause" in warnings and "unconfirmed" in warnings
    assert "Written by the local model" not in _markdown(at)
    assert "Explanation templated by the rules" in _markdown(at)
    assert "None retrieved for this run." in _markdown(at)


def test_a_case_without_a_diagnosis_offers_a_run(incident: Incident,
                                                 daemon_url: str) -> None:  # noqa: F811
    case = _case(incident, "fresh", None)
    with Daemon(incident.store, int(daemon_url.rsplit(":", 1)[1])):
        at = _page(case.id)
        assert any("No root-cause analysis has run" in i for i in texts(at, "info"))
        assert any("An RCA run is queued or running" in c.value for c in at.caption)
        next(b for b in at.button if b.label == "Run now").click().run()
        assert not at.exception, [e.value for e in at.exception]
        outcome = texts(at, "success") + texts(at, "error")
        assert any("Queued" in s for s in outcome), outcome
        # the run lands (stored as the worker would): the page stops waiting and says so
        incident.records.cases.set_rca(case.id, incident.rules, "rca:worker")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Run 1 has finished" in s for s in texts(at, "success")), texts(at, "success")
        assert not any("An RCA run is queued" in c.value for c in at.caption)
        assert any(b.label == "Run again" for b in at.button)
