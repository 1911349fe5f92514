"""The human report of one case, as a Document (rendered to PDF and HTML)."""

from __future__ import annotations

from typing import Any

from appliance.cases.model import Case
from appliance.export.document import Block, Document, Image, Paragraph, Section, Table, text


def build(case: Case, charts: list[tuple[str, bytes]], export_id: str,
          head: dict[str, Any]) -> Document:
    res = case.resolution
    summary = Table(["field", "value"], [[k, text(v)] for k, v in (
        ("case", case.id), ("title", case.title), ("service", case.service),
        ("failure type", case.failure_type), ("status", case.status),
        ("assignee", case.assignee), ("onset", case.onset_at),
        ("opened (detected)", case.opened_at), ("detected by", case.detected_by),
        ("occurrences", case.occurrences), ("trace ids", case.trace_ids_total),
        ("resolved", res.resolved_at), ("verified", res.verified_at))])
    signals = Table(["signal", "value", "baseline", "window"],
                    [[s.name, text(s.value), text(s.baseline), text(s.window)]
                     for s in case.signals])
    rca: list[Block] = [
        Paragraph(f"Root cause: {text(case.root_cause)}"),
        Paragraph(f"Confidence: {text(case.confidence)}"),
        *_run(case),
        Table(["rank", "hypothesis", "confidence", "evidence"],
              [[str(h.rank), h.cause, text(h.confidence), ", ".join(h.evidence_ids) or "—"]
               for h in case.hypotheses]),
        Table(["suggested fix", "detail"],
              [[f.title, text(f.detail)] for f in case.suggested_fixes])]
    changes = Table(["at", "kind", "from", "to", "source"],
                    [[text(c.at), c.kind, text(c.from_), text(c.to), c.source]
                     for c in (case.context.changes if case.context else [])])
    timeline = Table(["#", "at", "actor", "action"],
                     [[str(e.seq), e.at, e.actor, e.action] for e in case.timeline or []])
    notes: list[Block] = [Paragraph(f"{n.at} — {n.author}:\n{n.text}")
                          for n in case.notes or []]
    resolution = Table(["root cause (confirmed)", "fix applied"],
                       [[text(res.root_cause), text(res.fix_applied)]]
                       if res.resolved_at else [])
    return Document(
        title=f"Case {case.id}: {case.title}",
        subtitle=(f"Tracehold case export {export_id}; audit chain head #{head['seq']} "
                  f"{head['hash'][:16]}… signed {head['signed_at']} by {head['key_id']}"),
        sections=[
            Section("Summary", [summary]),
            Section("Signals", [signals]),
            Section("Metrics around the onset",
                    [Image(caption, png) for caption, png in charts]
                    or [Paragraph("No metric windows were attached to this case.")]),
            Section("Root cause analysis", rca),
            Section("Changes near the onset", [changes]),
            Section("Resolution", [resolution]),
            Section("Notes", notes or [Paragraph("No notes.")]),
            Section("Timeline (audit entries)", [timeline]),
        ])


def _run(case: Case) -> list[Block]:
    """Who answered: the engine, the model and its sha256, the status, and the
    explanation marked as the model's when it wrote it."""
    if case.rca is None:
        return []
    d = case.rca.details
    out: list[Block] = [Paragraph(
        f"RCA run {case.rca.runs} at {case.rca.ran_at} by {case.rca.ran_by}: engine "
        f"{text(d.get('engine'))}, status {text(d.get('status'))}, model "
        f"{text(case.rca.model)} (sha256 {text(d.get('model_sha256'))})")]
    explanation = d.get("explanation") or {}
    if explanation.get("text"):
        who = ("written by the local model" if explanation.get("by") == "model"
               else "from the rules")
        out.append(Paragraph(f"Explanation ({who}): {explanation['text']}"))
    return out
