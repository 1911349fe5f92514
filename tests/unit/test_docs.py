"""Docs cannot fall behind: generated references are current, every derived metric
and every CLI command is documented."""

from __future__ import annotations

import re

import pytest

from appliance import docgen
from appliance.settings import PROJECT_ROOT, Settings
from appliance.stack import render

DOCS = PROJECT_ROOT / "docs"


@pytest.mark.parametrize("name", sorted(docgen.GENERATED))
def test_generated_docs_are_current(name: str) -> None:
    expected = docgen.GENERATED[name]()
    assert (DOCS / name).read_text() == expected, (
        f"docs/{name} is stale: run `.venv/bin/python -m appliance.docgen`")


def test_every_derived_metric_is_documented() -> None:
    text = render.collector_config(Settings(data_dir=PROJECT_ROOT / ".unused"))
    names = set(re.findall(r"- name: (llm\.[a-z_.]+)", text))
    assert "llm.usage.input_tokens" in names
    doc = (DOCS / "metrics.md").read_text()
    for name in names:
        prom = name.replace(".", "_")
        if prom.startswith("llm_evaluation_"):
            prom = "llm_evaluation_<name>"
        assert f"`{prom}" in doc, f"{name} ({prom}) is not in docs/metrics.md"
    for spanmetric in ("llm_calls_total", "llm_duration_seconds"):
        assert f"`{spanmetric}`" in doc


def test_readme_has_the_two_commands_and_every_setting_is_referenced() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make up" in readme and "make test" in readme
    config = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in config
