"""The scenarios demo traffic can inject: every failure type of the taxonomy, and
``normal`` (a harmless deploy). Kept apart from scenarios.py so the CLI can offer the
names without loading the demo apps (``tests/unit/test_demo.py`` pins them to
``appliance.domain.taxonomy``)."""

from __future__ import annotations

from enum import StrEnum


class ScenarioName(StrEnum):
    hallucination = "hallucination"
    retrieval_drift = "retrieval_drift"
    coherence_degradation = "coherence_degradation"
    agent_loop = "agent_loop"
    prompt_regression = "prompt_regression"
    context_overflow = "context_overflow"
    provider_error = "provider_error"
    latency_cost_regression = "latency_cost_regression"
    normal = "normal"
