"""Generate the reference docs from their single sources, so they cannot fall behind.

- docs/configuration.md from the Settings declaration,
- docs/cli.md from the CLI's --help,
- the metric list in docs/metrics.md is checked (not generated) against the
  collector template by tests/unit/test_docs.py.

``python -m appliance.docgen`` rewrites the files; the docs test fails when
they differ from what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel
from typer.testing import CliRunner

from appliance.settings import (
    PROJECT_ROOT,
    Destination,
    DetectConfig,
    NotifyConfig,
    Ports,
    Settings,
    Tracker,
)

DOCS = PROJECT_ROOT / "docs"


def _default(value: object) -> str:
    if isinstance(value, Path):
        return str(value).replace(str(PROJECT_ROOT), "<project>").replace(str(Path.home()), "~")
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):  # e.g. prices: one "key: {fields}" per entry
        return "; ".join(f"{k}: {v.model_dump() if isinstance(v, BaseModel) else v}"
                         for k, v in value.items())
    return str(value)


def configuration_md() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `appliance/settings.py` by `python -m appliance.docgen`; do not edit.",
        "",
        "Set any of these as an environment variable `TRACEHOLD_<NAME>` (upper case; nested",
        "with `__`, e.g. `TRACEHOLD_PORTS__OTLP_GRPC=4317`), in a TOML file named by",
        "`TRACEHOLD_CONFIG` (default `<data_dir>/config.toml`), or, for some, as a flag of",
        "`tracehold up`.",
        "",
        "| setting | default | meaning |",
        "|---|---|---|",
    ]
    defaults = Settings.model_construct()
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else getattr(defaults, name, "")
        lines.append(f"| `{name}` | `{_default(default)}` | {field.description} |")
    lines += ["", "## Ports", "", "| setting | default | what listens |", "|---|---|---|"]
    for name, field in Ports.model_fields.items():
        lines.append(f"| `ports.{name}` | `{field.default}` | {field.description} |")
    lines += ["", "## Detectors", "", "Set as `TRACEHOLD_DETECT__<NAME>` or under `[detect]`.",
              "", "| setting | default | meaning |", "|---|---|---|"]
    for name, field in DetectConfig.model_fields.items():
        lines.append(f"| `detect.{name}` | `{field.default}` | {field.description} |")
    lines += ["", "## Notifications and tickets", "",
              "Under `[notify]`; destinations as `[[notify.destinations]]` tables, trackers as "
              "`[notify.github]` and `[notify.jira]`. Secrets (webhook signing key, SMTP "
              "password, tracker tokens) go in the 0600 secrets file with `tracehold notify "
              "secret NAME`, never here.", "",
              "| setting | default | meaning |", "|---|---|---|"]
    for prefix, model in (("notify", NotifyConfig), ("notify.destinations[]", Destination),
                          ("notify.{github,jira}", Tracker)):
        for name, field in model.model_fields.items():
            default = "(required)" if field.is_required() else _default(field.default)
            lines.append(f"| `{prefix}.{name}` | `{default}` | {field.description} |")
    return "\n".join(lines) + "\n"


def cli_md() -> str:
    from appliance.cli.main import app

    runner = CliRunner()
    out = ["# CLI reference", "", "Generated from `tracehold --help` by "
           "`python -m appliance.docgen`; do not edit.", ""]
    commands = [[], ["setup"], ["up"], ["down"], ["status"], ["logs"], ["send-test-trace"],
                ["demo"], ["validate"], ["keys"], ["keys", "list"], ["keys", "create"],
                ["keys", "revoke"]]
    commands += [["cases"], *(["cases", c] for c in ("list", "show", "open", "assign", "status",
                                                     "note", "resolve", "check", "verify",
                                                     "export")),
                 ["change"], ["change", "record"], ["change", "list"], ["audit"],
                 ["audit", "list"], ["audit", "verify"], ["audit", "heads"], ["report"],
                 ["verify-export"]]
    commands += [["users"], ["users", "create"], ["users", "list"], ["users", "delete"]]
    commands += [["cases", "ticket"], ["notify"],
                 *(["notify", c] for c in ("test", "secret", "list", "retry"))]
    commands += [["kb"], ["kb", "status"], ["kb", "rebuild"]]
    for cmd in commands:
        result = runner.invoke(app, [*cmd, "--help"], prog_name="tracehold",
                               env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
        out += [f"## tracehold {' '.join(cmd)}".rstrip(), "", "```", result.output.rstrip(),
                "```", ""]
    return "\n".join(out)


GENERATED = {"configuration.md": configuration_md, "cli.md": cli_md}


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    for name, make in GENERATED.items():
        (DOCS / name).write_text(make())
        print(f"wrote docs/{name}", file=sys.stderr)


if __name__ == "__main__":
    main()
