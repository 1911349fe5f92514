"""Failure scenarios: one per type of the GenAI failure taxonomy (docs/architecture.md), plus
`normal`, a harmless deploy. Each changes the *causes* the apps react to
(a quantized model, a re-built index, a new template, ...) on its target
service once its onset has passed; the apps produce the symptoms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from appliance.demo import agents, catalog, chat, rag
from appliance.demo.conditions import Conditions
from appliance.demo.names import ScenarioName
from appliance.errors import InvalidRequest

SERVICES: tuple[str, ...] = (rag.SERVICE, agents.SERVICE, chat.SERVICE)
BASELINE = Conditions()
ALL = "*"  # ground-truth service of a scenario that hits every service


@dataclass(frozen=True)
class Scenario:
    name: ScenarioName
    services: tuple[str, ...]  # services it can target; the first is the default
    change: Callable[[Conditions], Conditions]
    what: str
    everywhere: bool = False  # hits every service (provider_error)
    provider: str | None = None

    def target(self, service: str | None) -> str:
        """The service this run's scenario hits (ALL when it hits every one)."""
        if self.everywhere:
            if service is not None:
                raise InvalidRequest(f"{self.name} hits every service that calls "
                                  f"{self.provider}; --service does not apply")
            return ALL
        if service is None:
            return self.services[0]
        if service not in self.services:
            raise InvalidRequest(f"{self.name} can target {', '.join(self.services)}, "
                              f"not {service!r}")
        return service

    def conditions(self, service: str, target: str) -> Conditions:
        return self.change(BASELINE) if target in (ALL, service) else BASELINE


SCENARIOS: dict[ScenarioName, Scenario] = {s.name: s for s in (
    Scenario(ScenarioName.hallucination, (rag.SERVICE,),
             lambda c: replace(c, response_model_suffix="-q4", temperature=0.9),
             "the model gateway answers with a quantized model at a higher temperature"),
    Scenario(ScenarioName.retrieval_drift, (rag.SERVICE,),
             lambda c: replace(c, index_version="idx-2024.07.0",
                               index_embedding_model=catalog.EMBEDDING_MODEL_LARGE),
             "the index is rebuilt with another embedding model than queries use"),
    Scenario(ScenarioName.coherence_degradation, (chat.SERVICE,),
             lambda c: replace(c, coherence_decay_per_turn=0.06, repetition_rise_per_turn=0.06),
             "answers lose coherence and repeat themselves as conversations go on"),
    Scenario(ScenarioName.agent_loop, (agents.SERVICE,),
             lambda c: replace(c, loop_rate=0.7),
             "the research agent repeats one tool call until the iteration limit"),
    Scenario(ScenarioName.prompt_regression, (rag.SERVICE, chat.SERVICE),
             lambda c: replace(c, template_version="v7"),
             "prompt template v6 -> v7 brings refusals and format errors"),
    Scenario(ScenarioName.context_overflow, (rag.SERVICE,),
             lambda c: replace(c, top_k=48, chunk_tokens=2800),
             "top_k 5 -> 48 and bigger chunks fill the model's context window"),
    Scenario(ScenarioName.provider_error, SERVICES,
             lambda c: replace(c, failing_provider=catalog.OPENAI, provider_failure_rate=0.4),
             "openai answers 429/503 or times out on 40% of calls", everywhere=True,
             provider=catalog.OPENAI),
    Scenario(ScenarioName.latency_cost_regression, (chat.SERVICE, rag.SERVICE, agents.SERVICE),
             lambda c: replace(c, latency_factor=2.5, output_factor=2.5),
             "time to first token and output tokens x2.5, errors unchanged"),
    Scenario(ScenarioName.normal, (chat.SERVICE, rag.SERVICE, agents.SERVICE),
             lambda c: replace(c, service_version="1.5.0"),
             "a deploy: service.version changes, nothing else"),
)}
