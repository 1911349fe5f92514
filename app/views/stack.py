"""Stack: component health, storage and retention, API keys (masked), SDK snippet."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from appliance.console import case_notifications, shared
from appliance.console.panels import BackendDown, panel
from appliance.console_users import ConsoleUsers
from appliance.secrets import SecretsFile
from appliance.settings import Settings, resolve

_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]")


def settings() -> Settings:
    """The running stack's resolved settings (ports, retention), else the defaults."""
    return resolve(shared.config().data_dir, running=True)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def render() -> None:
    st.title("Stack")
    s = settings()
    with panel("Components"):
        _components(s)
    with panel("Storage and retention"):
        _storage()
    case_notifications.destinations()  # failing destinations, dead letters
    left, right = st.columns(2)
    with left, panel("API keys (masked)"):
        keys = [k.public() for k in SecretsFile(s.secrets_file).load().api_keys]
        st.dataframe(pd.DataFrame(keys), hide_index=True)
        st.caption("`tracehold keys create --name N` makes one (shown once); "
                   "`tracehold keys revoke ID` revokes.")
    with right, panel("Console users"):
        users = [u.public() for u in ConsoleUsers(s.secrets_file).list()]
        st.dataframe(pd.DataFrame(users), hide_index=True)
        st.caption("`tracehold users create NAME` prints a password once.")
    with panel("Send traces: SDK set-up"):
        _snippet(s)


def _components(s: Settings) -> None:
    from appliance.status import collect

    data = collect(s)
    if not data["running"]:
        st.warning(f"The stack is not running (no live supervisor for {s.data_dir}).",
                   icon=":material/warning:")
        return
    rows = [{"component": c["name"], "status": c["status"], "pid": c["pid"],
             "port": c["port"], "up (s)": round(float(c["uptime_s"])),
             "restarts": c["restarts"], "detail": c.get("detail") or ""}
            for c in data["components"]]
    bad = [r["component"] for r in rows if r["status"] != "ok"]
    if bad:
        st.warning("Not healthy: " + ", ".join(bad), icon=":material/warning:")
    else:
        st.success(f"All {len(rows)} components healthy (profile {data['profile']}).")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.dataframe(pd.DataFrame([{"endpoint": k, "url": v}
                               for k, v in data["endpoints"].items()]), hide_index=True)


def _behind(spans: int | None) -> str:
    if spans is None:
        return "—"
    return f"{spans:,} sealed spans not indexed yet" if spans else "caught up"


def _storage() -> None:
    data = shared.daemon().storage()
    if data is None:
        raise BackendDown("the Tracehold daemon", "no storage report")
    c = st.columns(4)
    c[0].metric("Spans stored", f"{data['spans']:,}")
    c[1].metric("Traces", f"{data['traces']:,}")
    c[2].metric("Ingest (1 min)", f"{data['ingest']['spans_per_s_1m']:.1f} spans/s")
    c[3].metric("Ingest (5 min)", f"{data['ingest']['spans_per_s_5m']:.1f} spans/s")
    per_span = data.get("bytes_per_span")
    st.caption(f"Last ingest: {data['last_ingest'] or 'never'} · oldest span: "
               f"{data['oldest_start'] or '—'} · span store on disk: "
               f"{f'{per_span:,.0f} bytes per span' if per_span else '—'} · text index: "
               f"{_behind(data.get('text_index_behind'))}")
    disk: dict[str, Any] = data["disk_bytes"]
    labels = {"span_store": "Span store (DuckDB file + WAL)", "prometheus": "Prometheus TSDB",
              "victoriametrics": "VictoriaMetrics data", "collector_queue":
              "Collector on-disk queue", "logs": "Component logs"}
    st.table(pd.DataFrame([{"store": labels.get(k, k), "disk used": human_bytes(v)}
                           for k, v in disk.items()]), hide_index=True)
    r = data["retention"]
    st.table(pd.DataFrame([
        {"what": "Spans (span_retention_days)", "kept": f"{r['span_retention_days']} days"},
        {"what": "Prometheus (prometheus_retention)", "kept": r["prometheus_retention"]},
        {"what": "VictoriaMetrics (victoriametrics_retention_months)",
         "kept": f"{r['victoriametrics_retention_months']} months"},
        {"what": "Collector queue (queue_max_spans)", "kept": f"{r['queue_max_spans']:,} spans"},
    ]), hide_index=True)


def browser_host(default: str) -> str:
    """The host name the browser used to reach the console (it can reach Envoy there)."""
    try:
        host = st.context.headers.get("host") or ""
    except Exception:
        host = ""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name if _HOST.fullmatch(name or "") else default


def _snippet(s: Settings) -> None:
    default = "127.0.0.1" if s.bind_address == "0.0.0.0" else s.bind_address
    host = browser_host(default)
    grpc = f"http://{host}:{s.ports.otlp_grpc}"
    http = f"http://{host}:{s.ports.otlp_http}"
    st.markdown("Any OpenTelemetry SDK: set the endpoint and your API key header "
                "(the key itself is shown only when created).")
    st.code(f'export OTEL_EXPORTER_OTLP_ENDPOINT={grpc}\n'
            f'export OTEL_EXPORTER_OTLP_HEADERS="x-api-key=<your API key>"\n'
            f'# or OTLP/HTTP: {http}', language="bash")
    st.code(
        "from opentelemetry import trace\n"
        "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter\n"
        "from opentelemetry.sdk.resources import Resource\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor\n\n"
        'provider = TracerProvider(resource=Resource.create({"service.name": "my-app"}))\n'
        f'provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(\n'
        f'    endpoint="{grpc}", insecure=True,\n'
        '    headers={"x-api-key": "<your API key>"})))\n'
        "trace.set_tracer_provider(provider)", language="python")
