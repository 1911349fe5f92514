"""A panel is one box of a page; a backend that fails is that panel's message, not the page's.

Every backend call raises ``BackendDown`` (cannot connect, 5xx) or ``BackendError``
(it answered, but refused the question) with the backend's name. ``panel()``
turns them into an ``st.warning`` / ``st.error`` inside the panel; nothing is
cached on failure, so the next rerun (auto-refresh or any click) tries again
and the panel recovers as soon as the backend is back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from appliance.console.safe_text import md

log = logging.getLogger("tracehold.console")


class BackendDown(Exception):
    """A backend did not answer (stopped, unreachable, overloaded)."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} is unavailable ({detail})")
        self.backend, self.detail = backend, detail


class BackendError(Exception):
    """A backend answered with an error about the question itself."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} refused the query: {detail}")
        self.backend, self.detail = backend, detail


def down_message(title: str, exc: BackendDown) -> str:
    return (f"**{md(title)}**: {md(exc.backend)} is down or unreachable ({md(exc.detail)}). "
            "This panel will recover by itself once it is back.")


@contextmanager
def panel(title: str, border: bool = True) -> Iterator[None]:
    """``with panel("Latency"): ...`` draws a titled box; failures stay inside it."""
    with st.container(border=border):
        st.markdown(f"**{title}**")
        try:
            yield
        except BackendDown as exc:
            st.warning(down_message(title, exc), icon=":material/warning:")
        except BackendError as exc:
            st.error(f"**{md(title)}**: {md(exc, 400)}", icon=":material/error:")
        except Exception as exc:  # a bug must not take the page down; the log has the trace
            log.exception("panel %r failed", title)
            st.error(f"**{md(title)}**: this panel failed ({md(type(exc).__name__)}: "
                     f"{md(exc, 300)})", icon=":material/error:")
