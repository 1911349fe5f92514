"""Retrieved chunks and messages come out in one shape whatever library sent them."""

from __future__ import annotations

import json

import pytest

from appliance import pricing
from appliance.settings import DEFAULT_PRICES
from appliance.store.genai_content import messages, retrieved_chunks


def test_chunks_from_genai_documents_json_or_structured() -> None:
    docs = [{"id": "d1", "score": 0.9, "content": "alpha"}, {"id": "d2", "score": 0.5}]
    want = [{"id": "d1", "content": "alpha", "score": 0.9},
            {"id": "d2", "content": "", "score": 0.5}]
    assert retrieved_chunks({"attributes": {"gen_ai.retrieval.documents": json.dumps(docs)}}) \
        == want
    assert retrieved_chunks({"attributes": {"gen_ai.retrieval.documents": docs}}) == want
    on_event = {"attributes": {}, "events": [
        {"name": "x", "attributes": {"gen_ai.retrieval.documents": docs}}]}
    assert retrieved_chunks(on_event) == want


def test_chunks_from_openinference_flattened_attributes() -> None:
    attrs = {"retrieval.documents.1.document.content": "second",
             "retrieval.documents.1.document.score": 0.4,
             "retrieval.documents.0.document.content": "first",
             "retrieval.documents.0.document.id": "a",
             "retrieval.documents.0.document.score": 0.8}
    assert retrieved_chunks({"attributes": attrs}) == [
        {"id": "a", "content": "first", "score": 0.8},
        {"id": None, "content": "second", "score": 0.4}]


def test_chunks_from_tracehold_attributes_and_scores_only() -> None:
    span = {"attributes": {"tracehold.retrieval.chunks": ["one", "two"]},
            "retrieval_scores": [0.7, 0.6]}
    assert [c["content"] for c in retrieved_chunks(span)] == ["one", "two"]
    assert retrieved_chunks({"attributes": {}, "retrieval_scores": [0.3]}) == [
        {"id": None, "content": None, "score": 0.3}]
    assert retrieved_chunks({"attributes": {}}) == []


@pytest.mark.parametrize(("value", "want"), [
    (json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
     [{"role": "user", "content": "hi"}]),
    (json.dumps([{"role": "assistant", "content": "old style"}]),
     [{"role": "assistant", "content": "old style"}]),
    ("plain prompt text", [{"role": None, "content": "plain prompt text"}]),
    (None, []),
])
def test_messages(value: str | None, want: list[dict[str, object]]) -> None:
    assert messages(value) == want


@pytest.mark.parametrize(("model", "key"), [
    ("gpt-4o", "gpt-4o"), ("GPT-4o", "gpt-4o"), ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"), ("openai/gpt-4o-mini", "gpt-4o-mini"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"), ("llama-3.1-8b-instruct", "llama-3.1-8b"),
    ("gpt-4", None), ("gpt-4oo", None), ("mystery", None), (None, None), ("", None),
])
def test_price_resolution(model: str | None, key: str | None) -> None:
    hit = pricing.resolve(model, DEFAULT_PRICES)
    assert (hit[0] if hit else None) == key


def test_cost_arithmetic() -> None:
    assert pricing.cost(1_000_000, 500_000, DEFAULT_PRICES["gpt-4o"]) == pytest.approx(7.5)


def test_demo_documents_are_read_as_chunks() -> None:
    """The demo's rag-api sends tracehold.retrieval.documents as JSON text with `text`."""
    import json

    from appliance.store.genai_content import retrieved_chunks

    docs = [{"id": "doc-1#0", "score": 0.91, "text": "Section 4.2: carry over five days."}]
    span = {"attributes": {"tracehold.retrieval.documents": json.dumps(docs)},
            "retrieval_scores": [0.91]}
    assert retrieved_chunks(span) == [
        {"id": "doc-1#0", "content": "Section 4.2: carry over five days.", "score": 0.91}]
