"""Check the configuration without starting anything: every component's own checker.

Configs are rendered exactly as ``tracehold up`` renders them, but into a scratch
folder, and each component the profile runs judges its own (the collector's
``validate``, ``promtool check config``, ``envoy --mode validate``, VictoriaMetrics'
scrape-config dry run). The declarations in components.py say what each runs.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance.console_users import ConsoleUsers
from appliance.notify import config as notify_config
from appliance.secrets import ApiKey, write_private
from appliance.settings import Settings
from appliance.stack import components, render
from appliance.stack.spec import Component, Rendered

CHECKER_TIMEOUT_S = 120.0  # a checker that hangs is a failure, not a hung CLI
_OUTPUT_LINES = 40
_LINE_CHARS = 1000


@dataclass(frozen=True)
class Check:
    """One component's verdict. ``message`` is one line when ok; on failure it is
    what went wrong, ending with the checker's own output (several lines)."""

    name: str
    ok: bool
    message: str


def scratch_dir(s: Settings) -> Path:
    """Where validate renders: kept afterwards, so a failure's file can be opened."""
    return s.run_dir / "validate"


def validate(settings: Settings, keys: list[ApiKey]) -> list[Check]:
    """Render every config into ``scratch_dir(settings)`` and run, for each component
    the profile runs (in start order), its own config checker:

    - victoriametrics: its real flags plus ``-promscrape.config.dryRun`` when it scrapes
      (profile no-prometheus); beside Prometheus it reads no config file: ok, saying so
    - prometheus: ``promtool check config prometheus.yml``
    - collector: ``otelcol-tracehold validate --config=file:otelcol.yaml``
    - envoy: ``envoy --mode validate`` on the bootstrap with listeners.yaml's listeners
      made static (validate mode reads no file-based listeners by itself)
    - daemon, console, demo: no config file of their own: ok, saying so
    - notify:NAME, tracker:NAME: each notification destination's and ticket tracker's
      settings and secret (appliance/notify/config.py; nothing is contacted)

    ``keys`` are the API keys rendered into Envoy's listeners (pass the secrets
    file's); a checker's output shows them masked. Console users are read from
    ``settings.secrets_file``. A failing checker, a missing binary or a checker that
    hangs raises nothing: each is a Check with ``ok=False`` and the checker's own
    words. Only an unreadable secrets file raises (ConfigError); invalid settings
    fail before this, when they load.

    The CLI prints one line per check, then a failure's further lines, and exits
    non-zero when any failed::

        checks = validate(s, SecretsFile(s.secrets_file).load().api_keys)
        for c in checks:                      # --json: [dataclasses.asdict(c) for c in checks]
            first, *rest = c.message.splitlines()
            echo(f"{c.name:16} {'ok' if c.ok else 'FAILED':6} {first}")
            for line in rest:
                echo(f"    {line}")
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise ConfigError(f"configuration invalid: {', '.join(failed)}")
        echo("configuration valid")
    """
    root = scratch_dir(settings)
    shutil.rmtree(root, ignore_errors=True)  # never judge a stale file
    scratch = settings.model_copy(update={"data_dir": root})
    rendered = render.write_all(scratch, keys)
    # write_all reads console users from the scratch folder's (absent) secrets file;
    # the real users' lines are what Envoy will load.
    users = ConsoleUsers(settings.secrets_file).htpasswd_lines()
    write_private(rendered.envoy_listeners, render.envoy_listeners(scratch, keys, users))
    checks = [_check(c, scratch, rendered) for c in components.running(scratch)]
    checks += [Check(f.name, f.ok, f.message) for f in notify_config.check(settings)]
    return [Check(c.name, c.ok, _tidy(c.message, keys)) for c in checks]


def _tidy(text: str, keys: list[ApiKey]) -> str:
    """Keys masked; a long line loses its JSON dump (Envoy follows its reason with
    the whole config, keys included, as one line) and is cut."""
    for k in keys:
        text = text.replace(k.key, k.masked)
    lines = []
    for line in text.splitlines():
        if len(line) > _LINE_CHARS and '{"' in line:
            line = line[:line.index('{"')] + "{…}"
        lines.append(line if len(line) <= _LINE_CHARS else line[:_LINE_CHARS] + " …")
    return "\n".join(lines)


def _check(c: Component, s: Settings, rendered: Rendered) -> Check:
    binary = c.spec(s, rendered).binary
    if not binary.exists():
        return Check(c.name, False, f"binary missing: {binary} "
                                    "(run `make setup` or `tracehold setup`)")
    argv = c.check(s, rendered)
    if argv is None:
        return Check(c.name, True, f"nothing to check: {c.no_check}")
    checker = Path(argv[0])
    if not checker.exists():
        return Check(c.name, False, f"checker missing: {checker} "
                                    "(run `make setup` or `tracehold setup`)")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=CHECKER_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Check(c.name, False, f"{checker.name} did not finish in {CHECKER_TIMEOUT_S:.0f}s")
    except OSError as exc:
        return Check(c.name, False, f"cannot run {checker.name}: {exc}")
    if out.returncode == 0:
        return Check(c.name, True, f"accepted by {checker.name}")
    said = (out.stderr.strip() or out.stdout.strip()).splitlines()[-_OUTPUT_LINES:]
    return Check(c.name, False, "\n".join(
        [f"rejected by {checker.name} (exit {out.returncode}):", *said]))
