"""Every Tracehold setting, declared once.

The CLI flags, validation and ``docs/configuration.md`` all read this one
declaration (``tests/unit/test_docs.py`` fails when the doc falls behind).
Sources, highest first: CLI flags, ``TRACEHOLD_*`` environment variables
(nested with ``__``, e.g. ``TRACEHOLD_PORTS__OTLP_GRPC=14317``), the TOML file
named by ``TRACEHOLD_CONFIG`` (default ``<data_dir>/config.toml`` if present),
then the defaults below.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from appliance import resources
from appliance.domain.taxonomy import FailureType
from appliance.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCKER_SOCKET = "unix:///var/run/docker.sock"


def default_docker_host() -> str:
    """The Docker engine when none is named: ``DOCKER_HOST``, else the local socket."""
    return os.environ.get("DOCKER_HOST") or DOCKER_SOCKET


class Profile(StrEnum):
    full = "full"
    no_prometheus = "no-prometheus"
    no_vm = "no-vm"
    byo = "byo"


class Runtime(StrEnum):
    native = "native"
    docker = "docker"


class Redaction(StrEnum):
    off = "off"
    mask = "mask"
    drop = "drop"


class Ports(BaseModel):
    """Listening ports. Only the first five are reachable beyond loopback (via Envoy)."""

    otlp_grpc: int = Field(4317, description="Envoy, external: OTLP gRPC (API key)")
    otlp_http: int = Field(4318, description="Envoy, external: OTLP HTTP (API key)")
    prometheus_api: int = Field(9090, description="Envoy, external: Prometheus query API (API key)")
    victoriametrics_api: int = Field(
        8428, description="Envoy, external: VictoriaMetrics query API (API key)"
    )
    console: int = Field(8501, description="Envoy, external: console (basic auth)")
    collector_grpc: int = Field(14317, description="loopback: collector OTLP gRPC")
    collector_http: int = Field(14318, description="loopback: collector OTLP HTTP")
    collector_metrics: int = Field(18889, description="loopback: collector Prometheus exporter")
    collector_health: int = Field(13133, description="loopback: collector health check")
    collector_telemetry: int = Field(18888, description="loopback: collector's own metrics")
    collector_pprof: int = Field(
        11777, description="loopback: collector Go profiles (only with collector_pprof on)")
    prometheus: int = Field(19090, description="loopback: Prometheus")
    victoriametrics: int = Field(18428, description="loopback: VictoriaMetrics")
    daemon: int = Field(18700, description="loopback: Tracehold daemon API and /v1/traces")
    envoy_admin: int = Field(19901, description="loopback: Envoy admin (health)")
    streamlit: int = Field(18501, description="loopback: Streamlit console")

    EXTERNAL: ClassVar[tuple[str, ...]] = (
        "otlp_grpc", "otlp_http", "prometheus_api", "victoriametrics_api", "console",
    )

    def offset(self, n: int) -> Ports:
        return Ports(**{k: v + n for k, v in self.model_dump().items()})

    def free(self) -> Ports:
        """Every port replaced by one the kernel says is free now (tests, side-by-side runs)."""
        socks, chosen = [], {}
        try:
            for name in type(self).model_fields:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
                chosen[name] = s.getsockname()[1]
        finally:
            for s in socks:
                s.close()
        return Ports(**chosen)


class Price(BaseModel):
    """List price of one model, in currency units per million tokens."""

    input_per_million: float = Field(ge=0, description="price of a million input tokens")
    output_per_million: float = Field(ge=0, description="price of a million output tokens")


# Public list prices (USD) of the models the demo traffic uses; override with `prices`.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(input_per_million=2.50, output_per_million=10.00),
    "gpt-4o-mini": Price(input_per_million=0.15, output_per_million=0.60),
    "claude-3-5-sonnet": Price(input_per_million=3.00, output_per_million=15.00),
    "claude-3-haiku": Price(input_per_million=0.25, output_per_million=1.25),
    "llama-3.1-8b": Price(input_per_million=0.05, output_per_million=0.08),
    "text-embedding-3-small": Price(input_per_million=0.02, output_per_million=0.0),
}


# Detector thresholds (they appear in docs/configuration.md).
# Every detector compares a *recent* window with the *baseline* before it, per
# service (per provider for provider errors). Robust by construction: medians
# for latencies and tokens, shares for error-like outcomes, means of bounded
# scores, and minimum sample sizes so a quiet service never opens a case.
class DetectConfig(BaseModel):
    enabled: bool = Field(True, description="Run the detectors in the daemon")
    interval_s: float = Field(10.0, ge=1, description="How often the detectors run")
    recent_window_s: int = Field(90, ge=10, description="The window judged for a change")
    baseline_window_s: int = Field(1800, ge=60,
                                   description="The window before it that sets the baseline")
    min_recent: int = Field(12, ge=3, description="Fewest samples in the recent window")
    min_baseline: int = Field(20, ge=3, description="Fewest samples in the baseline")
    score_drop: float = Field(0.15, gt=0, le=1,
                              description="Drop of a mean evaluation score (0..1) that counts")
    score_stable: float = Field(0.07, gt=0, le=1,
                                description="A score within this of its baseline is healthy")
    rate_rise: float = Field(0.10, gt=0, le=1,
                             description="Rise of an error-like share (refusals, overflows)")
    provider_error_rate: float = Field(0.15, gt=0, le=1,
                                       description="Provider error share that counts as an outage")
    loop_repeats: int = Field(10, ge=3,
                              description="Same tool, same arguments, this often in one trace")
    latency_ratio: float = Field(1.6, gt=1,
                                 description="Median TTFT/duration/output tokens vs baseline")
    context_fill: float = Field(0.9, gt=0, le=1,
                                description="Input tokens / context window that counts as full")


# Notifications (appliance/notify/). Every destination is a URL the operator sets;
# nothing else is contacted. Secrets (webhook key, tokens, SMTP password) live in the
# 0600 secrets file under the destination's or tracker's name (`tracehold notify secret`).
NotifyEvent = Literal["opened", "diagnosis", "resolved", "verified", "reopened"]
NOTIFY_EVENTS: tuple[str, ...] = NotifyEvent.__args__  # type: ignore[attr-defined]


class Destination(BaseModel):
    """One place notifications go: a signed webhook, a Slack-compatible chat webhook
    (Mattermost, Rocket.Chat) or an SMTP relay."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$",
                      description="Its name (CLI, outbox, secrets file key)")
    kind: Literal["webhook", "chat", "email"] = Field(description="webhook, chat or email")
    url: str = Field(description="webhook/chat: the URL POSTed to; email: smtp://host:port "
                                 "(smtps:// for TLS from the start)")
    events: list[NotifyEvent] = Field(["opened", "diagnosis", "resolved", "verified",
                                       "reopened"],
                                      description="Which case events are sent")
    failure_types: list[str] = Field([], description="Only cases of these types (empty: all)")
    services: list[str] = Field([], description="Only cases of these services (empty: all)")
    max_tries: int = Field(12, ge=1, description="Tries before a message is a dead letter")
    mail_from: str | None = Field(None, description="email: the From address")
    mail_to: list[str] = Field([], description="email: the recipients")
    starttls: bool = Field(False, description="email: STARTTLS before sending")
    username: str | None = Field(None, description="email: SMTP login (password in secrets)")
    ca_file: Path | None = Field(None, description="CA bundle for a private CA (TLS)")


