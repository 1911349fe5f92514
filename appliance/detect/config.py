"""Detector thresholds, declared once (they appear in docs/configuration.md).

Every detector compares a *recent* window with the *baseline* before it, per
service (per provider for provider errors). Robust by construction: medians
for latencies and tokens, shares for error-like outcomes, means of bounded
scores, and minimum sample sizes so a quiet service never opens a case.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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
