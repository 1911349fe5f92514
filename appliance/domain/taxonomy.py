"""The GenAI failure taxonomy (docs/architecture.md), declared once.

Detectors report one of these types, cases are filed under them and the RCA
engine classifies into them. It sits below detect and cases so both import it
and neither imports the other for it.
"""

from __future__ import annotations

from enum import StrEnum


class FailureType(StrEnum):
    hallucination = "hallucination"
    retrieval_drift = "retrieval_drift"
    coherence_degradation = "coherence_degradation"
    agent_loop = "agent_loop"
    prompt_regression = "prompt_regression"
    context_overflow = "context_overflow"
    provider_error = "provider_error"
    latency_cost_regression = "latency_cost_regression"


# The names, in declared order, for membership tests and choice lists (``in FailureType``
# with a plain string raises TypeError on Python 3.11).
FAILURE_TYPES: tuple[str, ...] = tuple(t.value for t in FailureType)
