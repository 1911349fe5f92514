"""A stored model call as the evaluators read it: the question (the last user message),
the answer (the output messages), and the context (chunks retrieved in the same trace,
else those on the call itself, else a "Context:" section of the prompt: of the last user
message, else of a system or developer message or ``gen_ai.system_instructions``).

RAG apps put the passages in the system message as often as in the user's: OpenTelemetry's
openai-v2 instrumentation, for one, records the system message as the first entry of
``gen_ai.input.messages``; newer GenAI conventions move it to ``gen_ai.system_instructions``
(``[{type, content}]`` parts, no role)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from appliance.evals.evaluators import Call
from appliance.store.genai_content import messages, retrieved_chunks

CONTEXT_MARKERS = ("\n\nContext:\n", "\nContext:\n", "\n\nContext:")
CONTEXT_HEAD = "Context:"
INSTRUCTION_ROLES = ("system", "developer")
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"


def _parsed(value: Any, empty: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return empty
    return value if value is not None else empty


def span_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A ``store.read`` row with its JSON columns parsed, as genai_content expects."""
    return {**row, "attributes": _parsed(row.get("attributes"), {}),
            "events": _parsed(row.get("events"), [])}


def chunks_of(spans: Sequence[dict[str, Any]]) -> list[str]:
    """Text of every retrieved chunk on these spans, in order, without repeats."""
    out: list[str] = []
    for span in spans:
        out.extend(c["content"] for c in retrieved_chunks(span_dict(span))
                   if isinstance(c.get("content"), str) and c["content"].strip())
    return list(dict.fromkeys(out))


def _split_context(text: str, head: bool = False) -> tuple[str, str]:
    """(the text before its "Context:" section, the section); (text, "") when it has none.
    ``head``: the section may also open the text (an instruction that is only context)."""
    if head and text.startswith(CONTEXT_HEAD):
        return "", text[len(CONTEXT_HEAD):]
    for marker in CONTEXT_MARKERS:
        if marker in text:
            before, after = text.split(marker, 1)
            return before, after
    return text, ""


def _system_instructions(span: dict[str, Any]) -> list[str]:
    """Text of the span's ``gen_ai.system_instructions`` (structured or JSON text)."""
    attrs = span_dict(span)["attributes"]
    value = attrs.get(SYSTEM_INSTRUCTIONS) if isinstance(attrs, dict) else None
    if value is None:
        return []
    return [m["content"] for m in
            messages(value if isinstance(value, str) else json.dumps(value))]


def call_of(span: dict[str, Any], retrieval_spans: Sequence[dict[str, Any]] = ()) -> Call:
    inputs = messages(span.get("input_messages"))
    outputs = messages(span.get("output_messages"))
    users = [m["content"] for m in inputs if m.get("role") in ("user", "human", None)]
    system = _system_instructions(span)
    instructions = [m["content"] for m in inputs if m.get("role") in INSTRUCTION_ROLES] + system
    question, prompt_context = _split_context(users[-1] if users else "")
    for instruction in [] if prompt_context.strip() else instructions:
        prompt_context = _split_context(instruction, head=True)[1]
        if prompt_context.strip():
            break
    answer = "\n".join(m["content"] for m in outputs if m.get("role") != "tool")
    context = chunks_of(retrieval_spans) or chunks_of([span])
    if not context and prompt_context.strip():
        context = [line for line in prompt_context.splitlines()
                   if line.strip() and not line.startswith("[")]
    return Call(question.strip(), answer, context,
                "\n".join([*system, *(m["content"] for m in inputs)]))
