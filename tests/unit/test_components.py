"""The component declarations (appliance/stack/components.py and one module each):
start order, profiles, templates, and a stack package without import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from appliance.settings import Profile, Settings
from appliance.stack import components, render

STACK = Path(components.__file__).parent


def test_start_order() -> None:
    assert [c.name for c in components.ALL] == [
        "victoriametrics", "prometheus", "daemon", "console", "collector", "envoy", "demo"]


@pytest.mark.parametrize("profile", list(Profile))
def test_runs_follows_the_declarations(tmp_path: Path, profile: Profile) -> None:
    s = Settings(data_dir=tmp_path, profile=profile)
    assert components.runs(s, "prometheus") == (profile in (Profile.full, Profile.no_vm))
    assert components.runs(s, "victoriametrics") == (
        profile in (Profile.full, Profile.no_prometheus))
    assert components.runs(s, "collector") and components.runs(s, "envoy")
    assert not components.runs(s, "demo")
    assert components.runs(s.model_copy(update={"demo": True}), "demo")
    with pytest.raises(ValueError, match="no component named 'grafana'"):
        components.runs(s, "grafana")


def test_every_template_is_declared_once() -> None:
    declared = [t for c in components.ALL for t in c.templates]
    assert len(declared) == len(set(declared))
    on_disk = {str(p.relative_to(render.TEMPLATES)) for p in render.TEMPLATES.rglob("*.j2")}
    assert set(declared) == on_disk


def _stack_imports(path: Path) -> tuple[set[str], list[str]]:
    """Modules of appliance.stack a module imports, and imports found inside functions."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "appliance.stack":
                found |= {a.name for a in node.names}
            elif node.module.startswith("appliance.stack."):
                found.add(node.module.split(".")[2])
    # A third-party library may load lazily (the CLI's start-up time); one of our own
    # modules imported inside a function would be a dodged cycle.
    nested = [f"{path.name}:{n.lineno}" for fn in ast.walk(tree)
              if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(fn)
              if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("appliance")
              or isinstance(n, ast.Import) and any(a.name.startswith("appliance")
                                                   for a in n.names)]
    return found, nested


def test_stack_has_no_import_cycle_and_no_deferred_imports() -> None:
    graph: dict[str, set[str]] = {}
    nested: list[str] = []
    for path in STACK.glob("*.py"):
        graph[path.stem], inner = _stack_imports(path)
        nested += inner
    assert nested == [], "imports inside functions (a dodged cycle?)"

    done: set[str] = set()

    def visit(mod: str, trail: tuple[str, ...]) -> None:
        assert mod not in trail, "import cycle: " + " -> ".join((*trail, mod))
        if mod in done:
            return
        for dep in graph.get(mod, set()):
            visit(dep, (*trail, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
    assert graph["spec"] == set()  # every declaration imports it: it imports none
