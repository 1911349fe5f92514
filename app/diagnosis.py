"""A case's diagnosis as the case page shows it: pure functions from a ``Case`` to the
verdict, the evidence table, the ranked hypotheses, the similar resolved cases, the
suggested fixes and the local model's explanation. No Streamlit here, so each table is
unit-tested on its own (tests/unit/test_diagnosis_page.py).

The RCA run's ``details`` come from the daemon (appliance/rca/): the rules' answer
(``engine``, ``determined``, ``hypotheses`` with ``kind``/``ref``, ``evidence.facts``)
and, from the pipeline (appliance/rca/pipeline.py), ``status``/``statuses``,
``model_name``/``model_sha256``, ``explanation`` (``{by, model, text}``), ``similar`` and
``suggested_fixes`` (with ``verify`` and ``confidence``). Any of them may be absent or
null (an older run, a degraded one): each function then answers with what there is,
never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.cases.model import UNDETERMINED, Case

DETERMINED = 0.5  # DESIGN.md: below it, "unable to determine root cause"
MAX_TRACES_PER_FACT = 3

# What a degraded run's status means to the reader (appliance/rca/pipeline.py sets it;
# the text after "kind:" is the reason, shown as given).
_STATUS = {
    "model_unavailable": "model unavailable, rules-only answer",
    "model_timeout": "the model timed out, rules-only answer",
    "model_invalid": "the model's answer was invalid, rules-only answer",
    "model_invalid_json": "the model's answer was invalid, rules-only answer",
    "model_error": "the model failed, rules-only answer",
    "kb_unavailable": "knowledge base unavailable, no similar cases retrieved",
    "kb_empty": "the knowledge base is empty, no similar cases retrieved",
    "no_traces": "no traces in the case's window, the answer rests on its signals alone",
}


@dataclass(frozen=True)
class Verdict:
    failure_type: str
    root_cause: str  # UNDETERMINED below the confidence floor
    confidence: float | None
    determined: bool
    engine: str  # "rules", or what the pipeline ran
    notes: list[str] = field(default_factory=list)  # why the answer is degraded
    ran: str = ""  # "run 2 · 2026-11-29 02:24:45 UTC · by rca:worker"


@dataclass(frozen=True)
class Explanation:
    text: str
    model: str  # the model's name ("the local model" if the run did not say); "" for rules
    sha256: str | None
    by: str = "model"  # "model": the model's words; "rules": templated from the evidence


@dataclass(frozen=True)
class Fix:
    title: str
    detail: str  # the fix itself (its first sentence is usually the title)
    source: str | None
    verify: str  # how to tell it worked
    confidence: float | None = None  # computed by the pipeline (appliance/rca/fixes.py)
    verified: bool = False  # a resolved case's fix that a verification confirmed


def details(case: Case) -> dict[str, Any]:
    return dict(case.rca.details) if case.rca else {}


def has_diagnosis(case: Case) -> bool:
    return case.rca is not None or case.confidence is not None


def status_notes(status: object) -> list[str]:
    """A run's statuses (``ok``, ``model_unavailable: no GGUF at models/x.gguf``; a list,
    or one text joined by ``; ``) as sentences; ``ok`` and nothing say nothing."""
    if isinstance(status, list):
        parts = [str(p).strip() for p in status]
    elif isinstance(status, str):
        parts = [p.strip() for p in status.split(";")]
    else:
        return []
    notes = []
    for part in parts:
        kind, _, reason = part.partition(":")
        kind = kind.strip()
        if not part or kind == "ok":
            continue
        text = _STATUS.get(kind, kind.replace("_", " "))
        notes.append(f"{text} ({reason.strip()})" if reason.strip() else text)
    return notes


def verdict(case: Case) -> Verdict:
    d = details(case)
    confidence = case.confidence
    determined = bool(d.get("determined", confidence is not None and confidence >= DETERMINED))
    root = case.root_cause if determined and case.root_cause else UNDETERMINED
    failure_type = (case.rca.failure_type if case.rca and case.rca.failure_type
                    else d.get("failure_type") or case.failure_type)
    engine = str(d.get("engine") or ("model" if case.rca and case.rca.model else "rules"))
    ran = ""
    if case.rca:
        ran = (f"run {case.rca.runs} · {_when(case.rca.ran_at)} UTC · by {case.rca.ran_by}")
    return Verdict(str(failure_type), root, confidence, determined, engine,
                   status_notes(d.get("statuses") or d.get("status")), ran)


def _when(iso: str) -> str:
    return iso.replace("T", " ").split(".")[0].removesuffix("Z")


# ---------------------------------------------------------------- evidence

def _num(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _what(kind: str, about: str, v: Mapping[str, Any]) -> tuple[str, object, object]:
    """What a fact says, its value and its baseline (what it is compared with)."""
    if kind == "signal":
        return about, v.get("recent"), v.get("baseline")
    if kind == "cohort":
        return f"{v.get('signal', '?')} where {about}", v.get("recent"), v.get("baseline")
    if kind == "change":
        lag = v.get("lag_s")
        when = f", {_num(lag)} s before the onset" if isinstance(lag, int | float) else ""
        return (f"{about}: {v.get('change_kind', 'change')} of {v.get('service', '?')}{when}",
                v.get("to"), v.get("from"))
    if kind == "provider":
        return f"{about} error share", v.get("recent"), v.get("baseline")
    if kind == "input_size":
        return (f"{about} (p95)", v.get("fill_p95_recent", v.get("recent")),
                v.get("fill_p95_baseline", v.get("baseline")))
    recent = v.get("recent", next((x for k, x in v.items() if k.endswith("_recent")), None))
    base = v.get("baseline", next((x for k, x in v.items() if k.endswith("_baseline")), None))
    return about, recent, base


_SHOWN = {"recent", "baseline", "from", "to", "change_kind", "service", "lag_s", "signal",
          "fill_p95_recent", "fill_p95_baseline", "column", "value"}


def _rest(v: Mapping[str, Any], limit: int = 6) -> str:
    """The fact's other values, the telling ones first (a robust score, sample sizes)."""
    keys = sorted((k for k in v if k not in _SHOWN),
                  key=lambda k: (k not in ("robust_z", "n_recent", "n_baseline"), k))
    return ", ".join(f"{k}={_num(v[k])}" for k in keys[:limit])


