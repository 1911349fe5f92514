"""The traffic loop: paces traces in real time (Poisson arrivals at `rate`, optionally
shaped over the day), logs the scenario onset, reports progress, and returns
the summary once the duration is over or it is told to stop."""

from __future__ import annotations

import json
import math
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.demo import groundtruth
from appliance.demo.names import ScenarioName
from appliance.demo.scenarios import ALL, SCENARIOS, SERVICES
from appliance.demo.sink import Sink, otlp
from appliance.demo.traffic import Traffic
from appliance.errors import ConfigError, InvalidRequest
from appliance.secrets import SecretsFile
from appliance.settings import Settings
from appliance.stack import state

PEAK_HOUR_UTC = 14


@dataclass
class Options:
    rate: float = 2.0  # traces per second (the daily mean with daily_shape)
    duration: float | None = None  # seconds; None runs until stopped
    seed: int | None = None
    scenario: ScenarioName | None = None
    at: float = 60.0  # scenario onset, seconds after the start
    service: str | None = None  # the scenario's target service
    daily_shape: bool = False
    progress_every: float = 5.0
    app_scores: bool = True  # False: the apps send no scores of their own

    def check(self) -> None:
        if not self.rate > 0:
            raise InvalidRequest("--rate must be above 0")
        if self.duration is not None and self.duration <= 0:
            raise InvalidRequest("--duration must be above 0")
        if self.at < 0:
            raise InvalidRequest("--at must be 0 or more")
        if self.service is not None and self.scenario is None:
            raise InvalidRequest("--service picks the service a --scenario targets; "
                                 "give --scenario")
        if self.service is not None and self.service not in SERVICES:
            raise InvalidRequest(f"unknown service {self.service!r}; one of {', '.join(SERVICES)}")
        if self.scenario is not None:
            SCENARIOS[self.scenario].target(self.service)  # raises if it cannot target it
        if self.scenario is not None and self.duration is not None and self.duration <= self.at:
            raise InvalidRequest(f"the scenario starts at --at {self.at:g}s, after the run ends "
                              f"(--duration {self.duration:g}s)")


def daily_factor(epoch_s: float) -> float:
    """Traffic over the day: 1.6x the mean at 14:00 UTC, 0.4x at 02:00; mean 1."""
    hour = datetime.fromtimestamp(epoch_s, UTC)
    h = hour.hour + hour.minute / 60
    return 1 + 0.6 * math.cos(2 * math.pi * (h - PEAK_HOUR_UTC) / 24)


def run(opts: Options, sink: Sink, run_dir: Path, progress: Callable[[str], None],
        stop: threading.Event, clock: Callable[[], float] = time.time,
        wait: Callable[[float], bool] | None = None) -> dict[str, Any]:
    """Send traffic until the duration is over or `stop` is set; returns the summary.

    `clock` and `wait` (returns True when told to stop) are the real clock
    unless a test drives time itself.
    """
    opts.check()
    seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
    scenario = SCENARIOS[opts.scenario] if opts.scenario else None
    traffic = Traffic(sink, seed, scenario, opts.at, opts.service, opts.app_scores)
    wait = wait or stop.wait
    timing = random.Random(f"{seed}:timing")
    start = clock()
    elapsed = 0.0  # the schedule: when the next trace is due, seconds after start
    traces = spans = 0
    truth: dict[str, Any] | None = None
    next_report = opts.progress_every
    progress(f"demo traffic: {opts.rate:g} traces/s, seed {seed}"
             + (f", scenario {scenario.name} at +{opts.at:g}s ({scenario.what})"
                if scenario else ""))
    while not stop.is_set() and (opts.duration is None or elapsed < opts.duration):
        delay = start + elapsed - clock()
        if delay > 0 and wait(delay):
            break
        if scenario is not None and truth is None and elapsed >= opts.at:
            target = traffic.target or ALL
            affected = list(SERVICES) if target == ALL else [target]
            extra = {"provider": scenario.provider} if scenario.provider else {}
            truth = groundtruth.record(run_dir, str(scenario.name), target, affected,
                                       start + opts.at, seed, **extra)
            progress(f"scenario onset (ground truth): {json.dumps(truth)}")
        sent = traffic.step(elapsed, int(clock() * 1e9))
        traces, spans = traces + 1, spans + sent.spans
        if clock() - start >= next_report:
            next_report = ((clock() - start) // opts.progress_every + 1) * opts.progress_every
            acked = sum(sink.acknowledged().values())
            progress(f"{clock() - start:7.0f}s  traces {traces}  spans {spans}  "
                     f"acknowledged {acked}  failed {sum(sink.failed().values())}"
                     + (f"  [{scenario.name} active]"
                        if sent.scenario_active and scenario is not None else ""))
        rate = opts.rate * (daily_factor(start + elapsed) if opts.daily_shape else 1.0)
        elapsed += timing.expovariate(rate)
    seconds = clock() - start
    progress("flushing …")
    sink.shutdown()
    return summary(traffic, sink, seed, opts, seconds, truth)


def summary(traffic: Traffic, sink: Sink, seed: int, opts: Options, seconds: float,
            truth: dict[str, Any] | None) -> dict[str, Any]:
    acked, failed = sink.acknowledged(), sink.failed()
    services = {name: {"traces": traffic.traces[name], "spans_sent": sink.sent[name],
                       "acknowledged": acked[name], "failed": failed[name]}
                for name in SERVICES if traffic.traces[name]}
    sent = sum(sink.sent.values())
    return {
        "traces": sum(traffic.traces.values()), "spans_sent": sent,
        "acknowledged": sum(acked.values()), "failed": sum(failed.values()),
        # Neither acknowledged nor failed: dropped by a full SDK queue.
        "dropped": sent - sum(acked.values()) - sum(failed.values()),
        "seconds": round(seconds, 2), "rate": opts.rate, "daily_shape": opts.daily_shape,
        "seed": seed, "scenario": str(opts.scenario) if opts.scenario else None,
        "app_scores": opts.app_scores,
        "ground_truth": truth, "services": services,
    }


def run_against(s: Settings, opts: Options, progress: Callable[[str], None]) -> dict[str, Any]:
    """Send through the appliance's Envoy OTLP gRPC listener with its first active key,
    until the duration is over or SIGINT/SIGTERM (then flush and summarise)."""
    keys = SecretsFile(s.secrets_file).load().active_keys()
    if not keys:
        raise ConfigError("no active API key; create one with `tracehold keys create --name N`")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run(opts, otlp(state.endpoints(s)["otlp_grpc"], keys[0].key), s.run_dir,
                   progress, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
