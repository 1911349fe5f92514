"""The daemon's RCA worker: a queue and one thread, so no RCA work ever runs on the API's
or the ingest's time.

A case is diagnosed when it opens, again when new evidence joins it (an occurrence
added to an open case, debounced by ``rca_debounce_s`` so a finding that keeps firing
costs one run, not one a minute), and whenever someone asks (``tracehold cases rca``,
the console's "Run again"). Requests only touch a dict under a lock: the caller never
waits. The model and the knowledge base load once, lazily, on the first run; a part
that cannot load is remembered with its reason and every run goes on without it (the
case shows the status). A failing run is logged and the case gets the rules-only
answer. Other work can be handed to the same thread (``submit``): ``investigate``
through the daemon, a resolved case the knowledge base learns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from appliance.cases.model import Case, Rca
from appliance.cases.store import CaseStore
from appliance.changes.store import ChangeStore
from appliance.rca.pipeline import (
    KnowledgeBaseLike,
    ModelLike,
    Unavailable,
    diagnose_case,
)
from appliance.rca.run import rules_rca
from appliance.settings import Settings
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.rca")
# The case actions the knowledge base learns from (``kb.LEARNED_ACTIONS``; kb.py is not
# imported here: numpy and yaml would load with every ``Records``).
LEARNED_ACTIONS = frozenset({"case.resolve", "case.verify", "case.status"})
ACTOR = "rca:worker"
# The worker thread's nice value above the process's: on Linux nice is per thread and the
# threads llama.cpp and onnxruntime start from it inherit it, so on a busy machine the
# API and ingest get the CPU first (bench/rca_worker_bench.py).
NICE = 10
T = TypeVar("T")
# A loader answers the part, why it is missing (``Unavailable``), or None: left out.
ModelLoader = Callable[[Settings], "ModelLike | Unavailable | None"]
KbLoader = Callable[[Settings], "KnowledgeBaseLike | Unavailable | None"]


@dataclass(frozen=True)
class RcaSources:
    """What a run reads (``run.Sources``)."""

    store: SpanStore
    changes: ChangeStore
    cases: CaseStore
    settings: Settings


def load_model(settings: Settings) -> ModelLike | Unavailable:
    """The local model, or why there is none."""
    try:
        from appliance.rca.model import LocalModel

        model: ModelLike = LocalModel.load(settings)
        return model
    except Exception as exc:  # a missing or corrupt GGUF, llama.cpp absent
        log.warning("RCA model unavailable: %s", exc)
        return Unavailable(f"model_unavailable: {getattr(exc, 'message', exc)}"[:500])


def open_kb(settings: Settings) -> KnowledgeBaseLike | Unavailable:
    """The knowledge base in the data folder, or why there is none."""
    try:
        from appliance.rca.embed import Embedder
        from appliance.rca.kb import KnowledgeBase

        return KnowledgeBase.open(settings.kb_dir, Embedder())
    except Exception as exc:  # a corrupt Chroma folder, the embedder's wheel missing
        log.warning("RCA knowledge base unavailable: %s", exc)
        return Unavailable(f"kb_unavailable: {getattr(exc, 'message', exc)}"[:500])


@dataclass
class _Queue:
    due: dict[str, float] = field(default_factory=dict)  # case id -> monotonic time
    jobs: list[tuple[Callable[[], Any], Future[Any]]] = field(default_factory=list)


class RcaWorker:
    def __init__(self, sources: RcaSources, load: ModelLoader = load_model,
                 kb: KbLoader = open_kb) -> None:
        self.sources = sources
        self._load_model, self._open_kb = load, kb
        self._parts: dict[str, Any] = {}  # "model"/"kb" -> what its loader answered
        self._parts_lock = threading.Lock()
        self._q = _Queue()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.runs = self.failures = 0

    # ---------------------------------------------------------------- requests

    def request(self, case_id: str, delay_s: float = 0.0) -> None:
        """Diagnose ``case_id`` in ``delay_s`` (0: as soon as the thread is free). A
        request for a case already queued keeps the earlier time of the two."""
        at = time.monotonic() + delay_s
        with self._cv:
            self._q.due[case_id] = min(self._q.due.get(case_id, at), at)
            self._cv.notify()

    def on_case(self, action: str, case: Case) -> None:
        """``CaseStore`` listener: a new case at once, new evidence debounced; a resolved
        or verified case is learned by the knowledge base (on this thread too: Chroma
        and the embedder are slow, and the resolve must not wait for them)."""
        if action == "case.open":
            self.request(case.id)
        elif action == "case.evidence":
            self.request_debounced(case.id)
        elif action in LEARNED_ACTIONS:
            self.submit(lambda: self.learn(case))

    def learn(self, case: Case) -> None:
        """The knowledge base learns a resolved or verified case, and forgets a reopened
        one (``kb.learner``: never raises, a knowledge base that cannot learn must not
        fail the resolve)."""
        from appliance.rca.kb import learner

        learner(self.kb)(case)

    def request_debounced(self, case_id: str) -> None:
        """New evidence: a run ``rca_debounce_s`` from the first evidence not yet run."""
        delay = self.sources.settings.rca_debounce_s
        with self._cv:
            if case_id not in self._q.due:
                self._q.due[case_id] = time.monotonic() + delay
                self._cv.notify()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` on the worker thread (before the queued cases); its result or
        exception comes back through the future."""
        future: Future[T] = Future()
        with self._cv:
            self._q.jobs.append((job, future))
            self._cv.notify()
        return future

    def pending(self) -> list[str]:
        with self._cv:
            return sorted(self._q.due, key=self._q.due.__getitem__)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- the parts

    def model(self) -> ModelLike | Unavailable | None:
        """Loaded once, at first use (a failure too: fixing the GGUF takes a restart)."""
        found: ModelLike | Unavailable | None = self._part("model", self._load_model)
        return found

    def kb(self) -> KnowledgeBaseLike | Unavailable | None:
        found: KnowledgeBaseLike | Unavailable | None = self._part("kb", self._open_kb)
        return found

    def _part(self, name: str, load: Callable[[Settings], Any]) -> Any:
        with self._parts_lock:
            if name not in self._parts:
                self._parts[name] = load(self.sources.settings)
            return self._parts[name]

    # ---------------------------------------------------------------- the thread

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rca-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _next(self) -> tuple[str | None, tuple[Callable[[], Any], Future[Any]] | None]:
        """Wait for a job or a case whose time has come (None, None: stopping)."""
        with self._cv:
            while not self._stop.is_set():
                if self._q.jobs:
                    return None, self._q.jobs.pop(0)
                now = time.monotonic()
                ready = [c for c, at in self._q.due.items() if at <= now]
                if ready:
                    case_id = min(ready, key=self._q.due.__getitem__)
                    del self._q.due[case_id]
                    return case_id, None
                wait = min(self._q.due.values(), default=now + 3600) - now
                self._cv.wait(max(wait, 0.01))
        return None, None

    def _loop(self) -> None:
        _lower_priority()
        while True:
            case_id, job = self._next()
            if job is not None:
                fn, future = job
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # handed back to whoever waits on it
                        future.set_exception(exc)
            elif case_id is not None:
                self.run(case_id)
            else:
                return

    def run(self, case_id: str) -> Case | None:
        """Diagnose one case now and store the result (on the calling thread: the
        worker's, or a test's). A failing run stores the rules-only answer."""
        self.runs += 1
        try:
            rca = self.diagnose(case_id)
        except Exception as exc:
            self.failures += 1
            log.exception("RCA of %s failed; storing the rules-only answer", case_id)
            try:
                rca = rules_rca(self.sources, case_id)
                rca.details["status"] = f"pipeline_error: {type(exc).__name__}: {exc}"[:500]
            except Exception:  # the case is gone, or the store is: nothing to store
                log.exception("rules-only RCA of %s failed too", case_id)
                return None
        try:
            return self.sources.cases.set_rca(case_id, rca, ACTOR)
        except Exception:
            self.failures += 1
            log.exception("storing the RCA of %s failed", case_id)
            return None

    def diagnose(self, case_id: str) -> Rca:
        # The model's own timeout setting applies (LocalModel.load read it).
        return diagnose_case(self.sources, case_id, self.kb(), self.model())


def _lower_priority() -> None:
    """Give the calling thread (the worker's) ``NICE`` more; where threads cannot have
    their own (not Linux), nothing changes."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE)
    except (OSError, AttributeError):  # no per-thread priority here: run as we are
        log.info("the RCA worker runs at the process's priority")
