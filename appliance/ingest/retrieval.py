"""Retrieved documents in each library's form (``conventions.RETRIEVAL_DOCUMENTS``), and
the retrieval scores they carry.

* ``documents``: the documents of a span as sent, the first form present in this order:
  each listed attribute (``gen_ai.retrieval.documents``, then
  ``tracehold.retrieval.documents``) on the span, then on one of its events; then
  OpenInference's flattened ``retrieval.documents.<i>.document.<field>``, as one
  ``{field: value}`` dict per index in index order. A list sent as JSON text is parsed;
  an item may be an object or a plain string (content only).
* ``scores``: the score of each document that has one (a number, or a number as text;
  not a bool, not NaN or infinite), in document order; None when none has.
* ``document_scores``: ``scores(documents(...))``, what fills the ``retrieval_scores``
  column when a span sends no plain list of scores (``appliance.ingest.rows``).

The console's chunk view (``appliance.store.genai_content``) reads the same documents, so
the chunks it shows and the signal the detectors judge come from one reading.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from appliance.ingest.conventions import BY_COLUMN
from appliance.ingest.conventions import RETRIEVAL_DOCUMENTS as DOCS
from appliance.ingest.genai import as_float

COLUMN = BY_COLUMN["retrieval_scores"].column  # the column document scores fill
_FLATTENED = re.compile(DOCS.flattened)


def parse(value: Any) -> Any:
    """A JSON text parsed (the value itself when it is not one)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def may_have_documents(keys: str) -> bool:
    """Cheap test on a span's attribute names joined by newlines: could one be a
    document attribute? (Most spans carry none.)"""
    return DOCS.flattened_prefix in keys or any(name in keys for name in DOCS.lists)


def documents(attrs: Mapping[str, Any],
              events: Sequence[Mapping[str, Any]] = ()) -> list[Any] | None:
    """The span's documents as sent (see the module docstring); None when it has none."""
    for name in DOCS.lists:
        if name in attrs:
            return _listed(attrs[name])
        for event in events:
            if name in (event_attrs := event.get("attributes") or {}):
                return _listed(event_attrs[name])
    flat: dict[int, dict[str, Any]] = {}
    if DOCS.flattened_prefix not in "\n".join(attrs):  # most spans: no key to match
        return None
    for key, value in attrs.items():
        if key.startswith(DOCS.flattened_prefix) and (m := _FLATTENED.fullmatch(key)):
            flat.setdefault(int(m[1]), {})[m[2]] = value
    return [doc for _, doc in sorted(flat.items())] if flat else None


def _listed(value: Any) -> list[Any]:
    value = parse(value)
    return [parse(item) for item in value] if isinstance(value, list) else []


def score_of(doc: Any) -> float | None:
    """A document's score (the first of ``DOCS.score`` it has): a finite number, or a
    number as text; else None."""
    if not isinstance(doc, dict):
        return None
    raw = next((doc[key] for key in DOCS.score if key in doc), None)
    score = None if isinstance(raw, bool) else as_float(raw)
    return score if score is not None and math.isfinite(score) else None


def scores(docs: Sequence[Any] | None) -> list[float] | None:
    """The score of each document that has one; None when none has."""
    found = [s for doc in docs or () if (s := score_of(doc)) is not None]
    return found or None


def document_scores(attrs: Mapping[str, Any],
                    events: Sequence[Mapping[str, Any]] = ()) -> list[float] | None:
    return scores(documents(attrs, events))
