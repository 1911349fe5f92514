"""Declared once: the failure taxonomy, the model-call operations and the span attributes
the detectors read each live in one place that every user imports."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from appliance.detect import operational, quality, series, windows
from appliance.detect.runner import DETECTORS
from appliance.detect.series import SERIES
from appliance.domain.taxonomy import FAILURE_TYPES, FailureType
from appliance.ingest import conventions as cv
from appliance.settings import PROJECT_ROOT

APPLIANCE = PROJECT_ROOT / "appliance"
DETECT = APPLIANCE / "detect"
# Where cases, detections and their reports are handled (the console wherever it lives).
TAXONOMY_USERS = [APPLIANCE / d for d in ("detect", "cases", "export", "report", "console")] + [
    PROJECT_ROOT / "app"]
JSON_PATH = re.compile(r"""'\$\."([^"]+)"'""")


def _literals(path: Path) -> list[str]:
    """Every string literal of a module (f-string parts included) except docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def _modules(folders: list[Path]) -> list[Path]:
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.py"))


def test_one_detector_and_one_series_per_failure_type() -> None:
    assert set(DETECTORS) == set(FailureType)
    assert set(SERIES) == set(FailureType)
    assert all(isinstance(t, FailureType) for t in DETECTORS)
    assert tuple(t.value for t in FailureType) == FAILURE_TYPES


def test_failure_types_are_spelled_only_in_the_taxonomy() -> None:
    """Detectors, cases, export, report and console name a type as FailureType.<name>:
    a second list of the names (or one name as text) would drift from the first."""
    modules = _modules(TAXONOMY_USERS)
    assert any(p.parent == DETECT for p in modules)
    found = {str(p.relative_to(PROJECT_ROOT)): hits for p in modules
             if (hits := sorted({s for s in _literals(p) if s in FAILURE_TYPES}))}
    assert found == {}


def test_detectors_read_span_attributes_only_through_the_declared_table() -> None:
    declared = {name for a in cv.ATTRIBUTES for name in a.names}
    columns_or_events = {name for f in cv.FIELDS for name in f.names} | {
        cv.OPENINFERENCE_KIND, cv.EVALUATION_EVENT, cv.EVALUATION_NAME, cv.EVALUATION_SCORE}
    for path in _modules([DETECT]):
        literals = _literals(path)
        if path.name != "windows.py":  # windows.attribute() is the one way in
            raw = [s for s in literals if "json_extract" in s or "attributes" in s]
            assert raw == [], path.name
        named = [s for s in literals for name in declared | columns_or_events if name in s]
        assert named == [], (path.name, named)  # names come from conventions, not literals
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in ast.walk(tree):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id == "attribute"):
                (arg,) = call.args
                assert isinstance(arg, ast.Name), ast.dump(call)
                assert getattr(cv, arg.id) in cv.ATTRIBUTES, arg.id
    # and the SQL the detectors run names declared attributes only
    sql = [v for m in (operational, quality, series, windows) for v in vars(m).values()
           if isinstance(v, str)] + [part for spec in SERIES.values() for part in spec]
    paths = {name for text in sql for name in JSON_PATH.findall(text)}
    assert paths and paths <= declared, paths - declared


def test_attribute_sql_takes_every_name_of_an_attribute() -> None:
    one = cv.SpanAttribute("a.b", ("c.d",))
    assert windows.attribute(one) == ("coalesce(json_extract_string(attributes, '$.\"a.b\"'), "
                                      "json_extract_string(attributes, '$.\"c.d\"'))")
    assert windows.attribute(cv.TOOL_CALL_ARGUMENTS) == \
        "json_extract_string(attributes, '$.\"gen_ai.tool.call.arguments\"')"


def test_model_calls_are_one_list_for_detectors_and_console() -> None:
    try:  # the console package is moving from app/ into appliance/console/
        queries = importlib.import_module("appliance.console.overview_queries")
    except ModuleNotFoundError:
        queries = importlib.import_module("app.overview_queries")
    ops = cv.MODEL_CALL_OPERATIONS
    assert f"operation IN ({', '.join(repr(op) for op in ops)})" == windows.MODEL_CALL
    assert f'gen_ai_operation_name=~"{"|".join(ops)}"' == queries.MODEL_CALLS
