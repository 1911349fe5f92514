"""The GenAI content of a stored span, in one shape whatever library sent it.

Retrieved chunks are read from, in order:

1. the retrieved documents as ``appliance.ingest.retrieval.documents`` finds them (the
   same reading whose scores fill the ``retrieval_scores`` column the detectors judge):
   ``gen_ai.retrieval.documents`` (GenAI conventions), or ``tracehold.retrieval.documents``
   (what the demo sends): a list of ``{id, score, content|text}`` objects, structured or
   as JSON text, on the span or on one of its events;
2. or OpenInference's flattened ``retrieval.documents.<i>.document.{id,content,score}``;
3. ``tracehold.retrieval.chunks`` (a list of strings) beside the
   ``retrieval_scores`` column (``tracehold.retrieval.scores``);
4. only ``retrieval_scores``: one chunk per score, without content.

Messages (``gen_ai.input.messages`` / ``gen_ai.output.messages``) are JSON in the
current conventions (``[{role, parts: [{type, content}]}]``), ``[{role,
content}]`` in older ones, or plain text (OpenInference ``input.value``).
"""

from __future__ import annotations

import json
from typing import Any

from appliance.ingest.retrieval import documents, parse, score_of

TRACEHOLD_CHUNKS = "tracehold.retrieval.chunks"


def _chunk(doc: Any) -> dict[str, Any] | None:
    doc = parse(doc)
    if isinstance(doc, str):
        return {"id": None, "content": doc, "score": None}
    if not isinstance(doc, dict):
        return None
    content = doc.get("content", doc.get("text", doc.get("document.content")))
    return {"id": doc.get("id", doc.get("document.id")),
            "content": content if isinstance(content, str) else _text(content),
            "score": score_of(doc)}


def retrieved_chunks(span: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{id, content, score}]`` for a span dict as the span store returns it."""
    attrs: dict[str, Any] = span.get("attributes") or {}
    docs = documents(attrs, span.get("events") or [])
    if docs is not None:
        return [c for c in map(_chunk, docs) if c is not None]
    scores = span.get("retrieval_scores") or []
    texts = parse(attrs.get(TRACEHOLD_CHUNKS)) or []
    if not isinstance(texts, list):
        texts = [texts]
    n = max(len(scores), len(texts))
    return [{"id": None,
             "content": _text(texts[i]) if i < len(texts) else None,
             "score": scores[i] if i < len(scores) else None} for i in range(n)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # message parts
        return "\n".join(_text(p) for p in value)
    if isinstance(value, dict):
        for key in ("content", "text", "result", "response"):
            if key in value:
                return _text(value[key])
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def messages(value: str | None) -> list[dict[str, Any]]:
    """``[{role, content}]`` from a messages column; [] when there is none."""
    if not value:
        return []
    parsed = parse(value)
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list):
        return [{"role": None, "content": value}]
    out = []
    for m in parsed:
        if isinstance(m, dict):
            body = m.get("parts", m.get("content", m.get("text", m)))
            out.append({"role": m.get("role"), "content": _text(body)})
        else:
            out.append({"role": None, "content": _text(m)})
    return out


def with_content(span: dict[str, Any]) -> dict[str, Any]:
    """The span with ``retrieved_chunks`` added (what the trace view shows)."""
    span["retrieved_chunks"] = retrieved_chunks(span)
    return span
