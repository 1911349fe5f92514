"""The typed GenAI view of a span's decoded attributes, driven by ``conventions.FIELDS``.

* ``genai_columns``: one entry per ``conventions.FIELDS`` column, typed by the field's kind
  (str, int, float, list[str], list[float]): the first of the canonical attribute and then
  its aliases, in declared order, whose value converts (a single value becomes a
  one-element list; arrays/kvlists become JSON text for str); else None. ``operation``
  falls back to ``openinference.span.kind`` mapped by ``OPENINFERENCE_KINDS``.
* ``attribute_scores``: ``gen_ai.evaluation.<name>.score`` span attributes (evaluation
  events are read while building the row's events, in ``appliance.ingest.rows``).
* ``PROTECTED``: every attribute name that feeds a typed column, kept even beyond the
  attribute count limit (``appliance.ingest.limits``); ``feeds_column`` says the same of
  the names that follow a pattern (evaluation scores, OpenInference document scores).

The lookup tables are built once at import: per span, typing costs one set intersection
and a dict lookup per GenAI attribute present.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.ingest import conventions as cv

EVAL_PREFIX, EVAL_SUFFIX = "gen_ai.evaluation.", ".score"  # gen_ai.evaluation.<name>.score
OPERATION = cv.BY_COLUMN["operation"].column
PROTECTED = frozenset({name for field in cv.FIELDS for name in field.names}
                      | {cv.OPENINFERENCE_KIND, cv.EVALUATION_NAME, cv.EVALUATION_SCORE}
                      | set(cv.RETRIEVAL_DOCUMENTS.lists))
_DOCS = cv.RETRIEVAL_DOCUMENTS


def eval_name(key: str) -> str:
    """``<name>`` of a ``gen_ai.evaluation.<name>.score`` key, else ""."""
    if key.startswith(EVAL_PREFIX) and key.endswith(EVAL_SUFFIX):
        return key[len(EVAL_PREFIX):-len(EVAL_SUFFIX)]
    return ""


def feeds_column(key: str) -> bool:
    """A ``gen_ai.evaluation.<name>.score`` or ``retrieval.documents.<i>.document.score`` key."""
    return bool(eval_name(key)) or (key.startswith(_DOCS.flattened_prefix)
                                    and key.endswith(_DOCS.flattened_score))


def attribute_scores(attrs: dict[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for key, value in attrs.items():
        if (name := eval_name(key)) and (score := as_float(value)) is not None:
            scores[name] = score
    return scores


def genai_columns(attrs: dict[str, Any]) -> dict[str, Any]:
    """Typed GenAI columns: the first name (canonical, then aliases) whose value converts."""
    out = dict.fromkeys(_COLUMN_NAMES)
    aliases = []
    for name in attrs.keys() & _FIELD_NAMES:
        column, rank, python_type, convert = _BY_NAME[name]
        if rank:
            aliases.append((rank, name))
        else:
            raw = attrs[name]
            out[column] = raw if type(raw) is python_type else convert(raw)
    for _, name in sorted(aliases):
        column, _, python_type, convert = _BY_NAME[name]
        if out[column] is None:
            raw = attrs[name]
            out[column] = raw if type(raw) is python_type else convert(raw)
    if out[OPERATION] is None and isinstance(kind := attrs.get(cv.OPENINFERENCE_KIND), str):
        out[OPERATION] = cv.OPENINFERENCE_KINDS.get(kind.upper())
    return out


def as_str(v: Any) -> str | None:
    if isinstance(v, str) or v is None:
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int | float) else json.dumps(v, ensure_ascii=False)


def as_int(v: Any) -> int | None:
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            v = as_float(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return v if type(v) is int and -(2**63) <= v < 2**63 else None


def as_float(v: Any) -> float | None:
    if type(v) is int or type(v) is float:
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def as_str_list(v: Any) -> list[str | None] | None:
    if isinstance(v, list):
        return [as_str(item) for item in v]
    return None if (text := as_str(v)) is None else [text]


def as_float_list(v: Any) -> list[float] | None:
    if isinstance(v, str) and v.lstrip().startswith("["):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    values = [as_float(item) for item in (v if isinstance(v, list) else [v])]
    return None if any(item is None for item in values) else values  # type: ignore[return-value]


# kind -> (Python type passed through unconverted, converter)
_KIND: dict[str, tuple[type | None, Any]] = {
    "str": (str, as_str), "int": (int, as_int), "float": (float, as_float),
    "str_list": (None, as_str_list), "float_list": (None, as_float_list)}
_COLUMN_NAMES = tuple(field.column for field in cv.FIELDS)
_BY_NAME = {name: (field.column, rank, *_KIND[field.kind])
            for field in cv.FIELDS for rank, name in enumerate(field.names)}
_FIELD_NAMES = frozenset(_BY_NAME)
