"""The import graph of ``appliance/``: no cycle between modules (an import inside a
function counts: hiding a cycle there is still a cycle), and no package imports one
of a higher layer. The layers are the map in docs/architecture.md."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import appliance

ROOT = Path(appliance.__file__).parent
# Lowest first. A package may import its own layer or lower ones, never a higher one.
LAYERS: list[set[str]] = [
    # foundation: settings, errors and small shared vocabularies
    {"errors", "headers", "times", "resources", "settings", "domain", "secrets",
     "console_users", "filters", "pricing", "sdk", "interpreter"},
    {"ingest"},            # OTLP in: decoding, GenAI conventions, rows
    {"store"},             # the span store and the shared database
    {"audit", "changes", "evals"},  # records every later stage writes through; evals:
    # built-in scores, below detect, which reads them (the embedder is handed in)
    {"detect"},            # findings from the span store
    {"cases"},             # findings and people open and work cases
    {"rca"},               # root-cause analysis: evidence, rules, the embedder
    {"records"},           # the record stores, built once (composition helpers)
    {"export", "report", "notify"},  # evidence out; cases reach people
    {"demo", "stack", "install", "status", "testtrace"},  # running the appliance
    # entry points; airgap: the bundle's builder and installer, and the frozen entry
    {"api", "daemon", "cli", "docgen", "console", "__main__", "airgap"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer() -> None:
    packages = {_package(_module(p)) for p in ROOT.rglob("*.py")} - {"appliance"}
    assert packages <= set(LAYER_OF), f"add to LAYERS: {sorted(packages - set(LAYER_OF))}"


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted(
        f"{src} -> {dst}" for src, dsts in _graph().items() for dst in dsts
        if _package(src) in LAYER_OF and _package(dst) in LAYER_OF
        and LAYER_OF[_package(dst)] > LAYER_OF[_package(src)])
    assert upward == []


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_architecture_doc_names_every_package() -> None:
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    missing = [name for name in LAYER_OF
               if f"`{name}/`" not in doc and f"`{name}.py`" not in doc]
    assert missing == [], "docs/architecture.md: say where these live"
