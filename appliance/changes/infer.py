"""Change events inferred from spans: a new ``prompt_template_version``,
``index_version`` or ``response_model`` showing up for a service is recorded
(source ``inferred``), from the service's previous value to the new one, at the
start of the first span that carried it.

Cheap enough to run after every ingest batch: an in-memory set of the (service,
kind, value) already seen, seeded once from the span store and the recorded
changes, means a batch costs one set lookup per span and field. The first value a
service ever shows is its baseline, not a change. Detectors can call ``observe``
with span rows or span dicts from the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from appliance.changes.store import ChangeIn, ChangeStore
from appliance.ingest.rows import SpanRow
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.changes")
ACTOR = "detector:change-inference"
WATCHED: dict[str, str] = {"prompt_template_version": "prompt_template",
                           "index_version": "index_refresh", "response_model": "model_swap"}


def _values(span: SpanRow | Mapping[str, Any]) -> tuple[str, datetime | None, dict[str, Any]]:
    if isinstance(span, SpanRow):
        return span.service_name, span.start_time, {c: span.genai.get(c) for c in WATCHED}
    return span["service_name"], span.get("start_time"), {c: span.get(c) for c in WATCHED}


class ChangeInference:
    def __init__(self, store: SpanStore, changes: ChangeStore) -> None:
        self.changes = changes
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str, str]] = set()
        self._last: dict[tuple[str, str], str] = {}
        self._seed(store)

    def _seed(self, store: SpanStore) -> None:
        for column, kind in WATCHED.items():  # newest value per service last
            for r in store.read(f'SELECT service_name AS s, "{column}" AS v, '
                                "max(start_time) AS t FROM spans "
                                f'WHERE "{column}" IS NOT NULL GROUP BY ALL ORDER BY t'):
                self._seen.add((r["s"], kind, r["v"]))
                self._last[(r["s"], kind)] = r["v"]
        for r in self.changes.seen_values():
            self._seen.add((r["service"], r["kind"], r["to_value"]))
            self._last[(r["service"], r["kind"])] = r["to_value"]

    def observe(self, spans: Iterable[SpanRow | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record a change for each value seen for the first time; returns the changes."""
        first: dict[tuple[str, str, str], datetime | None] = {}
        for span in spans:
            service, start, values = _values(span)
            for column, value in values.items():
                if value is None or value == "":
                    continue
                key = (service, WATCHED[column], str(value))
                if key in self._seen:  # unlocked read: a miss is re-checked below
                    continue
                earliest = first.get(key)
                if key not in first or (start and (earliest is None or start < earliest)):
                    first[key] = start
        if not first:
            return []
        todo: list[tuple[ChangeIn, datetime | None]] = []
        with self._lock:  # decide once, even when two batches race
            for (service, kind, value), start in sorted(first.items(),
                                                        key=lambda kv: str(kv[1])):
                if (service, kind, value) in self._seen:
                    continue
                self._seen.add((service, kind, value))
                previous = self._last.get((service, kind))
                self._last[(service, kind)] = value
                if previous is not None:
                    todo.append((ChangeIn(kind=kind, service=service, from_=previous, to=value,
                                          note="first seen in spans"), start))
        recorded = []
        for change, start in todo:
            change.at = start.isoformat() if start else None
            recorded.append(self.changes.record(change, ACTOR, source="inferred"))
        return recorded
