"""PromQL through prometheus-api-client, against the store that holds the range.

Prometheus keeps a short history (``prometheus_retention``) and VictoriaMetrics a
long one; the same PromQL works on both. A range that starts before Prometheus'
retention goes to VictoriaMetrics, anything else to Prometheus, and each chart's
caption says which and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from appliance.console.config import ConsoleConfig
from appliance.console.panels import BackendDown, BackendError
from appliance.console.timerange import Window


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    why: str

    @property
    def caption(self) -> str:
        return f"Source: {self.name} — {self.why}"


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} d" if seconds >= 86400 else f"{seconds / 3600:g} h"


def choose(cfg: ConsoleConfig, window: Window, now: datetime | None = None) -> Source | None:
    """Prometheus for ranges it still holds, VictoriaMetrics beyond; None without either."""
    now = now or datetime.now(UTC)
    keep = _days(cfg.prometheus_retention_s)
    beyond = window.start < now - timedelta(seconds=cfg.prometheus_retention_s)
    if beyond and cfg.victoriametrics_url:
        return Source("VictoriaMetrics", cfg.victoriametrics_url,
                      f"the range reaches back beyond Prometheus' {keep} retention")
    if cfg.prometheus_url:
        why = (f"recent range, within Prometheus' {keep} retention" if not beyond else
               f"no VictoriaMetrics in this profile: only the last {keep} have data")
        return Source("Prometheus", cfg.prometheus_url, why)
    if cfg.victoriametrics_url:
        return Source("VictoriaMetrics", cfg.victoriametrics_url,
                      "no Prometheus in this profile")
    return None


def _number(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else math.nan


class Metrics:
    """Range and instant queries; failures as BackendDown/BackendError naming the store."""

    def __init__(self, source: Source, timeout: float = 10) -> None:
        self.source = source
        session = requests.Session()
        session.trust_env = False  # loopback only: never through a proxy from the env
        # no retries with backoff: a stopped store should turn into a message at once
        self._client = PrometheusConnect(url=source.url, session=session,
                                         retry=Retry(total=0), timeout=int(timeout))

    def _call(self, fn: Any, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = fn(*args, **kw)
            return result
        except requests.RequestException as exc:
            raise BackendDown(self.source.name,
                              f"{self.source.url}: {type(exc).__name__}") from exc
        except PrometheusApiClientException as exc:
            text = str(exc)
            if any(f"Code {code}" in text for code in (502, 503, 504)):
                raise BackendDown(self.source.name, text[:200]) from exc
            raise BackendError(self.source.name, text[:300]) from exc

    def range(self, promql: str, window: Window, legend: tuple[str, ...] = ()) -> pd.DataFrame:
        """Long frame: time (UTC), series (the ``legend`` labels joined), value."""
        result = self._call(self._client.custom_query_range, promql,
                            start_time=window.start, end_time=window.end,
                            step=str(window.step_s))
        rows = []
        for series in result:
            labels = series.get("metric", {})
            name = " / ".join(labels.get(k) or "(none)" for k in legend) or promql_label(promql)
            for ts, value in series.get("values", []):
                v = _number(value)
                if not math.isnan(v):
                    rows.append((datetime.fromtimestamp(float(ts), UTC), name, v))
        return pd.DataFrame(rows, columns=["time", "series", "value"])

    def metric_names(self, prefix: str, window: Window) -> list[str]:
        """Metric names starting with ``prefix`` that have data in the window."""
        params = {"start": f"{window.start.timestamp():.0f}",
                  "end": f"{window.end.timestamp():.0f}"}
        try:
            names: list[str] = self._client.get_label_values("__name__", params=params)
        except requests.RequestException as exc:
            raise BackendDown(self.source.name,
                              f"{self.source.url}: {type(exc).__name__}") from exc
        except PrometheusApiClientException as exc:
            raise BackendError(self.source.name, str(exc)[:300]) from exc
        return sorted(n for n in names if n.startswith(prefix))


def promql_label(promql: str) -> str:
    return promql if len(promql) < 40 else promql[:37] + "…"