class Tracker(BaseModel):
    """A ticket system: GitHub (github.com or Enterprise Server by URL) or Jira Data
    Center. The token is in the secrets file under ``github`` or ``jira``."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="GitHub: the REST API base (https://HOST/api/v3 on "
                                 "Enterprise Server); Jira: the server's base URL")
    project: str = Field(description="GitHub: owner/repo; Jira: the project key")
    labels: list[str] = Field(["tracehold"], description="GitHub: labels on the issue")
    issue_type: str = Field("Bug", description="Jira: the issue type's name")
    username: str | None = Field(None, description="Jira: basic auth user (else the token "
                                                   "is a bearer personal access token)")
    ca_file: Path | None = Field(None, description="CA bundle for a private CA")


class NotifyConfig(BaseModel):
    destinations: list[Destination] = Field([], description="Where case events are sent")
    github: Tracker | None = Field(None, description="GitHub tracker for `cases ticket`")
    jira: Tracker | None = Field(None, description="Jira Data Center tracker")
    console_url: str = Field("", description="The console's address as people reach it "
                                             "(links in messages); empty: no link")
    poll_interval_s: float = Field(2.0, gt=0, le=60,
                                   description="How often the outbox worker looks for work")
    backoff_base_s: float = Field(5.0, gt=0, description="First retry delay; doubles per try")
    backoff_max_s: float = Field(300.0, gt=0, description="Longest delay between tries")
    timeout_s: float = Field(10.0, gt=0, description="One delivery attempt's timeout")


# The built-in evaluators (appliance/evals/evaluators.py), by the score name each writes.
EVALUATORS: tuple[str, ...] = ("groundedness", "relevance", "retrieval_relevance", "coherence",
                               "repetition", "refusal", "format_validity")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRACEHOLD_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Field(
        Path.home() / ".tracehold",
        description="Where databases, queues, logs, secrets and rendered configs live",
    )
    bin_dir: Path = Field(
        # declared after data_dir, so its validated value is in `data`
        default_factory=lambda data: resources.default_bin_dir(data["data_dir"]),
        description="Component binaries (collector, prometheus, victoria-metrics), put there by "
                    "`tracehold setup`: `.stack/bin` in a source checkout (`make setup`), "
                    "else `<data_dir>/bin`",
    )
    profile: Profile = Field(Profile.full, description="Which components run (see README)")
    runtime: Runtime = Field(
        Runtime.native,
        description="How components run: native (child processes) or docker (one container "
                    "each, host networking, images from the bundle; see README)",
    )
    docker_host: str = Field(
        default_factory=default_docker_host,
        description="runtime docker: the Docker engine's address (default: DOCKER_HOST, "
                    f"else {DOCKER_SOCKET})",
    )
    images_dir: Path | None = Field(
        None,
        description="runtime docker: the bundle's images folder (images.lock and the image "
                    "archives); an image the engine lacks is loaded from it. None: none",
    )
    bind_address: str = Field(
        "0.0.0.0",
        description="Address Envoy's external listeners bind; everything else is 127.0.0.1",
    )
    ports: Ports = Field(default_factory=Ports, description="Listening ports")
    byo_prometheus_url: str | None = Field(
        None, description="profile byo/no-prometheus: an existing Prometheus to query"
    )
    byo_victoriametrics_url: str | None = Field(
        None, description="profile byo/no-vm: an existing VictoriaMetrics to query"
    )
    scrape_interval_s: int = Field(5, ge=1, le=60, description="Prometheus scrape interval")
    prometheus_retention: str = Field("2d", description="Prometheus local retention (short)")
    victoriametrics_retention_months: int = Field(12, ge=1, description="VictoriaMetrics retention")
    span_retention_days: int = Field(30, ge=1, description="Spans older than this are deleted")
    span_store_memory_limit: str = Field(
        "2GB", pattern=r"^[0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="Memory the daemon's DuckDB may use (cache, unsealed spans, sorts; "
                    "beyond it, it spills to disk), e.g. 2GB",
    )
    text_index_cpu: float = Field(
        0.1, ge=0, le=1,
        description="Share of one core the daemon's text indexer may use on average to "
                    "build block filters for sealed spans, which let a text search skip "
                    "spans that cannot match; it also pauses while ingest keeps the store "
                    "busy more than a tenth of the time. 0 turns it off (the search then "
                    "reads all the range's text)",
    )
    spanmetrics_flush_interval: str = Field(
        "2s", description="How often the collector flushes derived metrics"
    )
    metrics_cardinality_limit: int = Field(
        5000, ge=100, description="Max label combinations per derived metric; overflow is labelled"
    )
    duration_buckets_s: list[float] = Field(
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120],
        description="Latency histogram buckets (seconds), LLM scale",
    )
    evaluation_names: list[str] = Field(
        ["groundedness", "faithfulness", "relevance", "coherence", "retrieval_relevance",
         "repetition"],
        description="Evaluation names (gen_ai.evaluation.name) turned into score histograms",
    )
    redaction: Redaction = Field(
        Redaction.off, description="Prompt/output attributes: off, mask (redaction processor), drop"
    )
    redaction_keys: list[str] = Field(
        [
            "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
            "gen_ai.prompt", "gen_ai.completion", "input.value", "output.value",
            "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
        ],
        description="Attributes redaction masks or drops",
    )
    tail_sampling: bool = Field(
        False,
        description="Store only errors, slow traces and a share of the rest (metrics see all)",
    )
    tail_sampling_percent: float = Field(
        10.0, ge=0, le=100, description="Share of normal traces kept"
    )
    tail_sampling_slow_ms: int = Field(5000, ge=1, description="Traces slower than this are kept")
    queue_max_spans: int = Field(
        500_000, ge=1000, description="Collector's on-disk queue to the span store, in spans"
    )
    queue_fsync: bool = Field(
        False, description="fsync the on-disk queue on every write (survives power loss, slower)"
    )
    collector_pprof: bool = Field(
        False, description="Serve the collector's Go CPU and heap profiles (pprof) on loopback "
                           "port ports.collector_pprof, to see where its CPU or memory goes "
                           "(`go tool pprof http://127.0.0.1:11777/debug/pprof/heap`)")
    collector_max_request_mib: int = Field(
        16, ge=1, description="Largest OTLP request the collector accepts (413 above)"
    )
    collector_memory_limit_mib: int = Field(
        512, ge=64, description="Collector refuses data (retryable) above this memory"
    )
    ingest_max_body_mib: int = Field(
        128, ge=1, description="Largest request the daemon's /v1/traces accepts"
    )
    ingest_max_attributes: int = Field(
        1024, ge=16, description="Attributes kept per span; the rest are counted as dropped"
    )
    ingest_native_walker: bool = Field(
        True, description="Decode OTLP/protobuf requests with the native walker (C), which "
                          "leaves to the Python decoder any request it cannot decode "
                          "exactly as Python does; false: Python decodes every request "
                          "(slower; the same rows)")
    detect: DetectConfig = Field(default_factory=DetectConfig,
                                 description="Detector thresholds (see below)")
    evals_enabled: bool = Field(
        True, description="Score stored model calls with the built-in evaluators where the "
                           "app sent no score of the same name (appliance/evals/)")
    evals_evaluators: list[str] = Field(
        list(EVALUATORS), description="Which built-in evaluators run: " + ", ".join(EVALUATORS))
    evals_sample_rate: float = Field(
        0.5, gt=0, le=1, description="Share of model calls the daemon scores (a hash of the "
                                     "span id, so a re-run picks the same ones)")
    evals_cpu_budget: float = Field(
        0.25, gt=0, le=1, description="Share of one core the evaluator worker may use; sampled "
                                      "calls beyond it are left unscored")
    evals_interval_s: float = Field(5.0, ge=1, le=300,
                                    description="How often the evaluator worker looks for calls")
    restart_unhealthy_after_s: float = Field(
        60.0, ge=0,
        description="Kill and restart a component whose health check fails this long (0: never)",
    )
    restart_backoff_max_s: float = Field(
        30.0, ge=1, description="Longest wait before restarting a crashed component"
    )
    health_check_interval_s: float = Field(
        5.0, gt=0, le=60,
        description="How often the stack manager asks a healthy component's health endpoint "
                    "and refreshes the state file's uptimes; a crash is noticed within half "
                    "a second regardless, a starting or failing component is asked every "
                    "half second",
    )
    demo: bool = Field(
        False, description="Also run demo GenAI traffic (`tracehold demo` at its default rate) "
                           "as a supervised component, sent through Envoy with the first API key",
    )
    demo_scenario: FailureType | Literal["normal", "none"] = Field(
        FailureType.retrieval_drift,
        description="With `demo`: the failure scenario the demo traffic injects "
                    "`demo_scenario_after_s` after it starts, so a case opens and is diagnosed "
                    "with no step by hand (a failure type, `normal` for a harmless deploy, "
                    "`none` for never; `tracehold up --demo --no-demo-scenario`)",
    )
    demo_scenario_after_s: float = Field(
        120.0, ge=0, description="With `demo`: seconds of healthy traffic before the scenario "
                                 "starts (the detectors' baseline)",
    )
    demo_app_scores: bool = Field(
        True, description="With `demo`: the demo apps send evaluation and retrieval scores of "
                          "their own; false leaves the scoring to the built-in evaluators, as "
                          "for apps whose instrumentation sends none "
                          "(`tracehold up --demo --no-app-scores`)",
    )
    case_note_max_kib: int = Field(
        64, ge=1, le=1024, description="Largest case note; a larger one is refused (413)"
    )
    case_max_trace_ids: int = Field(
        1000, ge=10, description="Trace ids kept per case; more are counted, not kept"
    )
    case_change_lookback_hours: float = Field(
        24, ge=0, description="Change events this long before a case's onset join its context"
    )
    rca_enabled: bool = Field(
        True, description="Run the RCA worker in the daemon: each case is diagnosed when it "
                          "opens, when new evidence joins it and on request"
    )
    rca_debounce_s: float = Field(
        60.0, ge=0, description="RCA: wait this long after new evidence joins a case before "
                                "diagnosing it again (one run for a burst of occurrences)"
    )
    sla_resolve_hours: float = Field(
        24, gt=0, description="A case open longer than this is an SLA breach (compliance report)"
    )
    audit_sign_interval_hours: float = Field(
        24, gt=0, description="How often the daemon signs the audit chain head (also on export)"
    )
    quality_thresholds: dict[str, float] = Field(
        {"groundedness": 0.7, "faithfulness": 0.7, "relevance": 0.7, "coherence": 0.7,
         "retrieval_relevance": 0.6},
        description="Lowest acceptable mean evaluation score per name (compliance report)",
    )
    prices: dict[str, Price] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="Cost per model: {model: {input_per_million, output_per_million}}; a model "
                    "matches its key exactly or as a dated variant (`gpt-4o-2024-08-06`); "
                    "models not listed are reported unpriced, never at zero",
    )
    console_refresh_s: int = Field(
        30, ge=5, description="Console: how often the Overview auto-refreshes, seconds"
    )
    rca_model_name: str = Field(
        "smollm2-135m-instruct",
        description="RCA local model: a name from models/manifest.toml (smollm2-135m-instruct, "
                    "gemma-3-270m), or the path of your own GGUF file (a relative path is "
                    "looked up in <data_dir>/models, then the checkout's models/)",
    )
    rca_model_ctx: int = Field(
        2048, ge=512, le=131072,
        description="RCA local model: context size in tokens (at most the model's own)",
    )
    rca_model_threads: int = Field(
        1, ge=1, le=256,
        description="RCA local model: CPU threads llama.cpp uses. 1 by default: llama.cpp's "
                    "threads wait on each other by spinning, so on 2 busy cores 2 threads "
                    "answered 2.7x slower than 1 (bench/results/rca-model.json)",
    )
    rca_model_gpu_layers: int = Field(
        0, ge=-1, description="RCA local model: layers offloaded to a GPU (-1: all, 0: CPU only)"
    )
    rca_model_timeout_s: float = Field(
        20.0, gt=0, description="RCA local model: longest one answer may take, seconds"
    )
    rca_model_max_tokens: int = Field(
        256, ge=32, le=4096, description="RCA local model: most tokens one answer may have"
    )
    notify: NotifyConfig = Field(default_factory=NotifyConfig,
                                 description="Notifications and tickets (see below)")

    @field_validator("evals_evaluators")
    @classmethod
    def _known_evaluators(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(EVALUATORS))
        if unknown:
            raise ValueError(f"unknown evaluators {unknown}; known: {', '.join(EVALUATORS)}")
        return names

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        # The data folder named by the caller (a --data-dir flag) decides which
        # config.toml applies, not only the environment's.
        given = getattr(init_settings, "init_kwargs", {}).get("data_dir")
        config = config_file(Path(given) if given is not None else None)
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @field_validator("bind_address")
    @classmethod
    def _valid_address(cls, v: str) -> str:
        ipaddress.IPv4Address(v)  # raises ValueError with the reason
        return v

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        seen: dict[int, str] = {}
        for name, port in self.ports.model_dump().items():
            if not 0 < port < 65536:
                raise ValueError(f"port {name}={port} is out of range")
            if port in seen:
                raise ValueError(f"ports {seen[port]} and {name} are both {port}")
            seen[port] = name
        return self

    # Paths inside the data folder, named once.
    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.json"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def effective_file(self) -> Path:
        return effective_file(self.data_dir)

    @property
    def span_db(self) -> Path:
        return self.data_dir / "spans.duckdb"

    @property
    def kb_dir(self) -> Path:
        """The RCA knowledge base (a Chroma folder)."""
        return self.data_dir / "kb"

    @property
    def audit_key_file(self) -> Path:
        return self.data_dir / "audit-signing-key.pem"

    @property
    def audit_public_key_file(self) -> Path:
        return self.data_dir / "audit-signing-key.pub.pem"

    def dump_effective(self) -> None:
        """Write the resolved settings so children and later CLI calls use the same ports."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.effective_file.write_text(self.model_dump_json(indent=2))

    @classmethod
    def load_effective(cls, data_dir: Path) -> Settings:
        return cls.model_validate(json.loads(effective_file(data_dir).read_text()))


