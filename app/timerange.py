"""The time ranges the console offers and the query step and rate window for each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

RANGES: dict[str, timedelta] = {
    "15 min": timedelta(minutes=15), "1 hour": timedelta(hours=1),
    "3 hours": timedelta(hours=3), "6 hours": timedelta(hours=6),
    "12 hours": timedelta(hours=12), "24 hours": timedelta(days=1),
    "2 days": timedelta(days=2), "7 days": timedelta(days=7),
    "30 days": timedelta(days=30), "90 days": timedelta(days=90),
    "6 months": timedelta(days=182), "12 months": timedelta(days=365),
}
POINTS = 240  # per series: enough for a smooth line, little enough to stay fast
MIN_WINDOW_S = 60  # rate() needs several scrapes in its window (scrape interval 5 s)


@dataclass(frozen=True)
class Window:
    label: str
    start: datetime
    end: datetime

    @classmethod
    def last(cls, label: str, now: datetime | None = None) -> Window:
        end = (now or datetime.now(UTC)).replace(microsecond=0)
        return cls(label, end - RANGES[label], end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def step_s(self) -> int:
        """Query resolution: about POINTS points, at least 5 s (the scrape interval)."""
        return max(5, int(self.seconds // POINTS))

    @property
    def rate_window(self) -> str:
        """rate() window: at least one step (no gaps between points) and a minute."""
        return f"{max(MIN_WINDOW_S, 2 * self.step_s)}s"
