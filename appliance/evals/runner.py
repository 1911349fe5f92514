"""Pick stored model calls and score them: the shared half of the daemon's worker and
``tracehold evals run``.

Which calls: model calls (``MODEL_CALL_OPERATIONS``) with output content, not yet
evaluated, in a deterministic sample (a hash of the span id, so a re-run picks the same
calls). Which evaluators: the enabled ones, minus any the app already scored itself
(its score of the same name, or an alias, always wins). The CPU budget is a share of one
core: after each call the runner rests so that its busy time stays within the budget
(the embedder runs on the calling thread when built with ``threads=1``, so the thread's
CPU time is the cost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.errors import InvalidRequest
from appliance.evals.content import call_of
from appliance.evals.evaluators import Encoder, Evaluators
from appliance.evals.store import EvalStore, Evaluation
from appliance.ingest.conventions import BY_COLUMN, MODEL_CALL_OPERATIONS
from appliance.store import partitions
from appliance.store.spans import SEEN as SEEN  # the worker's windows use it too
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.evals")
_OP = BY_COLUMN["operation"].column
_CALLS = f"{_OP} IN ({', '.join(repr(op) for op in MODEL_CALL_OPERATIONS)})"  # fixed names
_HASH_RANGE = 1_000_000
# The span columns a round reads (through partitions.copies_sql).
_COLUMNS = ("trace_id, span_id, service_name, start_time, end_time, received_at, "
            f"{_OP}, input_messages, output_messages, attributes, events, retrieval_scores, "
            "eval_scores")
# A trace's retrieval arrives within this long of its model call (the same or a nearby
# export batch; a collector's retry queue delays both alike).
RETRIEVAL_SLACK = timedelta(minutes=10)


@dataclass
class RunStats:
    calls: int = 0  # model calls with content in the window, not yet evaluated
    sampled: int = 0
    evaluated: int = 0  # calls that got at least one row
    scores: int = 0
    not_scored: int = 0
    over_budget: int = 0  # sampled but left out to keep within the CPU budget
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_s"], d["wall_s"] = round(self.cpu_s, 3), round(self.wall_s, 3)
        d["evaluations_per_s"] = round(self.evaluated / self.wall_s, 2) if self.wall_s else None
        return d


class EvalRunner:
    def __init__(self, store: SpanStore, evals: EvalStore, evaluators: Evaluators,
                 sample_rate: float = 1.0, cpu_budget: float = 1.0) -> None:
        self.store, self.evals, self.evaluators = store, evals, evaluators
        self.sample_rate, self.cpu_budget = sample_rate, cpu_budget
        self.cost_per_call = 0.05  # CPU seconds, refined as calls are scored

    def pending(self, where: str, params: Sequence[Any], sample_rate: float,
                limit: int = 100_000, max_calls: int | None = None
                ) -> tuple[int, int, list[dict[str, Any]]]:
        """(how many calls are waiting, how many of them the sample takes, the ones to
        score now): model calls with an answer in ``where`` (a fixed fragment on span
        columns, values in ``params``) that have no evaluation yet; at most ``max_calls``
        of the sample, spread over the window rather than its start.

        The sample's keys are read first and the content of only the calls kept, and
        ``where`` goes into the hot rows' dedup (``partitions.copies_sql``): a round at a
        high call rate keeps a few dozen of thousands, and reading every sampled row's
        messages through the whole ``spans`` view slowed the daemon's ingest by a quarter
        (bench/results/evals-ingest-before.json)."""
        rows_of = f"FROM {partitions.copies_sql(_COLUMNS, where)} spans"
        both = [*params, *params]
        base = (f"{rows_of} WHERE {_CALLS} AND output_messages IS NOT NULL AND NOT EXISTS ("
                "SELECT 1 FROM evaluations e WHERE e.trace_id = spans.trace_id "
                "AND e.span_id = spans.span_id)")
        total = int(self.store.read(
            f"SELECT count(DISTINCT (trace_id, span_id)) AS n {base}", both)[0]["n"])
        keys = self.store.read(
            f"SELECT trace_id, span_id, min(received_at) AS received_at {base} "
            f"AND hash(span_id) % {_HASH_RANGE} < ? GROUP BY trace_id, span_id "
            "ORDER BY received_at, span_id LIMIT ?",
            [*both, int(sample_rate * _HASH_RANGE), limit])
        keep = keys
        if max_calls is not None and len(keys) > max_calls:
            stride = len(keys) / max(max_calls, 1)
            keep = [keys[int(i * stride)] for i in range(max(max_calls, 0))]
        if not keep:
            return total, len(keys), []
        wanted = {(k["trace_id"], k["span_id"]) for k in keep}
        rows = self.store.read(
            "SELECT trace_id, span_id, service_name, input_messages, output_messages, "
            "attributes::VARCHAR AS attributes, events::VARCHAR AS events, retrieval_scores, "
            f"map_keys(eval_scores) AS app_scores, received_at, {SEEN} AS seen {base} "
            "AND span_id IN (SELECT unnest(?)) ORDER BY received_at, span_id",
            [*both, sorted({k["span_id"] for k in keep})])
        out = []
        for r in rows:  # the first copy of each kept call
            if (key := (r["trace_id"], r["span_id"])) in wanted:
                wanted.discard(key)
                out.append(r)
        return total, len(keys), out

    def _retrievals(self, trace_ids: Sequence[str], received: Sequence[datetime] = ()
                    ) -> dict[str, list[dict[str, Any]]]:
        """The retrieval spans of ``trace_ids``; with ``received`` (the calls' arrival
        times), only those that arrived within ``RETRIEVAL_SLACK`` of them, so DuckDB
        skips the older row groups instead of reading every span's trace id."""
        if not trace_ids:
            return {}
        where, params = f"{_OP} = 'retrieval' AND trace_id IN (SELECT unnest(?))", \
            list[Any]([list(trace_ids)])
        if received:
            where += " AND received_at BETWEEN ? AND ?"
            params += [min(received) - RETRIEVAL_SLACK, max(received) + RETRIEVAL_SLACK]
        rows = self.store.read(
            "SELECT trace_id, span_id, attributes::VARCHAR AS attributes, "
            "events::VARCHAR AS events, retrieval_scores "
            f"FROM {partitions.copies_sql(_COLUMNS, where)} ORDER BY start_time, span_id",
            [*params, *params])
        out: dict[str, list[dict[str, Any]]] = {}
        seen: set[tuple[str, str]] = set()
        for r in rows:
            if (key := (r["trace_id"], r["span_id"])) not in seen:  # one copy of a retry
                seen.add(key)
                out.setdefault(r["trace_id"], []).append(r)
        return out

    def score(self, row: dict[str, Any], retrievals: Sequence[dict[str, Any]]
              ) -> list[Evaluation]:
        """The evaluations of one call, skipping names the app scored itself."""
        app = set(row.get("app_scores") or ())
        names = [n for n in self.evaluators.enabled
                 if not app & set(Evaluators.ALIASES.get(n, (n,)))]
        if not names:
            return []
        call = call_of(row, retrievals)
        return [Evaluation(row["trace_id"], row["span_id"], s.name, s.score,
                           Evaluators.version(s.name), s.reason, s.detail or None,
                           row.get("service_name"), seen=row.get("seen"))
                for s in self.evaluators.evaluate(call, names)]

    def run(self, where: str, params: Sequence[Any], sample_rate: float | None = None,
            progress: Callable[[RunStats], None] | None = None, every: int = 50,
            stop: threading.Event | None = None, max_calls: int | None = None) -> RunStats:
        """Score the pending calls of ``where``; ``max_calls`` caps one round (the rest is
        counted as over budget), ``progress`` is called every ``every`` calls."""
        stats, wall0 = RunStats(), time.monotonic()
        stats.calls, stats.sampled, rows = self.pending(
            where, params, self.sample_rate if sample_rate is None else sample_rate,
            max_calls=max_calls)
        if max_calls is not None:
            stats.over_budget = max(0, stats.sampled - max(max_calls, 0))
        for start in range(0, len(rows), every):
            batch = rows[start:start + every]
            retrievals = self._retrievals(list({r["trace_id"] for r in batch}),
                                          [r["received_at"] for r in batch])
            out: list[Evaluation] = []
            for row in batch:
                if stop is not None and stop.is_set():
                    break
                cpu0 = time.thread_time()
                try:
                    found = self.score(row, retrievals.get(row["trace_id"], []))
                except Exception:  # one bad call must not stop the round; noted, not retried
                    log.exception("evaluating span %s failed", row["span_id"])
                    found = []
                cost = time.thread_time() - cpu0
                stats.cpu_s += cost
                self.cost_per_call = 0.9 * self.cost_per_call + 0.1 * cost
                out.extend(found)
                stats.evaluated += bool(found)
                stats.scores += sum(e.score is not None for e in found)
                stats.not_scored += sum(e.score is None for e in found)
                if self.cpu_budget < 1.0:
                    rest = cost * (1 / self.cpu_budget - 1)
                    if stop is not None and stop.wait(rest):
                        break
                    if stop is None:
                        time.sleep(rest)
            self.evals.put(out)
            stats.wall_s = time.monotonic() - wall0
            if progress is not None:
                progress(stats)
            if stop is not None and stop.is_set():
                break
        stats.wall_s = time.monotonic() - wall0
        return stats

    def run_window(self, start: datetime, end: datetime, service: str | None = None,
                   sample_rate: float | None = None,
                   progress: Callable[[RunStats], None] | None = None) -> RunStats:
        """Every pending call that ended/arrived in [start, end), optionally of one service."""
        where = f"{SEEN} >= ? AND {SEEN} < ?"
        params: list[Any] = [start, end]
        if service is not None:
            where += " AND service_name = ?"
            params.append(service)
        return self.run(where, params, sample_rate, progress)


def summary_lines(stats: RunStats) -> list[str]:
    d = stats.as_dict()
    return [f"calls {d['calls']}  sampled {d['sampled']}  evaluated {d['evaluated']}  "
            f"scores {d['scores']}  not scored {d['not_scored']}  over budget "
            f"{d['over_budget']}  {d['wall_s']} s  ({d['evaluations_per_s']} calls/s)"]


def score_window(store: SpanStore, encoder: Encoder, evaluators: Sequence[str],
                 start: datetime, end: datetime, service: str | None = None,
                 progress: Callable[[RunStats], None] | None = None) -> RunStats:
    """``tracehold evals run``: every call of a stored window not yet evaluated, with no
    sample and no budget (the operator asked for this window)."""
    if end <= start:
        raise InvalidRequest(f"--to ({end.isoformat()}) must be after --from "
                             f"({start.isoformat()})")
    runner = EvalRunner(store, EvalStore(store.db), Evaluators(encoder, evaluators))
    return runner.run_window(start, end, service, 1.0, progress)