def facts(case: Case) -> list[dict[str, Any]]:
    evidence = details(case).get("evidence")
    raw = evidence.get("facts") if isinstance(evidence, dict) else None
    return [f for f in raw if isinstance(f, dict) and f.get("id")] if isinstance(raw, list) \
        else []


def cited(case: Case) -> set[str]:
    """Evidence ids a hypothesis rests on."""
    return {i for h in case.hypotheses for i in h.evidence_ids}


def evidence_rows(case: Case) -> list[dict[str, str]]:
    """One row per fact: id, kind, what, value vs baseline, the rest, its traces.

    Facts a hypothesis cites come first, in id order, then the others."""
    used = cited(case)
    rows = []
    for f in facts(case):
        values = f.get("values") if isinstance(f.get("values"), dict) else {}
        kind, about = str(f.get("kind", "")), str(f.get("about", ""))
        what, value, baseline = _what(kind, about, values)
        traces = [t for t in f.get("trace_ids") or [] if isinstance(t, str)]
        rows.append({"id": str(f["id"]), "cited": "yes" if f["id"] in used else "",
                     "kind": kind, "what": what, "value": _num(value),
                     "baseline": _num(baseline), "more": _rest(values),
                     "traces": str(len(traces)) if traces else ""})
    return sorted(rows, key=lambda r: (r["cited"] != "yes", _order(r["id"])))


def _order(fact_id: str) -> tuple[int, str]:
    digits = fact_id.lstrip("f")
    return (int(digits), "") if digits.isdigit() else (1 << 30, fact_id)


def trace_links(case: Case) -> list[tuple[str, str]]:
    """(trace id, fact id) for the traces behind the cited facts first, a few per fact,
    each trace once."""
    used, seen, out = cited(case), set[str](), []
    ordered = sorted(facts(case), key=lambda f: (f["id"] not in used, _order(str(f["id"]))))
    for f in ordered:
        for t in [t for t in f.get("trace_ids") or [] if isinstance(t, str)][
                :MAX_TRACES_PER_FACT]:
            if t not in seen:
                seen.add(t)
                out.append((t, str(f["id"])))
    return out


# ---------------------------------------------------------------- hypotheses

def hypotheses(case: Case) -> list[dict[str, str]]:
    """Ranked, with what each blames (``kind: ref``) when the rules said it."""
    raw = details(case).get("hypotheses")
    blamed = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
    rows = []
    for i, h in enumerate(case.hypotheses):
        entity = blamed[i] if i < len(blamed) else {}
        blame = f"{entity['kind']}: {entity['ref']}" if entity.get("kind") else ""
        rows.append({"rank": str(h.rank), "blames": blame, "score": f"{h.confidence:.2f}",
                     "evidence": ", ".join(h.evidence_ids), "cause": h.cause})
    return rows


