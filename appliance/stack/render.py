"""Render the component configs in bundled-stack/ for one runtime.

The templates are the single source: the same files drive the native runtime
(paths in the data folder) and, later, the Docker runtime. Rendering is pure
(settings in, text out); ``write_all`` puts the results in the run folder.
"""

from __future__ import annotations

import secrets as _secrets
from pathlib import Path

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from appliance import console_users, resources
from appliance.headers import USER_HEADER
from appliance.ingest import conventions
from appliance.secrets import ApiKey, write_private
from appliance.settings import Redaction, Settings
from appliance.stack.components import runs
from appliance.stack.spec import Rendered

TEMPLATES = resources.templates()

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def envoy_dir(s: Settings) -> Path:
    return Rendered.under(s.run_dir).envoy_listeners.parent


def _parse(text: str) -> str:
    yaml.safe_load(text)  # a template bug should fail here, not in the component
    return text


def collector_config(s: Settings) -> str:
    store_processors = []
    if s.redaction is Redaction.mask:
        store_processors.append("redaction/prompts")
    elif s.redaction is Redaction.drop:
        store_processors.append("transform/drop_prompts")
    if s.tail_sampling:
        store_processors.append("tail_sampling")
    text = _env.get_template("otelcol/config.yaml.j2").render(
        s=s,
        ports=s.ports,
        queue_dir=str(s.data_dir / "collector-queue"),
        alias_pairs=conventions.alias_pairs(),
        openinference_kinds=conventions.OPENINFERENCE_KINDS,
        openinference_kind=conventions.OPENINFERENCE_KIND,
        evaluation_event=conventions.EVALUATION_EVENT,
        evaluation_name=conventions.EVALUATION_NAME,
        evaluation_score=conventions.EVALUATION_SCORE,
        metric_dimensions=conventions.METRIC_DIMENSIONS,
        store_processors=store_processors,
    )
    return _parse(text)


def prometheus_config(s: Settings) -> str:
    return _parse(_env.get_template("prometheus/prometheus.yml.j2").render(s=s, ports=s.ports))


def vm_scrape_config(s: Settings) -> str:
    return _parse(_env.get_template("victoriametrics/scrape.yml.j2").render(s=s, ports=s.ports))


def envoy_bootstrap(s: Settings) -> str:
    p = s.ports
    clusters = [
        {"name": "collector_grpc", "port": p.collector_grpc, "http2": True},
        {"name": "collector_http", "port": p.collector_http, "http2": False},
        {"name": "prometheus", "port": p.prometheus, "http2": False},
        {"name": "victoriametrics", "port": p.victoriametrics, "http2": False},
        {"name": "console", "port": p.streamlit, "http2": False},
    ]
    text = _env.get_template("envoy/bootstrap.yaml.j2").render(
        ports=p, clusters=clusters, envoy_dir=str(envoy_dir(s))
    )
    return _parse(text)


def envoy_listeners(s: Settings, keys: list[ApiKey], users: list[str] | None = None) -> str:
    """``users``: htpasswd ``{SHA}`` lines for the console listener (console_users.py)."""
    p = s.ports
    listeners = [
        {"name": "otlp_grpc", "port": p.otlp_grpc, "cluster": "collector_grpc",
         "max_request_bytes": 0},
        {"name": "otlp_http", "port": p.otlp_http, "cluster": "collector_http",
         "max_request_bytes": s.collector_max_request_mib * 1048576},
    ]
    # The query APIs point at whichever store runs; byo has neither here.
    if runs(s, "prometheus"):
        listeners.append({"name": "prometheus_api", "port": p.prometheus_api,
                          "cluster": "prometheus", "max_request_bytes": 0})
    if runs(s, "victoriametrics"):
        listeners.append({"name": "victoriametrics_api", "port": p.victoriametrics_api,
                          "cluster": "victoriametrics", "max_request_bytes": 0})
    text = _env.get_template("envoy/listeners.yaml.j2").render(
        listeners=listeners,
        keys=[k for k in keys if k.active],
        bind_address=s.bind_address,
        # With every key revoked the filter still needs a credential: one nobody knows.
        locked_key=_secrets.token_urlsafe(32),
        console={"port": p.console, "header": USER_HEADER,
                 "users": users or [console_users.locked_line()]},
    )
    return _parse(text)


def write_listeners(s: Settings, keys: list[ApiKey]) -> Path:
    """(Re)write Envoy's listeners; a running Envoy picks the change up by itself."""
    path = envoy_dir(s) / "listeners.yaml"
    users = console_users.ConsoleUsers(s.secrets_file).htpasswd_lines()
    write_private(path, envoy_listeners(s, keys, users))
    return path


def write_all(s: Settings, keys: list[ApiKey]) -> Rendered:
    s.run_dir.mkdir(parents=True, exist_ok=True)
    out = Rendered.under(s.run_dir)
    out.collector.write_text(collector_config(s))
    out.prometheus.write_text(prometheus_config(s))
    out.vm_scrape.write_text(vm_scrape_config(s))
    write_private(out.envoy_bootstrap, envoy_bootstrap(s))
    write_listeners(s, keys)
    return out
