"""A trace planned on a virtual clock, then emitted through the OpenTelemetry SDK.

The apps describe what happened (spans nested in time, with attributes and
events) by moving a cursor instead of sleeping. Emitting places the whole
trace so that it ends now: spans carry realistic start and end times without
any waiting, and never end in the future.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

NS = 1_000_000_000


@dataclass
class EventPlan:
    name: str
    at: float
    attributes: dict[str, AttributeValue]


@dataclass
class SpanPlan:
    name: str
    kind: SpanKind
    start: float
    end: float = 0.0
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    events: list[EventPlan] = field(default_factory=list)
    children: list[SpanPlan] = field(default_factory=list)
    error: str | None = None  # status description when the span failed

    def set(self, **attributes: AttributeValue) -> None:
        """Attributes by keyword, with '__' standing for '.' (gen_ai__agent__name)."""
        self.attributes.update({k.replace("__", "."): v for k, v in attributes.items()})

    def fail(self, error_type: str, description: str | None = None) -> None:
        self.attributes["error.type"] = error_type
        self.error = description or error_type

    def add_event(self, name: str, attributes: dict[str, AttributeValue]) -> None:
        """An event at the span's end (results known once the span is done, e.g. evaluations)."""
        self.events.append(EventPlan(name, self.end, attributes))

    def count(self) -> int:
        return 1 + sum(c.count() for c in self.children)


class TraceBuilder:
    """Builds one trace's span tree; `elapse` moves the virtual clock (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.root: SpanPlan | None = None
        self._open: list[SpanPlan] = []

    def elapse(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)

    @contextmanager
    def span(self, name: str, kind: SpanKind = SpanKind.INTERNAL,
             attributes: dict[str, AttributeValue] | None = None) -> Iterator[SpanPlan]:
        plan = SpanPlan(name, kind, self.now, attributes=dict(attributes or {}))
        if self._open:
            self._open[-1].children.append(plan)
        elif self.root is None:
            self.root = plan
        else:
            raise ValueError("a trace has one root span")
        self._open.append(plan)
        try:
            yield plan
        finally:
            self._open.pop()
            plan.end = self.now

    def event(self, name: str, attributes: dict[str, AttributeValue]) -> None:
        self._open[-1].events.append(EventPlan(name, self.now, attributes))


def emit(tracer: trace.Tracer, root: SpanPlan, end_ns: int) -> int:
    """Send the planned trace so that it ends at end_ns; returns the number of spans."""
    base = end_ns - int(root.end * NS)
    return _emit(tracer, root, base, None)


def _emit(tracer: trace.Tracer, plan: SpanPlan, base: int, parent: trace.Span | None) -> int:
    # A root gets an empty context, so no ambient span becomes its parent.
    ctx = trace.set_span_in_context(parent) if parent is not None else Context()
    span = tracer.start_span(plan.name, context=ctx, kind=plan.kind, attributes=plan.attributes,
                             start_time=base + int(plan.start * NS))
    for ev in plan.events:
        span.add_event(ev.name, ev.attributes, timestamp=base + int(ev.at * NS))
    if plan.error is not None:
        span.set_status(Status(StatusCode.ERROR, plan.error))
    sent = 1 + sum(_emit(tracer, child, base, span) for child in plan.children)
    span.end(end_time=base + int(plan.end * NS))
    return sent
