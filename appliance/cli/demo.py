"""`tracehold demo`: send demo GenAI traffic to the running appliance."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.output import DataDir, emit, settings
from appliance.demo.names import ScenarioName


def demo(
    data_dir: DataDir = None,
    rate: Annotated[float, typer.Option(help="Traces per second (the daily mean with "
                                             "--daily-shape)")] = 2.0,
    duration: Annotated[float | None, typer.Option(
        help="Seconds to run (default: until Ctrl-C)", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed: the same seed sends the same traces (default: random)",
        show_default=False)] = None,
    scenario: Annotated[ScenarioName | None, typer.Option(
        help="Inject a failure (or `normal`, a harmless deploy)", show_default=False)] = None,
    at: Annotated[float, typer.Option(help="Scenario onset, seconds after the start")] = 60.0,
    service: Annotated[str | None, typer.Option(
        help="Service the scenario targets: rag-api, agents-svc or chat-svc "
             "(default: the scenario's own)", show_default=False)] = None,
    daily_shape: Annotated[bool, typer.Option(
        "--daily-shape", help="Shape the rate over the day (peak 14:00 UTC)")] = False,
    no_app_scores: Annotated[bool, typer.Option(
        "--no-app-scores", help="The apps send no evaluation or retrieval scores of their own: "
                                "the built-in evaluators carry detection alone")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Send demo GenAI traffic (RAG, agents, chat) through the appliance; Ctrl-C stops it.

    The scenario's onset is appended to <data_dir>/run/demo-scenarios.jsonl as ground truth.
    """
    from appliance.demo.runner import Options, run_against
    from appliance.errors import StackError
    from appliance.stack import state

    opts = Options(rate=rate, duration=duration, seed=seed, scenario=scenario, at=at,
                   service=service, daily_shape=daily_shape, app_scores=not no_app_scores)
    opts.check()
    s = settings(data_dir)
    if state.read(s.state_file) is None:
        raise StackError("the stack is not running; start it with `tracehold up`")
    summary = run_against(s, opts, lambda line: typer.echo(line, err=as_json))
    emit(summary, as_json, [
        f"traces {summary['traces']}  spans sent {summary['spans_sent']}  acknowledged "
        f"{summary['acknowledged']}  failed {summary['failed']}  dropped {summary['dropped']}",
        *(f"  {name:11} traces {v['traces']:6}  spans {v['spans_sent']:7}  acknowledged "
          f"{v['acknowledged']:7}  failed {v['failed']}"
          for name, v in summary["services"].items()),
    ])
    if summary["failed"] or summary["dropped"]:
        raise typer.Exit(1)
