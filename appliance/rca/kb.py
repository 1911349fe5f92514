"""The RCA knowledge base: known failure patterns and resolved cases, in Chroma.

One persistent Chroma collection in ``<data_dir>/kb/`` holds two sources of entries:

* **playbooks** shipped in the package (the repo's ``kb/``, one YAML file per known
  pattern): seeded at open, idempotently. Each entry carries a hash of its content and
  of the text format and embedder, so an upgrade re-embeds the playbooks that changed,
  adds the new ones and drops those no longer shipped; the rest are left alone;
* **resolved cases** (``learn``): the case's text (``case_text``), its root cause, the
  fix applied and whether a verification check confirmed it. Learning again when the
  case is verified updates the entry; a case reopened by a failed check is forgotten.
  Seeding never drops them; ones another embedder made are embedded again from their
  stored text, so they stay comparable.

Vectors are always ours (``appliance.rca.embed``): the collection has no embedding
function, so Chroma never loads or downloads one, and its telemetry is off.

A folder Chroma cannot read (garbage in its SQLite file, a truncated file, a broken
vector segment) is a ``KnowledgeBaseUnavailable`` with the folder and the way out in
its message, whichever call finds it; the caller goes on with the rules alone.
``rebuild`` moves the folder aside (kept, not deleted) and seeds a fresh one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml

from appliance import resources
from appliance.cases.model import Case
from appliance.domain.taxonomy import FAILURE_TYPES
from appliance.errors import ConfigError, KnowledgeBaseUnavailable
from appliance.rca.case_text import case_text, compose

if TYPE_CHECKING:
    from appliance.rca.embed import Vectors

log = logging.getLogger("tracehold.rca.kb")

COLLECTION = "tracehold_kb"
# Part of every entry's hash: a new text format re-embeds everything at the next seed.
TEXT_FORMAT = 1
PLAYBOOK_FIELDS = ("id", "title", "failure_type", "blames", "signals", "change_kinds",
                   "signature", "root_cause", "fix", "verify")
REQUIRED = ("id", "title", "failure_type", "signature", "root_cause", "fix", "verify")
ENTITY_KINDS = ("change", "provider", "model", "template", "index", "tool", "agent")
Source = Literal["playbook", "case"]


class Embeds(Protocol):
    """What the knowledge base needs of an embedder (``appliance.rca.embed.Embedder``)."""

    model_id: str

    def embed(self, texts: Sequence[str]) -> Vectors: ...


@dataclass(frozen=True)
class Playbook:
    id: str
    title: str
    failure_type: str
    blames: str | None
    signals: tuple[str, ...]  # "name direction" or "name", as a detector reports them
    change_kinds: tuple[str, ...]
    signature: str
    root_cause: str
    fix: str
    verify: str

    def text(self) -> str:
        """What gets embedded: the same shape a case's text has, then the signature."""
        signals = [(s.split()[0], s.split()[1] if len(s.split()) > 1 else None)
                   for s in self.signals]
        shape = compose(self.failure_type, signals, self.blames, self.change_kinds)
        return f"{shape} {' '.join(self.signature.split())}"


@dataclass(frozen=True)
class Match:
    """One entry near a case: a playbook or a resolved case, with its cosine distance
    (0: same direction; 2: opposite)."""

    id: str  # the playbook's id, or the case's id
    source: Source
    failure_type: str
    root_cause: str
    fix: str
    verify: str
    verified: bool
    distance: float
    title: str = ""
    blames: str | None = None


@dataclass(frozen=True)
class SeedReport:
    added: int
    updated: int
    removed: int
    unchanged: int
    cases_reembedded: int = 0


def load_playbooks(folder: Path | None = None) -> list[Playbook]:
    """Every ``*.yaml`` playbook under ``folder`` (default: the shipped ones), checked:
    a malformed one is a ConfigError naming the file, never skipped in silence."""
    root = folder or resources.playbooks()
    out: dict[str, Playbook] = {}
    for path in sorted(root.rglob("*.yaml")):
        book = _playbook(path)
        if book.id in out:
            raise ConfigError(f"playbook id {book.id!r} is used twice (second: {path})")
        out[book.id] = book
    return list(out.values())


