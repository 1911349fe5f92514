"""The built-in evaluators against the labelled set (tests/evals_set.py), with the real
embedder: the goals of issue 12 (groundedness ROC AUC >= 0.85, retrieval relevance
>= 0.9) and every other evaluator well above chance. bench/evals_bench.py writes the
same numbers with accuracies and speed to bench/results/evals.json."""

from __future__ import annotations

import pytest

from appliance.evals.evaluators import Call, Evaluators
from appliance.evals.quality import accuracy, roc_auc
from appliance.rca.embed import Embedder
from tests.evals_set import FACTS, chunk_pairs, triples

GOALS = {"groundedness": 0.85, "retrieval_relevance": 0.9, "relevance": 0.85,
         "coherence": 0.85, "repetition": 0.85, "refusal": 0.9, "format_validity": 0.9}


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[list[float], list[int]]]:
    ev = Evaluators(Embedder())
    out: dict[str, tuple[list[float], list[int]]] = {}
    for t in triples():
        for s in ev.evaluate(Call(t.question, t.answer, t.context, t.prompt), list(t.labels)):
            assert s.score is not None, (t.kind, s)  # the set is English, never empty
            scores, labels = out.setdefault(s.name, ([], []))
            scores.append(s.score)
            labels.append(t.labels[s.name])
    pairs = chunk_pairs()
    out["retrieval_relevance"] = (
        [ev.retrieval_relevance(Call(q, "-", [c])).score or 0.0 for q, c, _ in pairs],
        [y for *_, y in pairs])
    return out


def test_the_set_is_large_and_mixed() -> None:
    ts = triples()
    assert len(FACTS) >= 20 and len(ts) >= 200
    kinds = {t.kind for t in ts}
    assert {"supported", "changed_number", "swapped_name", "added_claim", "off_topic",
            "refusal", "repetitive"} <= kinds
    assert sum(y for *_, y in chunk_pairs()) >= 60


@pytest.mark.parametrize("name", sorted(GOALS))
def test_each_evaluator_meets_its_goal(results: dict[str, tuple[list[float], list[int]]],
                                       name: str) -> None:
    scores, labels = results[name]
    assert roc_auc(scores, labels) >= GOALS[name]
    assert accuracy(scores, labels, Evaluators.THRESHOLDS[name]) >= 0.8
