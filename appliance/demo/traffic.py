"""Which app sends the next trace, under which conditions.

Each app draws from its own seeded random stream and the mix from another,
so with a seed the sequence of traces (attributes, values, durations) is
reproducible, and a scenario changes nothing in services it does not target.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from typing import Protocol

from appliance.demo.agents import AgentsApp
from appliance.demo.chat import ChatApp
from appliance.demo.conditions import Conditions
from appliance.demo.plan import TraceBuilder
from appliance.demo.rag import RagApp
from appliance.demo.scenarios import BASELINE, Scenario
from appliance.demo.sink import Sink

MIX: dict[str, float] = {"rag-api": 0.4, "agents-svc": 0.2, "chat-svc": 0.4}


class App(Protocol):
    service: str

    def trace(self, tb: TraceBuilder, rng: random.Random, cond: Conditions) -> None: ...


@dataclass
class Sent:
    service: str
    spans: int
    scenario_active: bool


class Traffic:
    def __init__(self, sink: Sink, seed: int, scenario: Scenario | None = None,
                 at: float = 60.0, service: str | None = None, app_scores: bool = True) -> None:
        self.sink, self.scenario, self.at, self.app_scores = sink, scenario, at, app_scores
        self.target = scenario.target(service) if scenario else None
        apps: list[App] = [RagApp(), AgentsApp(), ChatApp()]
        self.apps = {a.service: a for a in apps}
        self._mix = random.Random(f"{seed}:mix")
        self._rngs = {name: random.Random(f"{seed}:{name}") for name in self.apps}
        self.traces: Counter[str] = Counter()

    def conditions(self, service: str, elapsed: float) -> Conditions:
        if self.scenario is None or self.target is None or elapsed < self.at:
            cond = BASELINE
        else:
            cond = self.scenario.conditions(service, self.target)
        return cond if self.app_scores else replace(cond, app_scores=False)

    def step(self, elapsed: float, end_ns: int) -> Sent:
        """Build and send one trace that ends at end_ns, `elapsed` seconds into the run."""
        service = self._mix.choices(list(MIX), list(MIX.values()))[0]
        cond = self.conditions(service, elapsed)
        tb = TraceBuilder()
        self.apps[service].trace(tb, self._rngs[service], cond)
        assert tb.root is not None
        spans = self.sink.emit(service, cond.service_version, tb.root, end_ns)
        self.traces[service] += 1
        return Sent(service, spans, self.scenario is not None and elapsed >= self.at)