def _playbook(path: Path) -> Playbook:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"playbook {path} is unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"playbook {path} is not a mapping")
    missing = [f for f in REQUIRED if not isinstance(raw.get(f), str) or not raw[f].strip()]
    unknown = sorted(set(raw) - set(PLAYBOOK_FIELDS))
    if missing or unknown:
        raise ConfigError(f"playbook {path}: missing {missing or 'nothing'}, "
                          f"unknown fields {unknown or 'none'}")
    if raw["failure_type"] not in FAILURE_TYPES:
        raise ConfigError(f"playbook {path}: failure_type {raw['failure_type']!r} is not one "
                          f"of {', '.join(FAILURE_TYPES)}")
    if raw.get("blames") is not None and raw["blames"] not in ENTITY_KINDS:
        raise ConfigError(f"playbook {path}: blames {raw['blames']!r} is not one of "
                          f"{', '.join(ENTITY_KINDS)}")
    return Playbook(
        id=raw["id"], title=raw["title"].strip(), failure_type=raw["failure_type"],
        blames=raw.get("blames"), signals=tuple(str(s) for s in raw.get("signals") or ()),
        change_kinds=tuple(str(k) for k in raw.get("change_kinds") or ()),
        **{f: " ".join(raw[f].split()) for f in ("signature", "root_cause", "fix", "verify")})


def _entry_hash(text: str, meta: Mapping[str, object], model_id: str) -> str:
    canonical = json.dumps([TEXT_FORMAT, model_id, text, dict(meta)], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _failure(exc: BaseException) -> bool:
    """Whether ``exc`` is Chroma failing (to convert) rather than the process stopping.
    A panic in Chroma's Rust core reaches Python as pyo3's PanicException, which derives
    from BaseException, not Exception."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class KnowledgeBase:
    """Open with ``KnowledgeBase.open``; every method is safe from several threads."""

    def __init__(self, path: Path, client: Any, collection: Any, embedder: Embeds) -> None:
        self.path, self._client, self._col, self.embedder = path, client, collection, embedder
        self._lock = threading.Lock()  # one writer at a time: seed and learn read-then-write

    # ---------------------------------------------------------------- open / close

    @classmethod
    def open(cls, path: Path, embedder: Embeds, *, seed: bool = True) -> KnowledgeBase:
        """Open (or create) the knowledge base in ``path`` and, by default, seed it with
        the shipped playbooks. KnowledgeBaseUnavailable when the folder is unusable."""
        _precheck(path)
        with _converted(path, "opened"):
            import chromadb  # ~1 s to import: only when a knowledge base is opened
            from chromadb.config import Settings as ChromaSettings

            path.mkdir(parents=True, exist_ok=True)
            try:
                client: Any = chromadb.PersistentClient(  # ClientAPI's type lacks close
                    path=str(path), settings=ChromaSettings(anonymized_telemetry=False,
                                                            allow_reset=False))
            except BaseException:
                _drop_failed_system(path)
                raise
            try:
                collection = client.get_or_create_collection(
                    COLLECTION, embedding_function=None,
                    metadata={"hnsw:space": "cosine"})
                collection.count()  # reads the segments: a broken one fails here, not later
            except BaseException:
                client.close()
                raise
        kb = cls(path, client, collection, embedder)
        if seed:
            try:
                kb.seed()
            except BaseException:
                kb.close()
                raise
        return kb

    def close(self) -> None:
        """Release Chroma's hold on the folder (safe to repeat; another handle on the
        same folder keeps working)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- seeding

    def seed(self, playbooks: Sequence[Playbook] | None = None) -> SeedReport:
        """Bring the playbook entries in line with ``playbooks`` (default: the shipped
        ones): new and changed ones embedded and written, removed ones deleted, the
        unchanged ones not touched."""
        books = list(load_playbooks() if playbooks is None else playbooks)
        with self._lock, _converted(self.path, "seeded"):
            stored = self._col.get(where={"source": "playbook"}, include=["metadatas"])
            have = {i: (m or {}).get("sha") for i, m in
                    zip(stored["ids"], stored["metadatas"] or [], strict=False)}
            ids, texts, metas = [], [], []
            for b in books:
                meta = {"source": "playbook", "ref": b.id, "title": b.title,
                        "failure_type": b.failure_type, "blames": b.blames or "",
                        "root_cause": b.root_cause, "fix": b.fix, "verify": b.verify,
                        "verified": False}
                sha = _entry_hash(b.text(), meta, self.embedder.model_id)
                if have.get(_key("playbook", b.id)) != sha:
                    ids.append(_key("playbook", b.id))
                    texts.append(b.text())
                    metas.append({**meta, "sha": sha})
            gone = sorted(set(have) - {_key("playbook", b.id) for b in books})
            if ids:
                self._col.upsert(ids=ids, embeddings=self.embedder.embed(texts),
                                 metadatas=metas, documents=texts)
            if gone:
                self._col.delete(ids=gone)
            reembedded = self._reembed_cases()
        added = sum(1 for i in ids if i not in have)
        return SeedReport(added, len(ids) - added, len(gone), len(books) - len(ids),
                          reembedded)

    def _reembed_cases(self) -> int:
        """Learned cases whose vectors another embedder or text format made (their hash
        no longer matches): embedded again from their stored text, so they stay
        comparable. Nothing to do in the usual case."""
        stored = self._col.get(where={"source": "case"}, include=["metadatas", "documents"])
        stale = []
        for key, meta, text in zip(stored["ids"], stored["metadatas"] or [],
                                   stored["documents"] or [], strict=False):
            fields = {k: v for k, v in (meta or {}).items() if k != "sha"}
            if text and (meta or {}).get("sha") != _entry_hash(text, fields,
                                                               self.embedder.model_id):
                stale.append((key, {**fields, "sha": _entry_hash(
                    text, fields, self.embedder.model_id)}, text))
        if stale:
            self._col.upsert(ids=[k for k, _, _ in stale],
                             embeddings=self.embedder.embed([t for _, _, t in stale]),
                             metadatas=[m for _, m, _ in stale],
                             documents=[t for _, _, t in stale])
        return len(stale)

    # ---------------------------------------------------------------- learning

    def learn(self, case: Case) -> bool:
        """Learn a resolved or verified case (its text, root cause, fix, verification);
        again on verification, which updates it. A case that is not closed (reopened by
        a failed check) is forgotten: its fix did not hold. True when it is now known."""
        key = _key("case", case.id)
        res = case.resolution
        closed = case.status in ("resolved", "verified") and res.root_cause and res.fix_applied
        with self._lock, _converted(self.path, "written"):
            if not closed:
                self._col.delete(ids=[key])
                return False
            text = case_text(case)
            meta = {"source": "case", "ref": case.id, "title": case.title,
                    "failure_type": str(case.rca.failure_type if case.rca and
                                        case.rca.failure_type else case.failure_type),
                    "blames": "", "root_cause": res.root_cause or "",
                    "fix": res.fix_applied or "", "verify": _verify_text(case),
                    "verified": case.status == "verified",
                    "resolved_at": res.resolved_at or ""}
            meta["sha"] = _entry_hash(text, meta, self.embedder.model_id)
            self._col.upsert(ids=[key], embeddings=self.embedder.embed([text]),
                             metadatas=[meta], documents=[text])
        return True

    def forget(self, case_id: str) -> None:
        with self._lock, _converted(self.path, "written"):
            self._col.delete(ids=[_key("case", case_id)])

    # ---------------------------------------------------------------- reading

    def similar(self, case_text: str, failure_type: str | None = None,
                k: int = 5) -> list[Match]:
        """The ``k`` entries nearest ``case_text`` (of ``failure_type`` if given), nearest
        first; [] when there are none."""
        if k < 1:
            return []
        where = {"failure_type": failure_type} if failure_type else None
        vector = self.embedder.embed([case_text])
        with _converted(self.path, "searched"):
            found = self._col.query(query_embeddings=vector, n_results=k, where=where,
                                    include=["metadatas", "distances"])
        metas = (found.get("metadatas") or [[]])[0]
        distances = (found.get("distances") or [[]])[0]
        return [_match(m or {}, float(d)) for m, d in zip(metas, distances, strict=False)]

    def count(self, source: Source | None = None) -> int:
        with _converted(self.path, "read"):
            if source is None:
                return int(self._col.count())
            return len(self._col.get(where={"source": source}, include=[])["ids"])


