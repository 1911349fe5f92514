"""Metric windows as CSV and PNG charts. matplotlib's object API (no pyplot), so it
holds no global state and is safe in the daemon's worker threads."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from appliance.cases.model import MetricWindow


def slug(text: str, fallback: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()[:60]
    return cleaned or fallback


def window_csv(window: MetricWindow) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["unix_seconds", "time_utc", "value"])
    for ts, value in window.points:
        writer.writerow([ts, datetime.fromtimestamp(ts, UTC).isoformat(), value])
    return out.getvalue().encode()


def window_png(window: MetricWindow, onset: str | None = None) -> bytes:
    fig = Figure(figsize=(7.5, 2.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = sorted(window.points)
    xs = [datetime.fromtimestamp(ts, UTC) for ts, _ in points]
    # The two `ignore[arg-type]`s: matplotlib's stubs type x values as numbers and
    # arrays, yet it plots datetimes (its units registry converts them, and gives the
    # axis date ticks); converting here would lose that.
    if points:
        ax.plot(xs, [v for _, v in points],  # type: ignore[arg-type]
                color="#1f6feb", linewidth=1.6)
    else:
        ax.text(0.5, 0.5, "no points in this window", ha="center", va="center",
                transform=ax.transAxes)
    at = datetime.fromisoformat(onset.replace("Z", "+00:00")) if onset else None
    if at is not None and points and xs[0] <= at <= xs[-1]:  # off-window: would squash the plot
        ax.axvline(at,  # type: ignore[arg-type]
                   color="#d1242f", linestyle="--", linewidth=1, label="onset")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title(window.name or window.query[:90], fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
