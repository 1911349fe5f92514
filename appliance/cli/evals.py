"""`tracehold evals run`: score a stored window with the built-in evaluators.

Through the daemon when it runs (it owns the span store), else on the data folder's
store here, with progress on stderr. Calls already evaluated are skipped, so a re-run
continues where the last one stopped.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from appliance.cli.client import DaemonClient
from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.errors import DaemonUnavailable

app = typer.Typer(no_args_is_help=True, help="Built-in evaluations: groundedness, relevance, "
                                             "retrieval relevance, coherence, repetition, "
                                             "refusal and format validity.")


def _offline(data_dir: Any, start: str, end: str, service: str | None) -> dict[str, Any]:
    from appliance.evals.runner import RunStats, score_window, summary_lines
    from appliance.rca.embed import Embedder
    from appliance.records import opened
    from appliance.times import parse_time

    s = settings(data_dir)
    begin, finish = parse_time(start, "--from"), parse_time(end, "--to")

    def progress(stats: RunStats) -> None:
        typer.echo(f"  {stats.evaluated}/{stats.sampled} calls  " + summary_lines(stats)[0],
                   err=True)

    with opened(s) as records:
        return score_window(records.store, Embedder(), s.evals_evaluators, begin, finish,
                            service, progress).as_dict()


@app.command()
def run(
    start: Annotated[str, typer.Option("--from", help="ISO 8601 start of the window")],
    end: Annotated[str, typer.Option("--to", help="ISO 8601 end of the window")],
    service: Annotated[str | None, typer.Option(help="Only this service's calls")] = None,
    data_dir: DataDir = None, as_json: JsonOpt = False,
) -> None:
    """Score the model calls of a stored window [from, to) that have no score yet."""
    body = {"from": start, "to": end, "service": service}
    try:
        result = DaemonClient(settings(data_dir), timeout=3600).json(
            "POST", "/api/v1/evals/run", json=body)
    except DaemonUnavailable:
        result = _offline(data_dir, start, end, service)
    emit(result, as_json, [
        f"calls {result['calls']}  evaluated {result['evaluated']}  scores {result['scores']}  "
        f"not scored {result['not_scored']}  {result['wall_s']} s  "
        f"({result['evaluations_per_s']} calls/s)"])