def _key(source: Source, ref: str) -> str:
    return f"{source}:{ref}"


def _match(m: Mapping[str, Any], distance: float) -> Match:
    source: Source = "case" if m.get("source") == "case" else "playbook"
    return Match(id=str(m.get("ref", "")), source=source,
                 failure_type=str(m.get("failure_type", "")),
                 root_cause=str(m.get("root_cause", "")), fix=str(m.get("fix", "")),
                 verify=str(m.get("verify", "")), verified=bool(m.get("verified", False)),
                 distance=round(max(distance, 0.0), 4), title=str(m.get("title", "")),
                 blames=str(m["blames"]) if m.get("blames") else None)


def _verify_text(case: Case) -> str:
    """How this case's fix was (or can be) verified: the checks that found the signals
    back to baseline, else the case's own detector check."""
    passed = [v for v in case.verifications if v.back_to_baseline]
    if passed:
        names = ", ".join(dict.fromkeys(c.signal for c in passed[-1].checks)) or "its signals"
        return f"Verified: {names} back to baseline ({passed[-1].at})."
    names = ", ".join(dict.fromkeys(s.name for s in case.signals)) or "its signals"
    detector = f" ({case.detected_by})" if case.detected_by else ""
    return f"Run the case's detector check{detector}: {names} back to baseline."


