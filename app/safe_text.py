"""Span content is untrusted: it must show as text, never act as Markdown.

Streamlit renders Markdown in st.markdown, captions, labels and st.table cells;
a prompt containing ``![x](http://elsewhere/)`` would make the browser fetch an
image from another host. Long content goes to ``st.code`` (plain text);
short values that sit inside Markdown go through ``md`` (escaped, and with
autolinks broken by a zero-width space).
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&\"'])")


def md(value: object, limit: int = 200) -> str:
    """``value`` as literal Markdown text on one line, cut at ``limit`` characters."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # escaping alone does not stop GFM's autolinks: break "://" and "www." apart
    text = text.replace("://", ":\u200b//").replace("www.", "www\u200b.")
    return _SPECIAL.sub(r"\\\1", text)
