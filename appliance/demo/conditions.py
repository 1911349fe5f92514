"""The knobs the demo apps read for each trace. Defaults are a healthy system;
scenarios (scenarios.py) return changed copies once their onset has passed."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.demo import catalog

BASE_VERSION = "1.4.2"


@dataclass(frozen=True)
class Conditions:
    service_version: str = BASE_VERSION
    # rag-api: generation (a quantized model or a hot temperature costs groundedness)
    temperature: float = 0.2
    response_model_suffix: str = ""  # a gateway answering with a quantized variant ("-q4")
    # rag-api: retrieval (an index built with another embedding model retrieves poorly)
    index_version: str = "idx-2024.06.1"
    index_embedding_model: str = catalog.EMBEDDING_MODEL  # what the index was built with
    top_k: int = 5
    chunk_tokens: int = 512
    # rag-api and chat-svc: prompt template (see prompting.TEMPLATES for how each behaves)
    template_version: str = "v6"
    # chat-svc: quality over a conversation
    coherence_decay_per_turn: float = 0.0
    repetition_rise_per_turn: float = 0.0
    # agents-svc
    loop_rate: float = 0.0  # share of runs where the research agent repeats one tool call
    max_iterations: int = 50
    # every service
    failing_provider: str | None = None
    provider_failure_rate: float = 0.0
    latency_factor: float = 1.0
    output_factor: float = 1.0
    # Off (`--no-app-scores`): the apps send no evaluation scores and their retrievals no
    # similarity scores, so the built-in evaluators (appliance/evals/) carry detection alone.
    app_scores: bool = True
