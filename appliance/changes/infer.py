"""Change events inferred from spans: a new prompt template version, index version or
answering model showing up for a service is recorded (source ``inferred``), from the
value it replaces to the new one, at the start of the first span that carried it.

What is *not* a change:

* **The first value of a slot is its baseline.** A slot is a service and a kind, and for
  two kinds also the thing the value belongs to (``Watched.within``): the model that
  answers is judged per requested model (a service that routes between three models uses
  three at once, and its embedding calls answer with another model than its chat calls),
  an index version per data source. So a fresh start, or a service seen for the first
  time, records nothing, however many models or indexes it uses.
* **A value seen before in the slot** (a canary flipping between two versions records one
  change, not one per flip).
* **A value older than the slot's current one** (a batch delivered late: the spans of
  an old version arriving after the new version's).

The baseline persists: at start the inference is seeded from the span store (every
value each slot still has spans of; the newest one is current), so a restarted daemon
records no change for a value it had already seen. A slot whose spans have all aged out
(``span_retention_days``) starts from a new baseline.

Cheap enough to run after every ingest batch: a batch costs one set lookup per span and
watched column. Detectors can call ``observe`` with span rows or span dicts from the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.changes.store import ChangeIn, ChangeStore
from appliance.domain.change_kinds import ChangeKind
from appliance.ingest.rows import SpanRow
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.changes")
ACTOR = "detector:change-inference"


@dataclass(frozen=True)
class Watched:
    """A span column whose new value is a change of ``kind``; judged per service, and per
    value of the ``within`` column when there is one."""

    column: str
    kind: ChangeKind
    within: str | None = None


WATCHED: tuple[Watched, ...] = (
    Watched("prompt_template_version", ChangeKind.prompt_template),
    Watched("index_version", ChangeKind.index_refresh, within="data_source_id"),
    Watched("response_model", ChangeKind.model_swap, within="request_model"),
)
_COLUMNS = tuple({name for w in WATCHED for name in (w.column, w.within) if name})
_EARLIEST = datetime.min.replace(tzinfo=UTC)

Slot = tuple[str, ChangeKind, str | None]  # service, kind, value of `within` (or None)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _values(span: SpanRow | Mapping[str, Any]) -> tuple[str, datetime | None, dict[str, Any]]:
    if isinstance(span, SpanRow):
        return span.service_name, span.start_time, {c: span.genai.get(c) for c in _COLUMNS}
    return span["service_name"], span.get("start_time"), {c: span.get(c) for c in _COLUMNS}


def _note(w: Watched, scope: str | None) -> str:
    return f"first seen in spans ({w.within} {scope})" if scope else "first seen in spans"


class ChangeInference:
    def __init__(self, store: SpanStore, changes: ChangeStore) -> None:
        self.changes = changes
        self._lock = threading.Lock()
        # every value each slot has shown, with the start of its first span (None: unknown)
        self._first: dict[tuple[Slot, str], datetime | None] = {}
        # each slot's current value: the one with the latest span, and that span's start
        self._latest: dict[Slot, tuple[str, datetime | None]] = {}
        self._seed(store)

    def _seed(self, store: SpanStore) -> None:
        """Every value each slot has spans of; the one with the latest span is current."""
        for w in WATCHED:
            scope = f'CAST("{w.within}" AS VARCHAR)' if w.within else "NULL"
            for r in store.read(
                    f'SELECT service_name AS s, {scope} AS scope, CAST("{w.column}" AS VARCHAR)'
                    " AS v, min(start_time) AS first, max(start_time) AS last FROM spans "
                    f'WHERE "{w.column}" IS NOT NULL GROUP BY ALL ORDER BY last'):
                if (value := _text(r["v"])) is None:
                    continue
                slot: Slot = (r["s"], w.kind, _text(r["scope"]))
                self._first[(slot, value)] = r["first"]
                self._latest[slot] = (value, r["last"])

    def observe(self, spans: Iterable[SpanRow | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record a change for each value that replaces a slot's current one (see the
        module's docstring for what is not a change); returns the changes recorded."""
        seen: dict[tuple[Slot, str], tuple[datetime | None, datetime | None, Watched]] = {}
        for span in spans:
            service, start, values = _values(span)
            for w in WATCHED:
                if (value := _text(values[w.column])) is None:
                    continue
                key = ((service, w.kind, _text(values[w.within]) if w.within else None), value)
                if (got := seen.get(key)) is None:
                    seen[key] = (start, start, w)
                elif start is not None:
                    first, last, _ = got
                    seen[key] = (start if first is None or start < first else first,
                                 start if last is None or start > last else last, w)
        if not seen:
            return []
        todo: list[tuple[ChangeIn, datetime | None]] = []
        with self._lock:  # decide once, even when two batches race
            for (slot, value), (first, last, w) in sorted(seen.items(), key=_by_start):
                latest = self._latest.get(slot)
                if (slot, value) in self._first:  # shown before: only the current one moves
                    if latest is not None and _later(last, latest[1]):
                        self._latest[slot] = (value, last)
                    continue
                self._first[(slot, value)] = first
                if latest is None:  # the slot's baseline
                    self._latest[slot] = (value, last)
                    continue
                previous, _ = latest
                since = self._first.get((slot, previous))
                if first is not None and since is not None and first < since:
                    continue  # older than the current value: late delivery, not a change
                self._latest[slot] = (value, last) if _later(last, latest[1]) else latest
                service, kind, scope = slot
                todo.append((ChangeIn(kind=kind, service=service, from_=previous, to=value,
                                      note=_note(w, scope)), first))
        recorded = []
        for change, start in todo:
            change.at = start.isoformat() if start else None
            recorded.append(self.changes.record(change, ACTOR, source="inferred"))
        return recorded


def _later(a: datetime | None, b: datetime | None) -> bool:
    """``a`` is after ``b`` (a time not known counts as now: spans handed in without one)."""
    return a is None or (b is not None and a >= b)


def _by_start(item: tuple[tuple[Slot, str], tuple[datetime | None, Any, Any]]
              ) -> tuple[bool, datetime]:
    """Oldest first; values without a start time last, in the order they came."""
    first = item[1][0]
    return first is None, first or _EARLIEST
