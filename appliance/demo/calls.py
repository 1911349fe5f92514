"""Model calls as a client library would trace them: one CLIENT span per attempt.

Failed attempts (429, 5xx, timeouts) are retried as sibling spans with
``http.request.resend_count``; a prompt over the model's window is refused
with ``context_length_exceeded`` and not retried. Time to first token grows
with the prompt (prefill) and decoding time with the output.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from appliance.demo.catalog import Model
from appliance.demo.conditions import Conditions
from appliance.demo.plan import SpanPlan, TraceBuilder

# (error.type, HTTP status or None for a client timeout, probability per attempt)
BASELINE_ERRORS: tuple[tuple[str, int | None, float], ...] = (
    ("429", 429, 0.015), ("503", 503, 0.007), ("500", 500, 0.004), ("timeout", None, 0.003),
)
# What an outage of one provider looks like: mostly throttling, some overload, some hangs.
OUTAGE_ERRORS: tuple[tuple[str, int | None, float], ...] = (
    ("429", 429, 0.55), ("503", 503, 0.30), ("timeout", None, 0.15),
)
CLIENT_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3
EVALUATION_EVENT = "gen_ai.evaluation.result"
LOWER_IS_BETTER = frozenset({"repetition"})


@dataclass
class ChatRequest:
    model: Model
    input_tokens: int
    output_tokens: int  # what the model would write if nothing cuts it short
    input_messages: list[dict[str, object]]
    output_text: str
    temperature: float = 0.7
    max_tokens: int = 1024
    finish_reason: str = "stop"
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass
class ChatResult:
    span: SpanPlan | None  # the successful attempt
    error: str | None  # error.type of the last failed attempt when none succeeded
    output_tokens: int = 0
    finish_reason: str = ""


def messages(*pairs: tuple[str, str]) -> list[dict[str, object]]:
    """GenAI-convention message list: role plus one text part each."""
    return [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in pairs]


def _draw_error(rng: random.Random, model: Model, cond: Conditions) -> tuple[str, int | None]:
    u, v = rng.random(), rng.random()  # always both, so other draws stay aligned
    if model.provider == cond.failing_provider and v < cond.provider_failure_rate:
        table, u = OUTAGE_ERRORS, u * sum(p for *_, p in OUTAGE_ERRORS)
    else:
        table = BASELINE_ERRORS
    acc = 0.0
    for error_type, status, p in table:
        acc += p
        if u < acc:
            return error_type, status
    return "", 200


def chat(tb: TraceBuilder, rng: random.Random, req: ChatRequest, cond: Conditions) -> ChatResult:
    m = req.model
    base: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": m.provider,
        "gen_ai.request.model": m.name, "gen_ai.request.temperature": req.temperature,
        "gen_ai.request.max_tokens": req.max_tokens, "server.address": m.server,
        "server.port": 443, "tracehold.model.context_window": m.context_window,
        **req.attributes,
    }
    error: str | None = None
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            tb.elapse(0.5 * 2 ** (attempt - 1) * rng.uniform(0.8, 1.2))  # client backoff
        with tb.span(f"chat {m.name}", SpanKind.CLIENT, base) as span:
            if attempt:
                span.set(http__request__resend_count=attempt)
            error_type, status = _draw_error(rng, m, cond)
            if req.input_tokens > m.context_window:
                tb.elapse(rng.uniform(0.08, 0.25))
                span.set(http__response__status_code=400)
                span.fail("context_length_exceeded",
                          f"{req.input_tokens} input tokens exceed the {m.context_window} window")
                return ChatResult(None, "context_length_exceeded")
            if error_type:
                _fail(tb, rng, span, error_type, status)
                error = error_type
                continue
            return _complete(tb, rng, span, req, cond)
    return ChatResult(None, error)


def _fail(tb: TraceBuilder, rng: random.Random, span: SpanPlan, error_type: str,
          status: int | None) -> None:
    if status is None:
        tb.elapse(CLIENT_TIMEOUT_S)
        span.fail(error_type, f"no response within {CLIENT_TIMEOUT_S:.0f}s")
        return
    tb.elapse(rng.uniform(0.05, 0.3) if status == 429 else rng.uniform(0.2, 1.5))
    span.set(http__response__status_code=status)
    span.fail(error_type, f"HTTP {status}")


def _complete(tb: TraceBuilder, rng: random.Random, span: SpanPlan, req: ChatRequest,
              cond: Conditions) -> ChatResult:
    m = req.model
    output, finish = max(1, int(req.output_tokens * cond.output_factor)), req.finish_reason
    room = min(req.max_tokens, m.context_window - req.input_tokens)
    if output > room:
        output, finish = max(room, 1), "length"
    ttft = (m.ttft_s * rng.lognormvariate(0, 0.3) * cond.latency_factor
            + req.input_tokens / m.prefill_tokens_per_s)
    decode = output / m.tokens_per_s * rng.lognormvariate(0, 0.15)
    tb.elapse(ttft + decode)
    response_model = (m.name + cond.response_model_suffix if cond.response_model_suffix
                      else m.name + m.response_suffix)
    span.set(
        gen_ai__response__model=response_model,
        gen_ai__response__id=f"resp-{rng.getrandbits(64):016x}",
        gen_ai__usage__input_tokens=req.input_tokens,
        gen_ai__usage__output_tokens=output,
        gen_ai__response__time_to_first_chunk=round(ttft, 4),
        gen_ai__response__finish_reasons=[finish],
        gen_ai__input__messages=json.dumps(req.input_messages),
        gen_ai__output__messages=json.dumps([{
            "role": "assistant", "parts": [{"type": "text", "content": req.output_text}],
            "finish_reason": finish,
        }]),
        http__response__status_code=200,
    )
    return ChatResult(span, None, output, finish)


def embeddings(tb: TraceBuilder, rng: random.Random, model_name: str, provider: Model,
               text_tokens: int, cond: Conditions) -> str | None:
    """One embeddings call (retried like chat); returns error.type if every attempt failed."""
    attrs: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": provider.provider,
        "gen_ai.request.model": model_name, "server.address": provider.server,
        "server.port": 443, "tracehold.embedding.model": model_name,
    }
    error: str | None = None
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            tb.elapse(0.5 * 2 ** (attempt - 1) * rng.uniform(0.8, 1.2))
        with tb.span(f"embeddings {model_name}", SpanKind.CLIENT, attrs) as span:
            if attempt:
                span.set(http__request__resend_count=attempt)
            error_type, status = _draw_error(rng, provider, cond)
            if error_type:
                _fail(tb, rng, span, error_type, status)
                error = error_type
                continue
            tb.elapse(rng.lognormvariate(-2.6, 0.3) * cond.latency_factor)  # ~75 ms
            span.set(gen_ai__response__model=model_name, gen_ai__usage__input_tokens=text_tokens,
                     http__response__status_code=200)
            return None
    return error


def evaluate(span: SpanPlan, scores: dict[str, float], response_id: AttributeValue) -> None:
    """Evaluation results as GenAI-convention events on the evaluated model call."""
    for name, score in scores.items():
        value = round(min(max(score, 0.0), 1.0), 3)
        good = value <= 0.3 if name in LOWER_IS_BETTER else value >= 0.7
        span.add_event(EVALUATION_EVENT, {
            "gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": value,
            "gen_ai.evaluation.score.label": "pass" if good else "fail",
            "gen_ai.response.id": response_id,
        })
