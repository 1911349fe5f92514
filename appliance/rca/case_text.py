"""The text that stands for a case in the knowledge base, for embedding.

One function (``compose``) writes it for a new case, a resolved case and a playbook, so
incidents of the same shape land near each other whatever service they hit. It keeps
only what transfers from one service to another: the failure type, each signal's name
and the way it moved against its baseline, the kind of entity the top hypothesis blames
and the kinds of change seen before the onset. Service names, model names, template
versions and ids are left out: they would pull a case toward others of the same service
rather than the same failure.

    retrieval drift. signals: retrieval score down; new index version.
    blamed: index. changes: documents, index refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from appliance.cases.model import Case, Signal

# Detector signal names carry how they were aggregated; the aggregate is not the shape.
_SUFFIXES = ("_median",)
# Categorical signals name a value that would identify the service (a model, a tool's
# arguments, the services hit): only their presence is kept.
_PRESENCE_ONLY = {"provider", "repeated_tool", "services_affected"}


def _words(name: str) -> str:
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name.replace("_", " ").strip()


def direction(signal: Signal) -> str | None:
    """``up`` or ``down`` against the baseline; None when it has none to compare with
    (a categorical signal such as a new model) or did not move."""
    value, base = signal.value, signal.baseline
    if isinstance(value, str) or isinstance(base, str) or value is None:
        return None
    base = 0.0 if base is None else base
    if value > base:
        return "up"
    if value < base:
        return "down"
    return None


def compose(failure_type: str, signals: Iterable[tuple[str, str | None]],
            blamed: str | None = None, change_kinds: Iterable[str] = ()) -> str:
    """The text for a failure type, its signals as (name, direction or None), the kind of
    entity blamed and the kinds of change before the onset; sorted, so the order a
    detector listed them in does not move the vector."""
    parts = sorted({f"{_words(n)} {d}" if d else _words(n) for n, d in signals})
    kinds = sorted({_words(k) for k in change_kinds if k})
    text = f"{_words(failure_type)}."
    if parts:
        text += f" signals: {'; '.join(parts)}."
    if blamed:
        text += f" blamed: {_words(blamed)}."
    if kinds:
        text += f" changes: {', '.join(kinds)}."
    return text


def _top_kind(case: Case) -> str | None:
    """The kind of entity the case's latest RCA run blamed first (``Diagnosis.as_dict``
    in its details), if it ran."""
    details: dict[str, Any] = case.rca.details if case.rca else {}
    hypotheses = details.get("hypotheses")
    if isinstance(hypotheses, list) and hypotheses and isinstance(hypotheses[0], dict):
        kind = hypotheses[0].get("kind")
        return kind if isinstance(kind, str) else None
    return None


def case_text(case: Case, failure_type: str | None = None, blamed: str | None = None) -> str:
    """The text of ``case``. ``failure_type`` and ``blamed`` (the top hypothesis' entity
    kind) come from a diagnosis just made; by default from the case's latest RCA run,
    else its detected type."""
    ftype = failure_type or (case.rca.failure_type if case.rca else None) or case.failure_type
    signals = [(s.name, None if s.name in _PRESENCE_ONLY else direction(s))
               for s in case.signals]
    changes = [c.kind for c in case.context.changes] if case.context else []
    return compose(str(ftype), signals, blamed or _top_kind(case), changes)