def effective_file(data_dir: Path) -> Path:
    """Where a running stack on ``data_dir`` wrote the settings it really took."""
    return data_dir / "run" / "effective-settings.json"


def data_dir_default() -> Path:
    """``TRACEHOLD_DATA_DIR`` if set, else ``~/.tracehold``."""
    return Path(os.environ.get("TRACEHOLD_DATA_DIR") or Path.home() / ".tracehold")


def config_file(data_dir: Path | None = None) -> Path | None:
    """The TOML file that applies: ``TRACEHOLD_CONFIG``, else ``<data_dir>/config.toml``
    if it exists, where data_dir is the one given, else the environment's or default."""
    named = os.environ.get("TRACEHOLD_CONFIG")
    if named:
        return Path(named)
    default = (data_dir or data_dir_default()) / "config.toml"
    return default if default.exists() else None


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line per field: ``ports.daemon: Input should be ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                     for e in exc.errors())


def resolve(data_dir: Path | None = None, *, running: bool = False,
            **overrides: Any) -> Settings:
    """The settings every entry point uses (CLI, daemon, demo, console).

    Sources, highest first: ``overrides`` (CLI flags; None means 'not given'), the
    environment, the data folder's ``config.toml`` (or ``TRACEHOLD_CONFIG``), defaults.
    The data folder is ``data_dir`` if given, else ``TRACEHOLD_DATA_DIR``, else
    ``~/.tracehold``. With ``running``, a stack started on that folder wins: its
    effective settings (the ports it really took) are returned instead.
    Invalid settings raise ``ConfigError`` naming each bad field.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        given["data_dir"] = data_dir
    try:
        # A running stack's folder is known without building every source (fast
        # `status`), unless a named config file might move the folder itself.
        folder = data_dir or data_dir_default()
        if running and not os.environ.get("TRACEHOLD_CONFIG") and \
                effective_file(folder).exists():
            return Settings.load_effective(folder)
        s = Settings(**given)
        if running and s.effective_file.exists():
            return Settings.load_effective(s.data_dir)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {describe(exc)}") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"unreadable settings file: {exc}") from exc
    return s
