"""A stored model call as the evaluators read it: the question (the last user message),
the answer (the output messages), and the context (chunks retrieved in the same trace,
else those on the call itself, else a "Context:" section of the prompt)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from appliance.evals.evaluators import Call
from appliance.store.genai_content import messages, retrieved_chunks

CONTEXT_MARKERS = ("\n\nContext:\n", "\nContext:\n", "\n\nContext:")


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


def call_of(span: dict[str, Any], retrieval_spans: Sequence[dict[str, Any]] = ()) -> Call:
    inputs = messages(span.get("input_messages"))
    outputs = messages(span.get("output_messages"))
    users = [m["content"] for m in inputs if m.get("role") in ("user", "human", None)]
    question = users[-1] if users else ""
    prompt_context = ""
    for marker in CONTEXT_MARKERS:
        if marker in question:
            question, prompt_context = question.split(marker, 1)
            break
    answer = "\n".join(m["content"] for m in outputs if m.get("role") != "tool")
    context = chunks_of(retrieval_spans) or chunks_of([span])
    if not context and prompt_context.strip():
        context = [line for line in prompt_context.splitlines()
                   if line.strip() and not line.startswith("[")]
    return Call(question.strip(), answer, context,
                "\n".join(m["content"] for m in inputs))
