"""Prompt templates and how answers made with each version behave.

v7 is the regression: more refusals (finish reason ``content_filter``) and
answers that break the output format the caller parses (``format_error``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from appliance.demo.plan import TraceBuilder


@dataclass(frozen=True)
class Template:
    refusal_rate: float
    format_error_rate: float


TEMPLATES: dict[str, Template] = {
    "v6": Template(refusal_rate=0.003, format_error_rate=0.002),
    "v7": Template(refusal_rate=0.20, format_error_rate=0.15),
}


def draw(rng: random.Random, version: str) -> tuple[bool, bool]:
    """(refused, malformed) for one answer; always two draws, so sequences stay aligned."""
    t = TEMPLATES[version]
    refused, malformed = rng.random() < t.refusal_rate, rng.random() < t.format_error_rate
    return refused, malformed and not refused


def parse_answer(tb: TraceBuilder, rng: random.Random, template_id: str, version: str,
                 malformed: bool) -> bool:
    """The caller's parse of the model's structured answer; False when it does not parse."""
    with tb.span("parse answer", attributes={
        "tracehold.prompt.template.id": template_id,
        "tracehold.prompt.template.version": version, "tracehold.output.format": "json",
    }) as span:
        tb.elapse(rng.uniform(0.0005, 0.002))
        if malformed:
            span.fail("format_error", "model answer is not the JSON object the template asks for")
    return not malformed
