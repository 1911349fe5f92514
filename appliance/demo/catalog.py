"""The models and providers the demo apps call, with their performance profiles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    server: str
    context_window: int
    ttft_s: float  # median time to first token for a short prompt
    tokens_per_s: float  # decode speed
    prefill_tokens_per_s: float = 40_000.0  # long prompts delay the first token
    response_suffix: str = ""  # the dated snapshot a provider answers with


OPENAI = "openai"
ANTHROPIC = "anthropic"

GPT_4O = Model("gpt-4o", OPENAI, "api.openai.com", 128_000, 0.42, 62.0,
               response_suffix="-2024-08-06")
GPT_4O_MINI = Model("gpt-4o-mini", OPENAI, "api.openai.com", 128_000, 0.28, 105.0,
                    response_suffix="-2024-07-18")
CLAUDE = Model("claude-3-5-sonnet", ANTHROPIC, "api.anthropic.com", 200_000, 0.61, 55.0,
               response_suffix="-20241022")

CHAT_MODELS: tuple[Model, ...] = (GPT_4O, GPT_4O_MINI, CLAUDE)
PROVIDERS: tuple[str, ...] = (OPENAI, ANTHROPIC)

EMBEDDING_MODEL = "text-embedding-3-small"
EMBEDDING_MODEL_LARGE = "text-embedding-3-large"
