"""Size limits applied while decoding OTLP trace exports.

Limits exist so one hostile or buggy client cannot exhaust the daemon's memory or
bloat the span store; they are tuned so that real GenAI traffic (long prompts,
many attributes) passes untouched. Nothing here rejects a batch except the body
size: everything else truncates, because the collector drops a rejected batch
for good (it retries only 429/502/503/504).

Body (``max_body_bytes``, default 128 MiB)
    Checked on the body as received and again on the decompressed body. Gzip is
    inflated incrementally and stops as soon as the output passes the limit, so
    a gzip bomb costs at most ``max_body_bytes`` of memory. Over the limit ->
    ``PayloadTooLarge``.

Attributes per span (``max_attributes_per_span``, default 1024)
    The first N attributes in wire order are kept and the rest dropped, except
    that an attribute that feeds a typed column is ALWAYS kept even beyond N:
    every name in ``conventions.FIELDS`` (canonical and aliases),
    ``conventions.OPENINFERENCE_KIND``, ``gen_ai.evaluation.<name>.score``, the
    retrieved-document lists of ``conventions.RETRIEVAL_DOCUMENTS`` and
    OpenInference's ``retrieval.documents.<i>.document.score``.
    The number dropped is added to the span's ``dropped_attributes_count``. The
    same count limit applies to resource, event and link attributes (for those
    the drop is not recorded).

Attribute value size (``max_attribute_value_bytes``, default 256 KiB)
    A string (or bytes) value longer than the limit in UTF-8 bytes is cut at a
    UTF-8 character boundary at or below the limit and suffixed with
    ``"…[truncated N bytes]"``, N being the number of bytes cut. This applies to
    strings nested in arrays and key-value lists, to span names and status
    messages too. The value is not counted as dropped.

Events per span (``max_events_per_span``, default 1024)
    The first N events in wire order are kept; the number dropped is added to the
    span's ``dropped_events_count``. Evaluation events are read for
    ``eval_scores`` before the cut, so a score is never lost to it.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
KIB = 1024


@dataclass(frozen=True)
class IngestLimits:
    """Ingest size limits; see the module docstring for the exact truncation rule."""

    max_body_bytes: int = 128 * MIB
    max_attributes_per_span: int = 1024
    max_attribute_value_bytes: int = 256 * KIB
    max_events_per_span: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_attributes_per_span",
                     "max_attribute_value_bytes", "max_events_per_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"IngestLimits.{name} must be >= 1")