# ---------------------------------------------------------------- knowledge base

def similar(case: Case) -> list[dict[str, str]]:
    """The resolved cases and playbooks the knowledge base found nearest, nearest first."""
    raw = details(case).get("similar")
    items = [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []
    rows = []
    for s in sorted(items, key=lambda s: _distance(s.get("distance"))):
        # only a resolved case can have had its fix verified; a playbook never is
        verified = s.get("verified") if s.get("source") == "case" else None
        rows.append({"id": str(s.get("id", "")), "source": str(s.get("source", "")),
                     "type": str(s.get("failure_type", "")),
                     "distance": _num(s.get("distance")),
                     "root cause": str(s.get("root_cause") or ""), "fix": str(s.get("fix") or ""),
                     "verified": "" if verified is None else _num(bool(verified))})
    return rows


def _distance(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("inf")


def verify_hint(case: Case) -> str:
    """How to tell a fix worked: the case's own detector judges the current window."""
    detector = (case.detected_by or "").removeprefix("detector:") or case.failure_type
    shifted = [s for s in case.signals if s.baseline is not None][:3]
    back = "; ".join(f"{s.name} {_num(s.value)} → back near {_num(s.baseline)}" for s in shifted)
    return (f"Apply it, resolve the case, then press Verify now: the {detector} detector "
            f"judges the current window" + (f" ({back})." if back else "."))


_APPENDED = ("How to verify:", "Confidence ")  # lines SuggestedFix.detail carries besides


def fixes(case: Case) -> list[Fix]:
    """The suggested fixes, best first; with how to verify each and its confidence from
    the run's details when it recorded them, else the case's own detector check."""
    raw = details(case).get("suggested_fixes")
    known = {str(f.get("title")): f for f in raw if isinstance(f, dict)} \
        if isinstance(raw, list) else {}
    out = []
    for f in case.suggested_fixes:
        full = known.get(f.title, {})
        lines = f.detail.splitlines()
        detail = str(full.get("detail") or "\n".join(
            line for line in lines if not line.startswith(_APPENDED))).strip()
        verify = str(full.get("verify") or next(
            (line.removeprefix("How to verify:").strip() for line in lines
             if line.startswith("How to verify:")), "") or verify_hint(case))
        conf = full.get("confidence")
        out.append(Fix(f.title, detail, f.source, verify,
                       float(conf) if isinstance(conf, int | float) else None,
                       bool(full.get("verified"))))
    return out


def fix_text(fix: Fix) -> str:
    """What "Resolve with this fix" records as the fix applied: the fix itself."""
    if not fix.detail:
        text = fix.title
    elif _same(fix.detail).startswith(_same(fix.title.rstrip("…"))):
        text = fix.detail
    else:
        text = f"{fix.title}: {fix.detail}"
    return text[:8000]


def _same(text: str) -> str:
    return " ".join(text.lower().split())


def shows_detail(fix: Fix) -> bool:
    """Whether the detail says more than the title (it often starts with it)."""
    return bool(fix.detail) and _same(fix.detail) != _same(fix.title)


def resolution_root_cause(case: Case) -> str | None:
    """The diagnosis as a resolution's root cause: the determined answer, else the best
    hypothesis (the person resolving confirms it by choosing its fix); None if neither."""
    v = verdict(case)
    if v.determined and v.root_cause != UNDETERMINED:
        return v.root_cause[:8000]
    if case.hypotheses:
        return case.hypotheses[0].cause.removeprefix("unconfirmed: ")[:8000]
    return None


# ---------------------------------------------------------------- the model's words

def explanation(case: Case) -> Explanation | None:
    """The explanation the run recorded. ``by`` tells whose words they are: the local
    model's (``model``), or the rules' own, templated from the evidence (``rules``)."""
    d = details(case)
    raw = d.get("explanation")
    by, name = "model", None
    if isinstance(raw, dict):
        by = str(raw.get("by") or "model")
        name = raw.get("model")
        raw = raw.get("text")
    if not isinstance(raw, str) or not raw.strip():
        return None
    if by != "model":
        return Explanation(raw.strip(), "", None, by)
    model = d.get("model")
    sha = d.get("model_sha256")
    if isinstance(model, dict):  # {name, sha256}
        name, sha = name or model.get("name"), sha or model.get("sha256")
    name = (name or d.get("model_name") or (case.rca.model if case.rca else None)
            or "the local model")
    return Explanation(raw.strip(), str(name), str(sha) if sha else None, by)
