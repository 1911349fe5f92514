"""The RCA scenario suite: generated incidents with their ground truth, shared by
``tests/unit/test_rca_scenarios.py`` and ``bench/rca_bench.py``.

Each incident is the real demo apps (``appliance.demo``) replayed in simulated time into
a real DuckDB store through the ingest path (``appliance.demo.replay.StoreExporter``),
with faults switched on per service at an onset, on all traffic or a canary share of it;
change events recorded by a person (at a lag) or inferred by the appliance from the
spans, or none at all (a store filled before the appliance watched it: an imported
trace set); then the detectors run as the daemon would and open the cases.

Per failure type there are at least ten incidents, varied in seed, target service,
onset, magnitude, the change event (recorded, inferred or absent, and its lag) and the
confounders: a harmless change in another service at the same time, a harmless change
in the same service, two faults at once, a canary rollout, a silent provider-side model
update seen only in ``gen_ai.response.model``, a cause with no change event. Apart
from those: normal traffic with a harmless change (no case should open, nothing should be
blamed) and deliberately ambiguous cases whose right answer is "unable to determine".

Ground truth per evaluated case: the failure type (None when not judged) and the
root-cause entity ``(kind, ref)``, kind one of change (ref: the change event's id),
provider, model, template, index, tool, agent; or None: undetermined is the right
answer. ``also`` lists other names of the same entity (the value an inferred change
introduced is that change; an index by its version or its data source id).

Replays are cached on disk (``TRACEHOLD_INCIDENT_CACHE``, default
``~/.cache/tracehold/rca-incidents``), one folder per incident keyed by its parameters
and the source of everything that shapes the stored spans, change events and findings.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.cases.model import CaseOpen
from appliance.changes.store import ChangeIn
from appliance.demo import agents, catalog, chat, rag
from appliance.demo.conditions import BASE_VERSION, Conditions
from appliance.demo.replay import StoreExporter, first_detection
from appliance.demo.scenarios import BASELINE
from appliance.demo.sink import Sink
from appliance.demo.traffic import Traffic
from appliance.domain.change_kinds import ChangeKind
from appliance.records import Records
from appliance.settings import DetectConfig, Settings
from appliance.store.spans import SpanStore

ROOT = Path(__file__).resolve().parent.parent
RAG, AGENTS, CHAT = rag.SERVICE, agents.SERVICE, chat.SERVICE
SERVICES = (RAG, AGENTS, CHAT)
CFG = DetectConfig()
AFTER_ONSET_S = 180.0  # traffic after the (first) onset: the detectors need about 2 min
DETECT_LEAD_S = 120.0  # detectors run from this long before the onset (false cases count)
K = ChangeKind
TYPES = ("hallucination", "retrieval_drift", "coherence_degradation", "agent_loop",
         "prompt_regression", "context_overflow", "provider_error", "latency_cost_regression")
# Which services call each provider (a provider outage's blast radius).
CALLERS = {catalog.OPENAI: (RAG, AGENTS, CHAT), catalog.ANTHROPIC: (AGENTS, CHAT)}
RAG_MODEL = rag.MODEL.name  # gpt-4o-mini, answering as gpt-4o-mini-2024-07-18
RAG_RESPONSE = rag.MODEL.name + rag.MODEL.response_suffix


# ------------------------------------------------------------------ the specification

@dataclass(frozen=True)
class Fault:
    """Conditions ``knobs`` on ``services`` from ``at`` s after the start, on a ``share``
    of their traces (a canary rollout below 1)."""

    services: tuple[str, ...]
    at: float
    knobs: tuple[tuple[str, Any], ...]
    share: float = 1.0


@dataclass(frozen=True)
class Change:
    """A change event a person records: ``label`` names it in the ground truth."""

    label: str
    kind: ChangeKind
    service: str
    before: str
    after: str
    at: float  # seconds after the start


@dataclass(frozen=True)
class Truth:
    """What one case should be diagnosed as. ``entity`` refs starting with ``@`` name a
    change event: ``@label`` one recorded by the spec, ``@inferred:kind:service:to`` the one
    change inference records; both are resolved to ids once the incident is built."""

    failure_type: str | None  # None: the type is not judged (nothing or too little to see)
    services: tuple[str, ...]  # where its case opens
    entity: tuple[str, str] | None  # None: "unable to determine" is the right answer
    also: tuple[tuple[str, str], ...] = ()
    filed: bool = False  # a person files the case at the onset (no detector opens it)
    role: str = "primary"  # primary, secondary (the other of two faults), filed


@dataclass(frozen=True)
class Spec:
    id: str
    group: str  # the failure type, "ambiguous" or "normal"
    seed: int
    rate: float
    seconds: float
    onset: float  # seconds after the start (the first fault, or the harmless change)
    inference: bool  # change inference watches the traffic as it arrives
    faults: tuple[Fault, ...]
    changes: tuple[Change, ...]
    truths: tuple[Truth, ...]
    harmless: tuple[str, ...]  # change labels (``@...`` as in Truth) that explain nothing
    tags: tuple[str, ...]  # the confounders and variations, for the report


def _knobs(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


def _inferred(kind: ChangeKind, service: str, to: str) -> str:
    return f"@inferred:{kind}:{service}:{to}"


# ------------------------------------------------------------------ the suite

@dataclass
class _Draw:
    """One incident being put together."""

    rng: random.Random
    onset: float
    faults: list[Fault] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    truths: list[Truth] = field(default_factory=list)
    harmless: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    inference: bool = True

    def record(self, kind: ChangeKind, service: str, before: str, after: str, lag: float,
               harmless: bool = False) -> str:
        label = f"@c{len(self.changes) + 1}"
        self.changes.append(Change(label, kind, service, before, after, self.onset - lag))
        if harmless:
            self.harmless.append(label)
        return label

    def cause(self, mode: str, entity: tuple[str, str], also: tuple[tuple[str, str], ...],
              inferable: tuple[ChangeKind, str, str] | None,
              manual: tuple[ChangeKind, str, str, str]) -> tuple[tuple[str, str],
                                                                 tuple[tuple[str, str], ...]]:
        """The truth's entity for a fault whose cause is: ``inferred`` (the appliance sees
        the new value arrive), ``recorded`` (a person records the change; the store was
        filled before the appliance watched it, so nothing is inferred) or ``silent``
        (no change event at all)."""
        if mode == "inferred":
            if inferable is None:  # nothing the spans show: no change event at all
                self.tags.append("no_change_event")
                return entity, also
            self.tags.append("change_inferred")
            kind, service, to = inferable
            return ("change", _inferred(kind, service, to)), (entity, *also)
        self.inference = False
        if mode == "recorded":
            lag = self.rng.choice((0.0, 15.0, 45.0, 120.0, 400.0, -20.0))
            kind, service, before, after = manual
            self.tags.append(f"change_recorded_lag_{lag:g}s")
            return ("change", self.record(kind, service, before, after, lag)), ()
        self.tags.append("no_change_event")
        return entity, also


def _hallucination(d: _Draw, i: int, mode: str) -> Truth:
    suffix = ("-q4", "-q3_k_m", "-awq-int4", "-q4_0")[i % 4]
    temperature = (0.2, 0.9, 0.6)[i % 3] if mode != "silent" else 0.2
    share = (1.0, 0.8, 1.0, 0.65)[i % 4]
    model = RAG_MODEL + suffix
    if mode == "silent":
        d.tags.append("silent_provider_model_update")
    if share < 1:
        d.tags.append(f"canary_{share:g}")
    d.faults.append(Fault((RAG,), d.onset, _knobs(response_model_suffix=suffix,
                                                  temperature=temperature), share))
    also = (("model", f"temperature={temperature:g}"),) if temperature != 0.2 else ()
    # A person may record the swap against the gateway that serves the model.
    where = (RAG, "model-gateway")[i % 2]
    entity, also = d.cause(mode, ("model", model), also, (K.model_swap, RAG, model),
                           (K.model_swap, where, RAG_RESPONSE, model))
    return Truth("hallucination", (RAG,), entity, also)


def _retrieval_drift(d: _Draw, i: int, mode: str) -> Truth:
    version = f"idx-2024.{7 + i % 5:02d}.{i % 3}"
    embedding = (catalog.EMBEDDING_MODEL_LARGE, "text-embedding-ada-002")[i % 2]
    share = (1.0, 1.0, 0.7, 0.5)[i % 4]  # a blue/green index switch
    if share < 1:
        d.tags.append(f"canary_{share:g}")
    d.faults.append(Fault((RAG,), d.onset, _knobs(index_version=version,
                                                  index_embedding_model=embedding), share))
    entity, also = d.cause(mode, ("index", version), (("index", rag.DATA_SOURCE),),
                           (K.index_refresh, RAG, version),
                           (K.index_refresh, RAG, BASELINE.index_version, version))
    return Truth("retrieval_drift", (RAG,), entity, also)


def _coherence(d: _Draw, i: int, mode: str) -> Truth:
    decay = (0.06, 0.05, 0.08, 0.045)[i % 4]
    rise = (0.06, 0.0, 0.04, 0.05)[i % 4]
    knobs: dict[str, Any] = {"coherence_decay_per_turn": decay, "repetition_rise_per_turn": rise}
    manual = ((K.config, CHAT, "history_turns=8", "history_turns=40") if i % 2
              else (K.deploy, CHAT, BASE_VERSION, "1.5.0"))
    if mode != "silent" and manual[0] == K.deploy:
        knobs["service_version"] = "1.5.0"
    d.faults.append(Fault((CHAT,), d.onset, _knobs(**knobs)))
    entity, also = d.cause("recorded" if mode != "silent" else "silent", ("agent", CHAT), (),
                           None, manual)
    return Truth("coherence_degradation", (CHAT,), entity, also)


def _agent_loop(d: _Draw, i: int, mode: str) -> Truth:
    rate = (0.7, 0.4, 0.9, 0.5)[i % 4]
    limit = (50, 30, 40, 25)[i % 4]
    knobs: dict[str, Any] = {"loop_rate": rate, "max_iterations": limit}
    if mode != "silent":
        knobs["service_version"] = "1.5.0"
    d.faults.append(Fault((AGENTS,), d.onset, _knobs(**knobs)))
    entity, also = d.cause("recorded" if mode != "silent" else "silent",
                           ("tool", "web_search"), (("agent", agents.RESEARCH),), None,
                           (K.deploy, AGENTS, BASE_VERSION, "1.5.0"))
    return Truth("agent_loop", (AGENTS,), entity, also)


def _prompt_regression(d: _Draw, i: int, mode: str) -> Truth:
    service = (RAG, CHAT)[i % 2]
    share = (1.0, 0.5, 1.0, 0.35, 0.7)[i % 5]
    if share < 1:
        d.tags.append(f"canary_{share:g}")
    d.faults.append(Fault((service,), d.onset, _knobs(template_version="v7"), share))
    entity, also = d.cause(mode, ("template", "v7"), (), (K.prompt_template, service, "v7"),
                           (K.prompt_template, service, "v6", "v7"))
    return Truth("prompt_regression", (service,), entity, also)


def _context_overflow(d: _Draw, i: int, mode: str) -> Truth:
    top_k, chunk = ((48, 2800), (60, 2400), (40, 3400), (36, 3800), (52, 2600))[i % 5]
    d.faults.append(Fault((RAG,), d.onset, _knobs(top_k=top_k, chunk_tokens=chunk)))
    entity, also = d.cause("recorded" if mode != "silent" else "silent",
                           ("index", f"top_k={top_k}"), (("index", rag.DATA_SOURCE),), None,
                           (K.config, RAG, f"top_k={BASELINE.top_k}", f"top_k={top_k}"))
    return Truth("context_overflow", (RAG,), entity, also)


def _provider_error(d: _Draw, i: int, mode: str) -> Truth:
    provider = (catalog.OPENAI, catalog.ANTHROPIC)[i % 2]
    rate = (0.4, 0.6, 0.3, 0.5)[i % 4]
    callers = CALLERS[provider]
    d.faults.append(Fault(callers, d.onset, _knobs(failing_provider=provider,
                                                   provider_failure_rate=rate)))
    d.inference = i % 3 != 0
    d.tags.append("no_change_event")
    return Truth("provider_error", callers, ("provider", provider))


def _latency(d: _Draw, i: int, mode: str) -> Truth:
    service = (CHAT, RAG, AGENTS)[i % 3]
    latency, output = ((2.5, 2.5), (2.2, 1.0), (3.0, 1.5), (1.0, 2.6), (2.0, 2.0))[i % 5]
    knobs: dict[str, Any] = {"latency_factor": latency, "output_factor": output}
    manual = ((K.deploy, service, BASE_VERSION, "1.5.0") if i % 2
              else (K.config, service, "max_tokens=1024,stream=true",
                    "max_tokens=4096,stream=false"))
    if mode != "silent" and manual[0] == K.deploy:
        knobs["service_version"] = "1.5.0"
    d.faults.append(Fault((service,), d.onset, _knobs(**knobs)))
    entity, also = d.cause("recorded" if mode != "silent" else "silent", ("agent", service), (),
                           None, manual)
    return Truth("latency_cost_regression", (service,), entity, also)


BUILDERS = {
    "hallucination": _hallucination, "retrieval_drift": _retrieval_drift,
    "coherence_degradation": _coherence, "agent_loop": _agent_loop,
    "prompt_regression": _prompt_regression, "context_overflow": _context_overflow,
    "provider_error": _provider_error, "latency_cost_regression": _latency,
}


def _second(d: _Draw, primary: Truth, i: int) -> None:
    """A second fault at the same time in another service (no change event of its own;
    inferred when the appliance watches)."""
    home = primary.services[0] if len(primary.services) == 1 else None
    name = {RAG: "latency_cost_regression", CHAT: "agent_loop",
            AGENTS: "prompt_regression"}.get(home or "", "retrieval_drift")
    sd = _Draw(random.Random(f"second:{d.rng.random()}"), d.onset + d.rng.uniform(-20, 20))
    sd.inference = d.inference
    # index picked so the builder lands in another service than the primary's
    n = {"latency_cost_regression": 0, "prompt_regression": 1}.get(name, i)
    inferable = name in ("prompt_regression", "retrieval_drift")
    truth = BUILDERS[name](sd, n, "inferred" if d.inference and inferable else "silent")
    d.faults += sd.faults
    d.truths.append(replace(truth, role="secondary"))
    d.tags.append(f"two_faults_{name}")


def _confound(d: _Draw, kind: str, service: str) -> None:
    """A harmless change near the onset: nothing about it shows in the traffic, or its
    new value is healthy."""
    lag = d.rng.uniform(0, 40)
    if kind == "other_deploy":
        other = next(s for s in (AGENTS, RAG, CHAT) if s != service)
        d.record(K.deploy, other, BASE_VERSION, "1.5.0", lag, harmless=True)
    elif kind == "other_model_swap":
        other = CHAT if service != CHAT else AGENTS
        d.record(K.model_swap, other, "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", lag,
                 harmless=True)
    elif kind == "same_index_bump":  # a re-index with the same embedding model: healthy
        version = "idx-2024.06.2"
        d.faults.append(Fault((RAG,), d.onset - lag, _knobs(index_version=version)))
        if d.inference:
            d.harmless.append(_inferred(K.index_refresh, RAG, version))
        else:
            d.record(K.index_refresh, RAG, BASELINE.index_version, version, lag, harmless=True)
    elif kind == "other_config":
        other = next(s for s in (CHAT, AGENTS, RAG) if s != service)
        d.record(K.config, other, "retries=3", "retries=2", lag, harmless=True)
    d.tags.append(f"harmless_{kind}")


def _failure(group: str, i: int, seed: int) -> Spec:
    rng = random.Random(f"{group}:{i}:{seed}")
    onset = float(rng.randrange(300, 481, 10))
    d = _Draw(rng, onset)
    mode = ("inferred", "recorded", "silent", "inferred", "recorded")[i % 5]
    truth = BUILDERS[group](d, i, mode)
    d.truths.append(truth)
    home = truth.services[0] if len(truth.services) == 1 else RAG
    confounders = ["other_deploy", "other_model_swap", "two_faults", "same_index_bump",
                   "other_config", "none"]
    extra = confounders[(i + len(group)) % len(confounders)]
    if extra == "same_index_bump" and (home != RAG or group == "retrieval_drift"):
        extra = "other_deploy"
    if extra == "two_faults":
        _second(d, truth, i)
    elif extra != "none":
        _confound(d, extra, home)
    rate = round(rng.uniform(1.2, 2.0), 2)
    return Spec(f"{group}-{i:02d}", group, seed, rate, onset + AFTER_ONSET_S, onset,
                d.inference, tuple(d.faults), tuple(d.changes), tuple(d.truths),
                tuple(d.harmless), tuple(d.tags))


def _normal(i: int, seed: int) -> Spec:
    """Normal traffic and a harmless change: no case should open, nothing be blamed."""
    rng = random.Random(f"normal:{i}:{seed}")
    onset = float(rng.randrange(300, 481, 10))
    d = _Draw(rng, onset)
    service = SERVICES[i % 3]
    kind = ("deploy", "index_bump", "model_swap_record", "config", "deploy_and_index")[i % 5]
    if kind in ("deploy", "deploy_and_index"):
        d.faults.append(Fault((service,), onset, _knobs(service_version="1.5.0")))
        d.record(K.deploy, service, BASE_VERSION, "1.5.0", 0.0, harmless=True)
    if kind in ("index_bump", "deploy_and_index"):
        d.inference = True
        version = f"idx-2024.06.{2 + i % 3}"
        d.faults.append(Fault((RAG,), onset, _knobs(index_version=version)))
        d.harmless.append(_inferred(K.index_refresh, RAG, version))
    if kind == "model_swap_record":
        d.record(K.model_swap, service, "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", 10.0,
                 harmless=True)
    if kind == "config":
        d.record(K.config, service, "temperature=0.2", "temperature=0.3", 5.0, harmless=True)
    d.tags.append(f"harmless_{kind}")
    rate = round(rng.uniform(1.2, 2.0), 2)
    return Spec(f"normal-{i:02d}", "normal", seed, rate, onset + AFTER_ONSET_S, onset,
                d.inference, tuple(d.faults), tuple(d.changes), (), tuple(d.harmless),
                tuple(d.tags))


def _ambiguous(i: int, seed: int) -> Spec:
    """Cases whose right answer is "unable to determine root cause":

    * two changes land in the case's service at the same second and fit the symptom
      equally well, and nothing in the traffic tells them apart;
    * too little telemetry (a trace every few seconds for two minutes), filed by hand;
    * filed by hand on a healthy service, where only a harmless change happened."""
    rng = random.Random(f"ambiguous:{i}:{seed}")
    onset = float(rng.randrange(300, 481, 10))
    d = _Draw(rng, onset)
    rate, seconds = round(rng.uniform(1.2, 2.0), 2), onset + AFTER_ONSET_S
    kind = ("tie", "sparse", "healthy", "tie", "sparse", "healthy", "tie", "sparse",
            "healthy", "tie")[i % 10]
    if kind == "tie":
        d.inference = False
        service = (CHAT, RAG, AGENTS, CHAT)[i // 3 % 4]
        if i % 2:  # slower and wordier answers after a deploy and a config change at once
            d.faults.append(Fault((service,), onset, _knobs(latency_factor=2.4,
                                                            output_factor=2.0,
                                                            service_version="1.5.0")))
            d.record(K.deploy, service, BASE_VERSION, "1.5.0", 30.0)
            d.record(K.config, service, "max_tokens=1024", "max_tokens=4096", 30.0)
            d.truths.append(Truth("latency_cost_regression", (service,), None))
        else:  # chat answers degrade after a config change and a new template at once
            service = CHAT
            d.faults.append(Fault((CHAT,), onset, _knobs(coherence_decay_per_turn=0.06,
                                                         repetition_rise_per_turn=0.04)))
            d.record(K.config, CHAT, "history_turns=8", "history_turns=40", 30.0)
            d.record(K.prompt_template, CHAT, "chat-assistant v6 (system prompt A)",
                     "chat-assistant v6 (system prompt B)", 30.0)
            d.truths.append(Truth("coherence_degradation", (CHAT,), None))
    elif kind == "sparse":
        d.inference = False
        rate, seconds, onset = 0.2, 120.0, 80.0
        d.onset = onset
        group = ("hallucination", "retrieval_drift", "prompt_regression")[i // 3 % 3]
        t = BUILDERS[group](d, i, "silent")
        d.truths.append(Truth(None, t.services, None, filed=True, role="filed"))
        d.tags.append(f"sparse_{group}")
    else:
        service = (RAG, CHAT, AGENTS)[i // 3 % 3]
        d.record(K.deploy, service, BASE_VERSION, "1.5.0", 20.0, harmless=True)
        d.faults.append(Fault((service,), onset, _knobs(service_version="1.5.0")))
        d.truths.append(Truth(None, (service,), None, filed=True, role="filed"))
    d.tags.append(f"ambiguous_{kind}")
    return Spec(f"ambiguous-{i:02d}", "ambiguous", seed, rate, seconds, onset, d.inference,
                tuple(d.faults), tuple(d.changes), tuple(d.truths), tuple(d.harmless),
                tuple(d.tags))


def suite(per_type: int = 10, seed: int = 1) -> list[Spec]:
    """``per_type`` incidents of each failure type, then ``per_type`` ambiguous ones and
    ``per_type`` of normal traffic. Deterministic for a seed."""
    specs = [_failure(t, i, 1000 * seed + 37 * n + i) for n, t in enumerate(TYPES)
             for i in range(per_type)]
    specs += [_ambiguous(i, 1000 * seed + 500 + i) for i in range(per_type)]
    specs += [_normal(i, 1000 * seed + 700 + i) for i in range(per_type)]
    return specs


# ------------------------------------------------------------------ building one incident

class _FaultTraffic(Traffic):
    """The demo's traffic with several faults, each on its services from its onset, on
    a share of their traces (drawn from a stream of its own, so the apps' draws stay
    the same whatever the share)."""

    def __init__(self, sink: Sink, seed: int, faults: tuple[Fault, ...]) -> None:
        super().__init__(sink, seed)
        self.faults = faults
        self._canary = random.Random(f"{seed}:canary")

    def conditions(self, service: str, elapsed: float) -> Conditions:
        cond = BASELINE
        for f in self.faults:
            if service in f.services and elapsed >= f.at:
                if f.share < 1 and self._canary.random() >= f.share:
                    continue
                cond = replace(cond, **dict(f.knobs))
        return cond


def _replay(store: SpanStore, spec: Spec, start: datetime) -> None:
    t0 = start.timestamp()
    now = [t0]
    sink = Sink(lambda: StoreExporter(store, lambda: now[0]), batch=False)
    traffic = _FaultTraffic(sink, spec.seed, spec.faults)
    timing = random.Random(f"{spec.seed}:timing")
    elapsed = 0.0
    while elapsed < spec.seconds:
        now[0] = t0 + elapsed
        traffic.step(elapsed, int(now[0] * 1e9))
        elapsed += timing.expovariate(spec.rate)
    now[0] = t0 + spec.seconds
    sink.shutdown()


# What shapes the stored spans, change events and findings. The cache key is the spec and
# GENERATOR, not these sources (others change them daily, and a rebuild of the suite takes
# most of an hour on two cores): meta.json keeps their hash at build time, the bench
# reports it next to the current one, and ``--rebuild`` builds afresh.
GENERATOR = 1  # bump when the spec's meaning or the build changes
SOURCES = ("appliance/demo", "appliance/ingest", "appliance/changes", "appliance/detect")


def source_hash() -> str:
    h = hashlib.sha256()
    for top in SOURCES:
        for f in sorted((ROOT / top).rglob("*.py")):
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("TRACEHOLD_INCIDENT_CACHE")
                or Path.home() / ".cache" / "tracehold" / "rca-incidents")


def _key(spec: Spec) -> str:
    text = json.dumps(asdict(spec), sort_keys=True, default=str) + f"/{GENERATOR}"
    return f"{spec.id}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _resolve(ref: str, ids: dict[str, str], changes: list[dict[str, Any]]) -> str:
    if not ref.startswith("@"):
        return ref
    if ref.startswith("@inferred:"):
        _, kind, service, to = ref.split(":", 3)
        found = [c["id"] for c in changes if c["source"] == "inferred" and c["kind"] == kind
                 and c["service"] == service and c["to"] == to]
        return found[0] if found else f"(not inferred: {ref[10:]})"
    return ids[ref]


def _build(spec: Spec, folder: Path) -> dict[str, Any]:
    """Replay the spec into ``folder``, record its changes, run the detectors; returns
    what the evaluation needs (meta.json)."""
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    settings = Settings(data_dir=folder)
    store = SpanStore(folder / "spans.duckdb")
    try:
        records = Records.open(store, settings) if spec.inference else None
        _replay(store, spec, start)
        if records is None:
            records = Records.open(store, settings)
        ids = {}
        for c in spec.changes:
            body = {"kind": c.kind, "service": c.service, "from": c.before, "to": c.after,
                    "at": (start + timedelta(seconds=c.at)).isoformat()}
            ids[c.label] = str(records.changes.record(ChangeIn.model_validate(body),
                                                      "tester")["id"])
        changes = records.changes.list()
        onset = start + timedelta(seconds=spec.onset)
        end = start + timedelta(seconds=spec.seconds)
        since = max(onset - timedelta(seconds=DETECT_LEAD_S), start)
        found = first_detection(store, CFG, since, end)
    finally:
        store.close()

    def entity(e: tuple[str, str] | None) -> list[str] | None:
        return None if e is None else [e[0], _resolve(e[1], ids, changes)]

    return {
        "id": spec.id, "group": spec.group, "tags": list(spec.tags), "sources": source_hash(),
        "start": start.isoformat(), "onset": onset.isoformat(), "end": end.isoformat(),
        "detected_since": since.isoformat(),
        "truths": [{"failure_type": t.failure_type, "services": list(t.services),
                    "entity": entity(t.entity), "also": [entity(a) for a in t.also],
                    "filed": t.filed, "role": t.role} for t in spec.truths],
        "harmless": [_resolve(h, ids, changes) for h in spec.harmless],
        "changes": changes,
        "findings": [{"at": at.isoformat(), "case": f.as_case_request()} for at, f in found],
    }


def is_built(spec: Spec) -> bool:
    return (cache_dir() / _key(spec) / "meta.json").exists()


def built(spec: Spec, rebuild: bool = False) -> Path:
    """The cached folder of ``spec`` (built now when absent): spans.duckdb, meta.json."""
    folder = cache_dir() / _key(spec)
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if (folder / "meta.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.id}-", dir=folder.parent))
    try:
        meta = _build(spec, work)
        (work / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        for stray in ("audit-signing-key.pem", "audit-signing-key.pub.pem"):
            (work / stray).unlink(missing_ok=True)  # made again at open
        if folder.exists():  # built meanwhile by another process
            shutil.rmtree(work)
        else:
            work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------ opening the cases

@dataclass
class Case:
    """One case to diagnose with what it should be diagnosed as (None: a false case)."""

    incident: str
    group: str
    tags: list[str]
    case_id: str
    now: datetime
    truth: dict[str, Any] | None
    harmless: list[str]
    detected_type: str


@dataclass
class Opened:
    meta: dict[str, Any]
    records: Records
    cases: list[Case]
    missed: list[dict[str, Any]]  # truths no case opened for


@contextmanager
def opened(spec: Spec) -> Iterator[Opened]:
    """A working copy of the incident with its cases open: one per truth (the detectors'
    case in its service, of its type when there are several; a person's when filed),
    and every other finding as a false case."""
    folder = built(spec)
    meta = json.loads((folder / "meta.json").read_text())
    with tempfile.TemporaryDirectory(prefix=f"rca-{spec.id}-") as tmp:
        work = Path(tmp)
        for f in folder.iterdir():
            if f.name != "meta.json":
                shutil.copy2(f, work / f.name)
        store = SpanStore(work / "spans.duckdb")
        try:
            records = Records.open(store, Settings(data_dir=work))
            yield Opened(meta, records, *_open_cases(meta, records))
        finally:
            store.close()


def _open_cases(meta: dict[str, Any], records: Records) -> tuple[list[Case], list[dict[str, Any]]]:
    findings = list(meta["findings"])
    cases, missed = [], []
    end = datetime.fromisoformat(meta["end"])
    for truth in meta["truths"]:
        if truth["filed"]:
            onset = meta["onset"]
            kind = truth["failure_type"] or _filed_type(meta)
            case = records.cases.open(CaseOpen(service=truth["services"][0],
                                               failure_type=kind, onset_at=onset), "alice")
            cases.append(Case(meta["id"], meta["group"], meta["tags"], case.id, end, truth,
                              meta["harmless"], kind))
            continue
        mine = [f for f in findings if f["case"]["service"] in truth["services"]]
        pick = next((f for f in mine if f["case"]["failure_type"] == truth["failure_type"]),
                    mine[0] if mine else None)
        if pick is None:
            missed.append(truth)
            continue
        findings.remove(pick)
        cases.append(_case(meta, records, pick, truth))
        # The same fault seen in more services (a provider outage's blast radius): more
        # cases of the same incident, judged against the same truth.
        for more in [f for f in mine if f is not pick and f in findings
                     and f["case"]["failure_type"] == truth["failure_type"]]:
            findings.remove(more)
            cases.append(_case(meta, records, more, {**truth, "role": "blast_radius"}))
    cases += [_case(meta, records, f, None) for f in findings]
    return cases, missed


def _filed_type(meta: dict[str, Any]) -> str:
    """What a person suspects on a case filed by hand with no type to judge: the sparse
    fault's own type from the tags, else a hallucination report."""
    for tag in meta["tags"]:
        if tag.startswith("sparse_"):
            return tag.removeprefix("sparse_")
    return "hallucination"


def _case(meta: dict[str, Any], records: Records, finding: dict[str, Any],
          truth: dict[str, Any] | None) -> Case:
    case = records.cases.open(CaseOpen.model_validate(finding["case"]), "detector:t")
    return Case(meta["id"], meta["group"], meta["tags"], case.id,
                datetime.fromisoformat(finding["at"]), truth, meta["harmless"],
                finding["case"]["failure_type"])


def build_all(specs: list[Spec], rebuild: bool = False, progress: bool = False) -> None:
    """Build (or find cached) every incident."""
    for n, spec in enumerate(specs, 1):
        built(spec, rebuild)
        if progress:
            print(f"built {n}/{len(specs)} {spec.id}", flush=True)


if __name__ == "__main__":  # build the cache: python -m tests.rca_incidents [worker n]
    import sys

    worker, workers = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (0, 1)
    per_type, seed = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (10, 1)
    build_all(suite(per_type, seed)[worker::workers], progress=True)
