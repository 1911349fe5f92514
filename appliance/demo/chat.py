"""`chat-svc`: a chat assistant over two providers and three models. Each trace
is one turn of a conversation; the history grows the prompt turn by turn."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from appliance.demo import calls, catalog, corpus, prompting
from appliance.demo.conditions import Conditions
from appliance.demo.plan import TraceBuilder

SERVICE = "chat-svc"
TEMPLATE_ID = "chat-assistant"
MODEL_WEIGHTS = (0.35, 0.4, 0.25)  # gpt-4o, gpt-4o-mini, claude-3-5-sonnet
MAX_OPEN = 20


@dataclass
class Conversation:
    id: str
    model: catalog.Model
    turns: int
    turn: int = 0


class ChatApp:
    service = SERVICE

    def __init__(self) -> None:
        self.open: list[Conversation] = []

    def _next_turn(self, rng: random.Random) -> Conversation:
        if self.open and (len(self.open) >= MAX_OPEN or rng.random() < 0.7):
            conv = rng.choice(self.open)
        else:
            conv = Conversation(str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                rng.choices(catalog.CHAT_MODELS, MODEL_WEIGHTS)[0],
                                rng.randint(1, 12))
            self.open.append(conv)
        conv.turn += 1
        if conv.turn >= conv.turns:
            self.open.remove(conv)
        return conv

    def trace(self, tb: TraceBuilder, rng: random.Random, cond: Conditions) -> None:
        conv = self._next_turn(rng)
        prompt, answer = rng.choice(corpus.CHAT_PROMPTS)
        history = sum(rng.randint(140, 260) for _ in range(conv.turn - 1))
        refused, malformed = prompting.draw(rng, cond.template_version)
        repeats = min(conv.turn, 5) if cond.repetition_rise_per_turn else 0
        text = corpus.REFUSAL if refused else " ".join([answer] + [corpus.REPEATED] * repeats)
        turn_attrs: dict[str, AttributeValue] = {
            "gen_ai.conversation.id": conv.id, "tracehold.conversation.turn": conv.turn,
            "tracehold.prompt.template.version": cond.template_version}
        http = {"http.request.method": "POST", "http.route": "/v1/chat"}
        with tb.span("POST /v1/chat", SpanKind.SERVER, {**http, **turn_attrs}) as root:
            tb.elapse(rng.uniform(0.002, 0.008))  # load history
            req = calls.ChatRequest(
                model=conv.model, input_tokens=150 + history + rng.randint(15, 80),
                output_tokens=(rng.randint(8, 20) if refused
                               else int(rng.lognormvariate(0, 0.45) * 160)),
                input_messages=calls.messages(
                    ("system", f"You are a helpful assistant. ({TEMPLATE_ID} "
                               f"{cond.template_version})"),
                    ("user", prompt)),
                output_text=text, temperature=0.7, max_tokens=2048,
                finish_reason="content_filter" if refused else "stop", attributes=turn_attrs,
            )
            result = calls.chat(tb, rng, req, cond)
            if result.span is None:
                root.set(http__response__status_code=503)
                root.fail(result.error or "unknown")
                return
            decay = cond.coherence_decay_per_turn * conv.turn
            scores = {  # drawn either way: the flag leaves the rest of the traffic as it was
                "coherence": rng.gauss(0.9, 0.03) - decay,
                "relevance": rng.gauss(0.87, 0.04) - 0.9 * decay - (0.7 if refused else 0.0),
                "repetition": rng.gauss(0.06, 0.02) + cond.repetition_rise_per_turn * conv.turn,
            }
            if cond.app_scores:
                calls.evaluate(result.span, scores, result.span.attributes["gen_ai.response.id"])
            if not refused and not prompting.parse_answer(tb, rng, TEMPLATE_ID,
                                                          cond.template_version, malformed):
                root.set(http__response__status_code=502)
                root.fail("format_error")
                return
            tb.elapse(rng.uniform(0.002, 0.006))  # store history
            root.set(http__response__status_code=200)
