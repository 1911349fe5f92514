"""`tracehold cases ...`: thin commands over the daemon's /api/v1/cases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from appliance.cli.client import DaemonClient
from appliance.cli.notify import ticket
from appliance.cli.output import DataDir, JsonOpt, emit, settings, write_atomic
from appliance.errors import DaemonUnavailable, InvalidRequest

if TYPE_CHECKING:
    from appliance.cases.model import Case

app = typer.Typer(no_args_is_help=True, help="Cases: GenAI incidents with evidence, RCA "
                                             "and resolution.")


def _client(data_dir: Path | None) -> DaemonClient:
    return DaemonClient(settings(data_dir))


def _case(data_dir: Path | None, method: str, path: str,
          body: dict[str, Any] | None = None) -> Case:
    """The daemon's answer, read into ``Case`` (it answers every case action with one)."""
    from appliance.cases.model import Case  # pydantic loads only for case commands

    kw = {} if body is None else {"json": body}
    return Case.model_validate(_client(data_dir).json(method, path, **kw))


def _summary(c: Case) -> str:
    return (f"{c.id:14} {c.status:13} {c.service:20} {c.failure_type:24} "
            f"{c.opened_at}  {c.assignee or '-'}")


def _detail(c: Case) -> list[str]:
    lines = [_summary(c), f"  title:       {c.title}",
             f"  onset:       {c.onset_at}   occurrences: {c.occurrences}",
             f"  root cause:  {c.root_cause or '-'}   confidence: {c.confidence}"]
    lines += [f"  signal:      {s.name} = {s.value} (baseline {s.baseline}, "
              f"{s.window or '-'})" for s in c.signals]
    lines += [f"  trace:       {t}" for t in c.trace_ids[:10]]
    lines += [f"  hypothesis {h.rank}: {h.cause} ({h.confidence})" for h in c.hypotheses]
    lines += [f"  fix:         {f.title}" for f in c.suggested_fixes]
    res = c.resolution
    if res.resolved_at:
        lines.append(f"  resolved:    {res.resolved_at}: {res.root_cause} / "
                     f"{res.fix_applied}   verified: {res.verified_at or '-'}")
    lines += [f"  {e.at}  {e.actor:24} {e.action}" for e in c.timeline or []]
    return lines


