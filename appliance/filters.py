"""The one place user-typed filter values are made safe for a query language.

SQL never sees a value pasted into its text: values go as DuckDB parameters,
and the only thing prepared here is the ILIKE *pattern* (so ``%`` and ``_``
typed by a user match themselves). PromQL has no parameters, so label values
are written as escaped string literals, and label names are checked against
the PromQL grammar. ``tests/unit/test_filters.py`` sends quotes, PromQL and SQL
fragments through every filter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from appliance.errors import InvalidRequest

LIKE_ESCAPE = "\\"  # use as: col ILIKE ? ESCAPE '\'
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def like_contains(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, wildcards in ``text`` taken literally."""
    escaped = (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
               .replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_"))
    return f"%{escaped}%"


def promql_string(value: str) -> str:
    """A double-quoted PromQL string literal that evaluates to exactly ``value``."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # control characters end a PromQL string
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def label_name(name: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise InvalidRequest(f"{name!r} is not a valid PromQL label name")
    return name


def label_matchers(filters: Mapping[str, str | None], *fixed: str) -> str:
    """``{name="value",...}`` for the filters that have a value, plus fixed matchers
    written by us (e.g. ``gen_ai_operation_name="chat"``)."""
    parts = list(fixed)
    parts += [f"{label_name(k)}={promql_string(v)}" for k, v in filters.items() if v]
    return "{" + ",".join(parts) + "}"