# ------------------------------------------------------------------ failures

def _message(path: Path, doing: str, cause: object) -> str:
    return (f"the knowledge base in {path} cannot be {doing}: {cause}. Root-cause analysis "
            f"goes on with the rules alone. To rebuild it, stop the daemon and run "
            f"`tracehold kb rebuild` (it keeps the folder aside and seeds a fresh one from "
            f"the playbooks); resolved cases are learned again as they are resolved")


def _drop_failed_system(path: Path) -> None:
    """Chroma caches one System per folder for the process and keeps it when starting it
    failed (the failure comes before the client counts a reference), so every later open
    of that folder, a rebuilt one included, would get the broken one. Drop it unless a
    live client holds it."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(path)
    with contextlib.suppress(Exception):  # Chroma's internals: never mask the real error
        with SharedSystemClient._refcount_lock:
            if key in SharedSystemClient._identifier_to_refcount:
                return
            system = SharedSystemClient._identifier_to_system.pop(key, None)
        if system is not None:
            system.stop()


def _precheck(path: Path) -> None:
    """What Chroma would not call a failure: a file where the folder should be, and an
    emptied SQLite file beside vector segments (Chroma would start an empty database
    over it and lose every entry without a word)."""
    if path.exists() and not path.is_dir():
        raise KnowledgeBaseUnavailable(_message(path, "opened", "it is not a folder"))
    db = path / "chroma.sqlite3"
    if db.is_file() and db.stat().st_size == 0 and any(p.is_dir() for p in path.iterdir()):
        raise KnowledgeBaseUnavailable(_message(
            path, "opened", "chroma.sqlite3 is empty (truncated) but vector segments remain"))


@contextlib.contextmanager
def _converted(path: Path, doing: str) -> Iterator[None]:
    """Chroma's errors (ChromaError, sqlite and I/O errors, a Rust panic) become
    KnowledgeBaseUnavailable; ours pass through."""
    try:
        yield
    except (KnowledgeBaseUnavailable, ConfigError):
        raise
    except BaseException as exc:
        if not _failure(exc):
            raise
        log.debug("knowledge base %s cannot be %s: %s", path, doing, exc)  # the caller says
        raise KnowledgeBaseUnavailable(_message(path, doing, exc)) from exc


def rebuild(path: Path, embedder: Embeds,
            now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[KnowledgeBase,
                                                                               Path | None]:
    """Move an unusable knowledge base folder aside (``<name>.corrupt-<UTC time>``, kept
    for inspection) and open a freshly seeded one in its place. Returns the new knowledge
    base and where the old folder went (None when there was none). Close any knowledge
    base open on the folder first (Chroma keeps one store per folder and process). Learned
    cases are not recovered: they are learned again as cases are resolved."""
    aside = None
    if path.exists():
        aside = path.with_name(f"{path.name}.corrupt-{now().strftime('%Y%m%dT%H%M%SZ')}")
        shutil.move(str(path), str(aside))
        log.info("knowledge base %s moved aside to %s; seeding a fresh one", path, aside)
    return KnowledgeBase.open(path, embedder), aside


# The case actions after which the knowledge base learns (or forgets) the case: resolved,
# verified (or reopened by a failed check), or its status set by hand.
LEARNED_ACTIONS = frozenset({"case.resolve", "case.verify", "case.status"})


def learn_quietly(kb: object, case: Case) -> bool:
    """``kb.learn(case)`` when ``kb`` is a usable knowledge base; never raises (a
    knowledge base that cannot learn must not fail a resolve). True when learned."""
    if not isinstance(kb, KnowledgeBase):
        return False  # none configured, or unavailable (the reason is on every RCA run)
    try:
        return kb.learn(case)
    except Exception:
        log.exception("the knowledge base did not learn case %s", case.id)
        return False


def learner(kb: Callable[[], object]) -> Callable[[Case], None]:
    """A callback for the RCA worker to call with a case after one of
    ``LEARNED_ACTIONS`` (``kb``: its knowledge base; anything else, such as None or the
    reason it is unavailable, and nothing is learned). It never
    raises: a knowledge base that cannot learn must not fail the resolve."""
    def learn(case: Case) -> None:
        learn_quietly(kb(), case)
    return learn