@app.command("list")
def list_cases(
    status: Annotated[str | None, typer.Option(help="open, investigating, mitigated, "
                                                    "resolved, verified")] = None,
    service: Annotated[str | None, typer.Option()] = None,
    failure_type: Annotated[str | None, typer.Option("--failure-type")] = None,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """List cases, newest first."""
    params = {k: v for k, v in (("status", status), ("service", service),
                                ("failure_type", failure_type)) if v is not None}
    from appliance.cases.model import Case

    cases = [Case.model_validate(c) for c in
             _client(data_dir).json("GET", "/api/v1/cases", params=params)["cases"]]
    emit([c.model_dump(mode="json") for c in cases], as_json,
         [_summary(c) for c in cases] or ["no cases"])


@app.command()
def show(case_id: str, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """One case with signals, RCA, resolution and timeline."""
    case = _case(data_dir, "GET", f"/api/v1/cases/{case_id}")
    emit(case.model_dump(mode="json"), as_json, _detail(case))


@app.command("open")
def open_case(
    service: Annotated[str, typer.Option(help="Service the incident is in")],
    failure_type: Annotated[str, typer.Option("--failure-type", help="One of the 8 types")],
    trace_id: Annotated[list[str] | None, typer.Option("--trace-id", help="Repeatable")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    signature: Annotated[str | None, typer.Option(help="Dedup key within service+type")] = None,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Open a case by hand (e.g. from a trace); joins an open case with the same signature."""
    body = {"service": service, "failure_type": failure_type, "trace_ids": trace_id or [],
            "title": title, "signature": signature}
    case = _case(data_dir, "POST", "/api/v1/cases", body)
    verb = "joined open case" if case.deduplicated else "opened"
    emit(case.model_dump(mode="json"), as_json, [f"{verb} {case.id}"])


@app.command()
def assign(case_id: str,
           to: Annotated[str | None, typer.Option("--to", help="Assignee (omit to unassign)")]
           = None,
           data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Assign a case."""
    case = _case(data_dir, "POST", f"/api/v1/cases/{case_id}/assign", {"assignee": to})
    emit(case.model_dump(mode="json"), as_json,
         [f"{case.id} assigned to {case.assignee or 'nobody'}"])


@app.command()
def status(case_id: str,
           new_status: Annotated[str, typer.Argument(help="investigating or mitigated; "
                                                          "investigating reopens")],
           reason: Annotated[str | None, typer.Option()] = None,
           data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Move a case to another status (resolve and verify have their own commands)."""
    case = _case(data_dir, "POST", f"/api/v1/cases/{case_id}/status",
                 {"status": new_status, "reason": reason})
    emit(case.model_dump(mode="json"), as_json, [f"{case.id} is {case.status}"])


@app.command()
def note(case_id: str, text: Annotated[str, typer.Option("--text")],
         data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Add a note to a case."""
    case = _case(data_dir, "POST", f"/api/v1/cases/{case_id}/notes", {"text": text})
    emit(case.model_dump(mode="json"), as_json, [f"note added to {case.id}"])


@app.command()
def resolve(case_id: str,
            root_cause: Annotated[str, typer.Option("--root-cause")],
            fix: Annotated[str, typer.Option("--fix", help="The fix applied")],
            data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Resolve a case with its confirmed root cause and the fix applied."""
    case = _case(data_dir, "POST", f"/api/v1/cases/{case_id}/resolve",
                 {"root_cause": root_cause, "fix_applied": fix})
    emit(case.model_dump(mode="json"), as_json, [f"{case.id} is {case.status}"])


def _check(spec: str) -> dict[str, Any]:
    """SIGNAL=VALUE or SIGNAL=VALUE/BASELINE."""
    try:
        name, _, values = spec.partition("=")
        value, _, baseline = values.partition("/")
        return {"signal": name, "value": float(value),
                "baseline": float(baseline) if baseline else None}
    except ValueError as exc:
        raise InvalidRequest(f"--check {spec!r}: use SIGNAL=VALUE or SIGNAL=VALUE/BASELINE"
                             ) from exc


@app.command()
def check(case_id: str, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Verify now: the case's detector judges the current window (verified or reopened)."""
    case = _case(data_dir, "POST", f"/api/v1/cases/{case_id}/check")
    detail = case.verifications[-1].detail if case.verifications else None
    emit(case.model_dump(mode="json"), as_json, [f"{case.id} is {case.status}: {detail or ''}"])


@app.command()
def verify(case_id: str,
           passed: Annotated[bool, typer.Option("--passed/--failed",
                                                help="Is the signal back to baseline?")],
           check: Annotated[list[str] | None, typer.Option(
               "--check", help="SIGNAL=VALUE[/BASELINE], repeatable")] = None,
           detail: Annotated[str | None, typer.Option()] = None,
           data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Record a verification check: passed -> verified, failed -> investigating again."""
    body = {"back_to_baseline": passed, "checks": [_check(c) for c in check or []],
            "detail": detail}
    case = _case(data_dir, "POST", f"/api/v1/cases/{case_id}/verify", body)
    emit(case.model_dump(mode="json"), as_json, [f"{case.id} is {case.status}"])


def _diagnosis(c: Case) -> list[str]:
    run = c.rca
    if run is None:
        return [f"{c.id}: no RCA run yet"]
    d = run.details
    lines = [f"{c.id} RCA run {run.runs} at {run.ran_at} by {run.ran_by} "
             f"({d.get('engine', '?')}; status {d.get('status', '?')})",
             f"  type:        {run.failure_type}   confidence: {c.confidence}",
             f"  root cause:  {c.root_cause}"]
    lines += [f"  hypothesis {h.rank}: {h.cause} ({h.confidence}; "
              f"{', '.join(h.evidence_ids)})" for h in c.hypotheses]
    explanation = d.get("explanation") or {}
    if explanation.get("text"):
        by = explanation.get("by")
        who = f"model {explanation.get('model')}" if by == "model" else "rules"
        lines.append(f"  explanation ({who}): {explanation['text']}")
    lines += [f"  similar:     {m['id']} ({m['source']}, {m['failure_type']}, "
              f"distance {m['distance']})" for m in d.get("similar") or []]
    lines += [f"  fix:         {f.title} ({f.source or '-'})" for f in c.suggested_fixes]
    if run.model:
        lines.append(f"  model:       {run.model} sha256 {d.get('model_sha256')}")
    return lines


@app.command()
def rca(case_id: str,
        wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish and "
                                                          "print its diagnosis")] = False,
        timeout: Annotated[float, typer.Option(help="--wait: give up after this many "
                                                    "seconds")] = 300.0,
        data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Ask the daemon's RCA worker to diagnose a case again (queued)."""
    import time

    client = _client(data_dir)
    queued = client.json("POST", f"/api/v1/cases/{case_id}/rca/run")
    if not wait:
        emit(queued, as_json, [f"RCA of {case_id} queued (runs so far: {queued['runs']})"])
        return
    deadline = time.monotonic() + timeout
    while True:  # the run count moves when the worker has stored the run
        case = _case(data_dir, "GET", f"/api/v1/cases/{case_id}")
        if case.rca is not None and case.rca.runs > queued["runs"]:
            break
        if time.monotonic() > deadline:
            raise DaemonUnavailable(f"the RCA of {case_id} did not finish within {timeout:g} s"
                                    f" (still queued: is the daemon's RCA worker running?)")
        time.sleep(0.5)
    emit(case.model_dump(mode="json"), as_json, _diagnosis(case))


@app.command()
def export(case_id: str,
           out: Annotated[Path, typer.Option("--out", help="Where to write the zip")],
           data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Export a case as a signed zip (evidence, charts, RCA, audit proof, PDF/HTML report)."""
    r = _client(data_dir).request("GET", f"/api/v1/cases/{case_id}/export")
    write_atomic(out, r.content)
    emit({"case_id": case_id, "path": str(out), "bytes": len(r.content)}, as_json,
         [f"wrote {out} ({len(r.content)} bytes); check it with `tracehold verify-export`"])


app.command("ticket")(ticket)  # beside the notifications it belongs with (cli/notify.py)
