"""What the evaluators read of a stored call, in the message shapes instrumentations
really send: OpenTelemetry's openai-v2 (latest GenAI conventions, content on the span)
records a RAG prompt's passages in the system message, which the reader must find as
the context, as it finds a user message's "Context:" section."""

from __future__ import annotations

import json

from appliance.evals.content import call_of

QUESTION = "How many days of annual leave does a new hire get?"
PASSAGES = ["Every full-time employee earns 28 days of paid annual leave per year.",
            "During the first year the leave is reduced in proportion to the start date."]
ANSWER = "A new hire earns 28 days of annual leave, prorated in the first year."
SYSTEM = "Answer only from the context.\n\nContext:\n" + "\n".join(PASSAGES)


def _parts(role: str, content: str, **extra: str) -> dict[str, object]:
    # exactly the shape opentelemetry-instrumentation-openai-v2 2.4b0 writes
    return {"role": role, "parts": [{"content": content, "type": "text"}], **extra}


def _span(inputs: list[dict[str, object]], attributes: dict[str, object] | None = None
          ) -> dict[str, object]:
    return {"input_messages": json.dumps(inputs, separators=(",", ":")),
            "output_messages": json.dumps([_parts("assistant", ANSWER, finish_reason="stop")]),
            "attributes": json.dumps(attributes or {}), "events": "[]"}


def test_an_openai_v2_call_s_system_message_passages_are_its_context() -> None:
    call = call_of(_span([_parts("system", SYSTEM), _parts("user", QUESTION)]))
    assert (call.question, call.answer, list(call.context)) == (QUESTION, ANSWER, PASSAGES)
    assert "Answer only from the context." in call.prompt


def test_a_developer_message_or_an_instruction_that_is_only_context() -> None:
    only = "Context:\n" + "\n".join(PASSAGES)
    for role in ("developer", "system"):
        call = call_of(_span([_parts(role, only), _parts("user", QUESTION)]))
        assert list(call.context) == PASSAGES, role


def test_system_instructions_attribute_of_newer_conventions() -> None:
    instructions = [{"type": "text", "content": SYSTEM}]
    for value in (json.dumps(instructions), instructions):  # JSON text or structured
        call = call_of(_span([_parts("user", QUESTION)],
                             {"gen_ai.system_instructions": value}))
        assert (call.question, list(call.context)) == (QUESTION, PASSAGES)
        assert "Answer only from the context." in call.prompt


def test_the_user_message_s_context_comes_first_and_no_context_stays_none() -> None:
    user = f"{QUESTION}\n\nContext:\nfrom the user"
    call = call_of(_span([_parts("system", SYSTEM), _parts("user", user)]))
    assert (call.question, list(call.context)) == (QUESTION, ["from the user"])
    plain = call_of(_span([_parts("system", "You are a helpful assistant."),
                           _parts("user", QUESTION)]))
    assert (plain.question, list(plain.context)) == (QUESTION, [])
