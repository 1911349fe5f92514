"""The RCA knowledge base (appliance/rca/kb.py) on a real Chroma folder with the real
embedder: seeded from the shipped playbooks, idempotently; a case of one type finds
that type's playbooks first; a resolved case is learned and a new incident of the same
shape finds it and gets its fix with more confidence than before; an empty knowledge
base answers nothing; a corrupt folder is a clear error with a way to rebuild; nothing
phones home."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import resources
from appliance.cases.model import Case, CaseOpen, Check, Resolve, Signal, Verify
from appliance.domain.taxonomy import FAILURE_TYPES
from appliance.errors import KnowledgeBaseUnavailable
from appliance.rca import fixes
from appliance.rca.case_text import case_text, compose
from appliance.rca.embed import Embedder
from appliance.rca.kb import (
    LEARNED_ACTIONS,
    KnowledgeBase,
    learn_quietly,
    learner,
    load_playbooks,
    rebuild,
)
from appliance.records import Records

RETRIEVAL_DRIFT = [Signal(name="retrieval_score", value=0.41, baseline=0.78, window="15m"),
                   Signal(name="new_index_version", value="idx-2026-11-28", window="15m")]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """One seeded folder, copied for each test (seeding embeds every playbook)."""
    path = tmp_path_factory.mktemp("kb-template") / "kb"
    KnowledgeBase.open(path, embedder).close()
    return path


@pytest.fixture
def kb(tmp_path: Path, seeded_template: Path, embedder: Embedder) -> Iterator[KnowledgeBase]:
    shutil.copytree(seeded_template, tmp_path / "kb")
    with KnowledgeBase.open(tmp_path / "kb", embedder) as opened:
        yield opened


def _open(records: Records, service: str, signals: list[Signal]) -> Case:
    return records.cases.open(CaseOpen(service=service, failure_type="retrieval_drift",
                                       signals=signals, detected_by="retrieval_drift"),
                              "detector:retrieval_drift")


# ------------------------------------------------------------------ playbooks

def test_shipped_playbooks_cover_every_type_at_least_three_times() -> None:
    books = load_playbooks()
    assert resources.playbooks().name == "kb"  # the repo's kb/, through the package name
    per_type = {t: [b.id for b in books if b.failure_type == t] for t in FAILURE_TYPES}
    assert all(len(ids) >= 3 for ids in per_type.values()), per_type
    assert len({b.id for b in books}) == len(books)
    for b in books:
        assert b.signature and b.root_cause and b.fix and b.verify and b.blames, b.id
        assert "detector check" in b.verify, f"{b.id}: verify by the case's own check"


def test_a_malformed_playbook_is_named(tmp_path: Path) -> None:
    from appliance.errors import ConfigError

    (tmp_path / "bad.yaml").write_text("id: x\nfailure_type: not_a_type\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_playbooks(tmp_path)


# ------------------------------------------------------------------ seeding

def test_seeding_twice_is_idempotent(kb: KnowledgeBase, embedder: Embedder) -> None:
    shipped = len(load_playbooks())
    assert kb.count() == kb.count("playbook") == shipped
    report = kb.seed()
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, shipped)
    kb.close()
    with KnowledgeBase.open(kb.path, embedder) as again:  # open seeds once more
        assert again.count() == shipped


def test_closing_twice_leaves_another_handle_on_the_folder_working(
        kb: KnowledgeBase, embedder: Embedder) -> None:
    with KnowledgeBase.open(kb.path, embedder, seed=False) as other:
        kb.close()
        kb.close()
        assert other.count() == len(load_playbooks())


class _Renamed:
    """The real embedder under another model id: what an embedder upgrade looks like to
    the knowledge base's hashes."""

    model_id = "another-embedder"

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    def embed(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.embed(texts)


def test_learned_cases_survive_seeding_and_follow_an_embedder_upgrade(
        kb: KnowledgeBase, records: Records, embedder: Embedder) -> None:
    case = _open(records, "support-rag", RETRIEVAL_DRIFT)
    kb.learn(records.cases.resolve(case.id, Resolve(root_cause="stale index",
                                                    fix_applied="re-index"), "alice"))
    assert kb.seed().cases_reembedded == 0 and kb.count("case") == 1
    kb.close()
    with KnowledgeBase.open(kb.path, _Renamed(embedder), seed=False) as upgraded:
        report = upgraded.seed()
        assert report.updated == len(load_playbooks()) and report.cases_reembedded == 1
        assert upgraded.seed().cases_reembedded == 0 and upgraded.count("case") == 1


def test_upgrade_updates_changed_adds_new_and_drops_removed_playbooks(
        kb: KnowledgeBase, tmp_path: Path) -> None:
    shipped = tmp_path / "playbooks"
    shutil.copytree(resources.playbooks(), shipped, ignore=shutil.ignore_patterns("__*"))
    stale = shipped / "retrieval_drift" / "rd-stale-index-after-documents.yaml"
    stale.write_text(stale.read_text().replace("Re-index the changed documents now",
                                               "Rebuild the index from the changed documents"))
    (shipped / "provider_error" / "prov-outage.yaml").unlink()
    new = shipped / "provider_error" / "prov-new.yaml"
    new.write_text((shipped / "provider_error" / "prov-rate-limit.yaml").read_text()
                   .replace("id: prov-rate-limit", "id: prov-new"))
    report = kb.seed(load_playbooks(shipped))
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    text = compose("retrieval_drift", [("retrieval_score", "down")], "index", ["documents"])
    found = {m.id: m for m in kb.similar(text, "retrieval_drift", k=10)}
    assert found["rd-stale-index-after-documents"].fix.startswith("Rebuild the index")
    assert "prov-outage" not in {m.id for m in kb.similar("provider outage", None, k=50)}


# ------------------------------------------------------------------ retrieval

def test_a_retrieval_drift_case_finds_retrieval_drift_playbooks_first(
        kb: KnowledgeBase, records: Records) -> None:
    case = _open(records, "support-rag", RETRIEVAL_DRIFT)
    text = case_text(case, blamed="index")
    assert "support-rag" not in text and "idx-2026" not in text  # service-independent
    found = kb.similar(text, None, k=8)
    rd = [m for m in found if m.failure_type == "retrieval_drift"]
    assert len(rd) >= 3 and found[:len(rd)] == rd, [(m.id, m.distance) for m in found]
    assert [m.distance for m in found] == sorted(m.distance for m in found)
    assert all(m.source == "playbook" and not m.verified for m in found)
    others = [m.distance for m in found if m.failure_type != "retrieval_drift"]
    assert max(m.distance for m in rd) < min(others)
    assert all(m.failure_type == "retrieval_drift"
               for m in kb.similar(text, "retrieval_drift", k=3))


def test_an_empty_knowledge_base_answers_nothing(tmp_path: Path, embedder: Embedder) -> None:
    with KnowledgeBase.open(tmp_path / "kb", embedder, seed=False) as empty:
        assert empty.count() == 0
        assert empty.similar("retrieval drift. signals: retrieval score down.", None) == []
        assert empty.similar("anything", "agent_loop", k=3) == []
    assert fixes.suggest([]) == []


def test_a_resolved_case_is_learned_and_lifts_its_fix_for_the_next_similar_incident(
        kb: KnowledgeBase, records: Records) -> None:
    """The issue's "must show": resolve a case, then a new incident of the same shape
    in another service retrieves it and gets its fix with a higher confidence."""
    past = _open(records, "support-rag", RETRIEVAL_DRIFT)
    incident = _open(records, "docs-assistant",
                     [Signal(name="retrieval_score", value=0.38, baseline=0.81, window="15m"),
                      Signal(name="new_index_version", value="v17", window="15m")])
    text = case_text(incident, blamed="index")
    playbook = next(b for b in load_playbooks() if b.id == "rd-index-refresh-broken-chunking")

    def offered() -> dict[str, fixes.Fix]:
        return {f.title: f for f in fixes.suggest(kb.similar(text, None, k=5))}

    before = offered()[fixes.title_of(playbook.fix)]
    assert before.source == f"playbook:{playbook.id}"

    # The person resolves the past case with that fix ("Resolve with this fix").
    resolved = records.cases.resolve(past.id, Resolve(
        root_cause="index v2 was built with a new PDF parser that dropped the body text",
        fix_applied=playbook.fix), "alice")
    assert kb.learn(resolved) and kb.count("case") == 1
    found = kb.similar(text, None, k=5)
    assert (found[0].source, found[0].id, found[0].verified) == ("case", past.id, False)
    assert found[0].distance < min(m.distance for m in found if m.source == "playbook")
    after = offered()[fixes.title_of(playbook.fix)]
    assert after.confidence > before.confidence
    assert after.source == f"case:{past.id}" and f"playbook:{playbook.id}" in after.sources

    # Verified by its detector check: learned again, now a verified fix, higher still.
    verified = records.cases.verify(past.id, Verify(back_to_baseline=True, checks=[
        Check(signal="retrieval_score", value=0.79, baseline=0.78)]), "detector:check")
    assert kb.learn(verified) and kb.count("case") == 1
    top = kb.similar(text, None, k=1)[0]
    assert top.verified and "retrieval_score back to baseline" in top.verify
    confirmed = offered()[fixes.title_of(playbook.fix)]
    assert confirmed.verified and confirmed.confidence > after.confidence


def test_a_case_reopened_by_a_failed_check_is_forgotten(kb: KnowledgeBase,
                                                        records: Records) -> None:
    past = _open(records, "support-rag", RETRIEVAL_DRIFT)
    kb.learn(records.cases.resolve(past.id, Resolve(root_cause="stale index",
                                                    fix_applied="re-index"), "alice"))
    assert kb.count("case") == 1
    reopened = records.cases.verify(past.id, Verify(back_to_baseline=False), "detector:check")
    assert reopened.status == "investigating"
    assert kb.learn(reopened) is False and kb.count("case") == 0
    assert kb.learn(_open(records, "other", RETRIEVAL_DRIFT)) is False  # never resolved


def test_the_workers_callback_learns_and_never_raises(kb: KnowledgeBase,
                                                      records: Records) -> None:
    case = _open(records, "support-rag", RETRIEVAL_DRIFT)
    resolved = records.cases.resolve(case.id, Resolve(root_cause="stale index",
                                                      fix_applied="re-index"), "alice")
    assert {"case.resolve", "case.verify"} <= LEARNED_ACTIONS
    learner(lambda: kb)(resolved)
    assert kb.count("case") == 1
    learner(lambda: None)(resolved)  # no knowledge base: nothing, no error
    assert learn_quietly(object(), resolved) is False  # the worker's "unavailable" reason
    kb.close()
    learner(lambda: kb)(resolved)  # a closed or broken store: logged, not raised


def test_the_daemons_worker_learns_a_case_resolved_and_verified_through_the_store(
        records: Records, seeded_template: Path) -> None:
    """The wiring: CaseStore's listener hands a resolve or verify to the RCA worker's
    thread, which opens the knowledge base in the data folder and learns the case."""
    shutil.copytree(seeded_template, records.settings.kb_dir)  # seeded: no 30 embeddings
    worker = records.rca
    worker.start()
    try:
        case = _open(records, "support-rag", RETRIEVAL_DRIFT)
        records.cases.resolve(case.id, Resolve(root_cause="stale index",
                                               fix_applied="re-index"), "alice")
        worker.submit(lambda: None).result(timeout=120)  # the queue is in order: learned
        kb = worker.kb()
        assert isinstance(kb, KnowledgeBase) and kb.path == records.settings.kb_dir
        assert [m.verified for m in kb.similar(case_text(case), None, k=5)
                if m.source == "case"] == [False]
        records.cases.verify(case.id, Verify(back_to_baseline=True), "detector:check")
        worker.submit(lambda: None).result(timeout=60)
        assert [m.verified for m in kb.similar(case_text(case), None, k=5)
                if m.source == "case"] == [True]
    finally:
        worker.stop()
        kb = worker.kb()
        if isinstance(kb, KnowledgeBase):
            kb.close()


# ------------------------------------------------------------------ corrupt folders

def _corrupt_sqlite(folder: Path, how: str) -> None:
    db = folder / "chroma.sqlite3"
    if how == "garbage_header":
        with db.open("r+b") as f:
            f.write(os.urandom(4096))
    elif how == "garbage_pages":
        with db.open("r+b") as f:
            f.seek(8192)
            f.write(os.urandom(32768))
    elif how == "truncated":
        os.truncate(db, db.stat().st_size // 3)
    elif how == "emptied":
        os.truncate(db, 0)


@pytest.mark.parametrize("how", ["garbage_header", "garbage_pages", "truncated", "emptied"])
def test_a_corrupt_folder_is_a_clear_error_and_can_be_rebuilt(
        tmp_path: Path, seeded_template: Path, embedder: Embedder, how: str) -> None:
    path = tmp_path / "kb"
    shutil.copytree(seeded_template, path)
    _corrupt_sqlite(path, how)
    with pytest.raises(KnowledgeBaseUnavailable) as caught:
        KnowledgeBase.open(path, embedder)
    message = caught.value.message
    assert str(path) in message and "rules alone" in message and "rebuild" in message
    assert caught.value.status == 503

    fresh, aside = rebuild(path, embedder)
    with fresh:
        assert aside is not None and (aside / "chroma.sqlite3").is_file()  # kept aside
        assert fresh.count() == len(load_playbooks())
        text = compose("retrieval_drift", [("retrieval_score", "down")], "index")
        assert fresh.similar(text, None, k=1)[0].failure_type == "retrieval_drift"


def test_a_broken_vector_segment_is_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    """Chroma writes its vector index files once a collection passes 1,000 entries; fill
    one with random vectors (through the collection: embedding 1,200 texts is slow), then
    overwrite those files with garbage."""
    import numpy as np

    path = tmp_path / "kb"
    with KnowledgeBase.open(path, embedder, seed=False) as kb:
        vectors = np.random.default_rng(1).random((1200, 384), dtype=np.float32)
        kb._col.upsert(ids=[f"x{i}" for i in range(1200)], embeddings=vectors,
                       metadatas=[{"source": "case"}] * 1200)
    segments = [f for d in path.iterdir() if d.is_dir() for f in d.iterdir()]
    assert any(f.name == "data_level0.bin" for f in segments)
    for f in segments:
        f.write_bytes(os.urandom(64))
    with pytest.raises(KnowledgeBaseUnavailable, match="cannot be opened"):
        KnowledgeBase.open(path, embedder, seed=False)


def test_a_folder_corrupted_while_open_fails_each_call_clearly(
        tmp_path: Path, seeded_template: Path, embedder: Embedder, records: Records) -> None:
    path = tmp_path / "kb"
    shutil.copytree(seeded_template, path)
    kb = KnowledgeBase.open(path, embedder)
    _corrupt_sqlite(path, "garbage_header")
    case = _open(records, "support-rag", RETRIEVAL_DRIFT)
    resolved = records.cases.resolve(case.id, Resolve(root_cause="x", fix_applied="y"), "a")
    for call in (lambda: kb.similar(case_text(case), None), kb.count, kb.seed,
                 lambda: kb.learn(resolved)):
        with pytest.raises(KnowledgeBaseUnavailable, match="cannot be"):
            call()
    assert learn_quietly(kb, resolved) is False  # the listener's path: logged, not raised
    kb.close()  # rebuild once nothing holds the broken folder
    fresh, aside = rebuild(path, embedder)
    with fresh:
        assert aside is not None and fresh.count() == len(load_playbooks())


def test_a_file_where_the_folder_should_be(tmp_path: Path, embedder: Embedder) -> None:
    (tmp_path / "kb").write_text("not a folder")
    with pytest.raises(KnowledgeBaseUnavailable, match="not a folder"):
        KnowledgeBase.open(tmp_path / "kb", embedder)


# ------------------------------------------------------------------ nothing phones home

def test_telemetry_is_off_and_no_python_socket_opens(
        tmp_path: Path, embedder: Embedder, records: Records,
        monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("the knowledge base must not open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with KnowledgeBase.open(tmp_path / "kb", embedder) as kb:
        assert kb._client.get_settings().anonymized_telemetry is False
        assert kb._col.configuration_json.get("embedding_function") is None
        case = _open(records, "support-rag", RETRIEVAL_DRIFT)
        kb.learn(records.cases.resolve(case.id, Resolve(root_cause="stale index",
                                                        fix_applied="re-index"), "alice"))
        assert kb.similar(case_text(case), None, k=3)
    assert attempts == []


# onnxruntime's telemetry first reaches out ~10 s after its first session: watch longer.
WATCH_S = 15


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_native_code_opens_no_network_socket(tmp_path: Path) -> None:
    """Chroma's core is Rust and onnxruntime is C++: they would pass no Python socket.
    Trace the system calls of a process that opens, seeds and searches a knowledge base
    and then stays up past onnxruntime's telemetry delay: no inet socket at all, and no
    telemetry id file in the home folder."""
    script = ("import time; from pathlib import Path; "
              "from appliance.rca.embed import Embedder; "
              "from appliance.rca.kb import KnowledgeBase; "
              f"kb = KnowledgeBase.open(Path({str(tmp_path / 'kb')!r}), Embedder()); "
              "print(len(kb.similar('retrieval drift. signals: retrieval score down.', None)));"
              f"time.sleep({WATCH_S})")
    home = tmp_path / "home"
    home.mkdir()
    trace = tmp_path / "strace.txt"
    # The variable the package sets must not be inherited: the child sets it itself.
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(home)
    done = subprocess.run(["strace", "-f", "-qq", "-s", "100", "-e",
                           "trace=socket,connect,sendto", "-o", str(trace), sys.executable,
                           "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "5"
    inet = [c for c in trace.read_text().splitlines() if "AF_INET" in c or "htons(" in c]
    assert inet == [], inet
    assert not (home / ".cache" / "chroma").exists()
