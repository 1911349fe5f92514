"""How well a score separates labelled cases: ROC AUC and accuracy at a threshold.
Shared by the benchmark (bench/evals_bench.py) and the tests."""

from __future__ import annotations

from collections.abc import Sequence


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The chance that a random positive scores above a random negative (ties: half);
    the Mann-Whitney form of the area under the ROC curve."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        raise ValueError("need both positive and negative examples")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    """Share of cases on the right side of ``threshold`` (score >= threshold: positive)."""
    right = sum((s >= threshold) == bool(y) for s, y in zip(scores, labels, strict=True))
    return right / len(labels)
