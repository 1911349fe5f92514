"""`tracehold kb`: the RCA knowledge base in the data folder (playbooks and learned
cases): what it holds, and a rebuild when Chroma cannot read it.

Both work on the folder directly, so ``rebuild`` refuses while the daemon runs (its RCA
worker holds the knowledge base open).
"""

from __future__ import annotations

from typing import Any

import typer

from appliance.cli.output import DataDir, JsonOpt, emit, settings
from appliance.errors import Conflict, DaemonUnavailable

app = typer.Typer(help="The RCA knowledge base: playbooks and learned cases.",
                  no_args_is_help=True)


@app.command("status")
def status(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """How many playbooks and learned cases the knowledge base holds (an error that says
    how to rebuild it when it cannot be read)."""
    from appliance.rca.embed import Embedder
    from appliance.rca.kb import KnowledgeBase

    s = settings(data_dir)
    with KnowledgeBase.open(s.kb_dir, Embedder(), seed=False) as kb:
        data: dict[str, Any] = {"path": str(s.kb_dir), "playbooks": kb.count("playbook"),
                                "cases": kb.count("case")}
    emit(data, as_json, [f"{data['path']}: {data['playbooks']} playbooks, "
                         f"{data['cases']} learned cases"])


@app.command("rebuild")
def rebuild(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Move the knowledge base folder aside (kept as kb.corrupt-<time>) and seed a fresh
    one from the playbooks. Learned cases are learned again as cases are resolved."""
    from appliance.cli.client import DaemonClient

    s = settings(data_dir)
    try:
        DaemonClient(s, timeout=5).json("GET", "/healthz")
    except DaemonUnavailable:
        pass
    else:
        raise Conflict("the daemon is running and holds the knowledge base open: stop it "
                       "first (`tracehold down`), then rebuild")
    from appliance.rca.embed import Embedder
    from appliance.rca.kb import rebuild as rebuild_kb

    kb, aside = rebuild_kb(s.kb_dir, Embedder())
    with kb:
        data = {"path": str(s.kb_dir), "moved_aside": str(aside) if aside else None,
                "playbooks": kb.count("playbook")}
    emit(data, as_json, [f"{data['path']}: seeded {data['playbooks']} playbooks"
                         + (f"; the old folder is {aside}" if aside else "")])
