"""The kinds of change event, declared once.

The API accepts these and no other, the CLI's help and docs/casework.md list them, and
change inference records three of them (``prompt_template``, ``index_refresh``,
``model_swap``). Root-cause analysis reads a change's kind to judge what it can explain:
``documents`` without a later ``index_refresh`` is the classic stale-index incident.
"""

from __future__ import annotations

from enum import StrEnum


class ChangeKind(StrEnum):
    deploy = "deploy"
    prompt_template = "prompt_template"
    index_refresh = "index_refresh"
    documents = "documents"
    model_swap = "model_swap"
    config = "config"
    other = "other"


DESCRIPTIONS: dict[ChangeKind, str] = {
    ChangeKind.deploy: "a new build or release of the service",
    ChangeKind.prompt_template: "a new prompt template version",
    ChangeKind.index_refresh: "the retrieval index was rebuilt or re-embedded, a new index "
                              "version",
    ChangeKind.documents: "the source documents behind an index changed (added, edited, "
                          "removed), whether or not the index was rebuilt since",
    ChangeKind.model_swap: "another model answers: a new model, version or quantization",
    ChangeKind.config: "a setting changed (temperature, top_k, limits, feature flags)",
    ChangeKind.other: "anything else worth seeing next to a chart",
}

# The names, in declared order (``in ChangeKind`` with a plain string raises TypeError
# on Python 3.11).
CHANGE_KINDS: tuple[str, ...] = tuple(k.value for k in ChangeKind)


def kinds_text() -> str:
    """``deploy, prompt_template, …, config or other``: for help texts."""
    return f"{', '.join(CHANGE_KINDS[:-1])} or {CHANGE_KINDS[-1]}"


def describe(kind: str) -> str:
    """What a kind means; "" for a name that is not one."""
    return DESCRIPTIONS[ChangeKind(kind)] if kind in CHANGE_KINDS else ""
