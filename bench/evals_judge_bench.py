"""Does a local GGUF judge add accuracy to the embedder's groundedness score? (issue 12)

On every triple of tests/evals_set.py labelled for groundedness, the local model is
asked one short question (the context, the answer, "is every statement of the answer
supported by the context? yes or no") in its chat layout, and its judgement is read
from the next token's logits: p(yes) = softmax over the yes/no tokens. That is the
judge's best case: a continuous score (an AUC needs one) where grammar-constrained
output would give only yes/no, and the same choice as greedy decoding under a yes|no
grammar (``accuracy_at_0.5`` is that constrained answer's accuracy). llama.cpp runs
on one thread, as the RCA does.

Compared on the same triples: the embedder's groundedness score alone
(``Evaluators.groundedness``), the judge alone, their average, and a logistic fit of
both (standardized; fitted on one half of the facts, reported on the other half, then
the halves swapped: two folds split by fact, so no fact's variants are on both sides).
The gain is the combination's AUC minus the embedder's on each held-out half, averaged
over the two halves, with a 95 % bootstrap interval (triples resampled within each
half); the judge "adds" only if that interval is above zero. Every triple's scores are
kept in the result file.

    PYTHONPATH=. python bench/evals_judge_bench.py [--models smollm2-135m-instruct,gemma-3-270m]
        [--limit N] [--out evals-judge]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.evals.evaluators import Call, Evaluators  # noqa: E402
from appliance.evals.quality import accuracy, roc_auc  # noqa: E402
from appliance.rca.embed import Embedder  # noqa: E402
from appliance.rca.model import LocalModel  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from tests.evals_set import FACTS, Triple, triples  # noqa: E402

RESULTS = Path(__file__).parent / "results"
YES = ("yes", " yes", "Yes", " Yes", "YES")
NO = ("no", " no", "No", " No", "NO")
Floats = npt.NDArray[np.float64]


def question_of(t: Triple) -> str:
    return ("Context:\n" + "\n".join(t.context) + f"\n\nAnswer: {t.answer}\n\n"
            "Is every statement of the answer supported by the context? Reply yes or no.")


class Judge:
    """One GGUF read for p(yes) at the first answer token (one llama.cpp thread)."""

    def __init__(self, name: str, data_dir: Path) -> None:
        s = Settings(data_dir=data_dir, rca_model_name=name, rca_model_threads=1,
                     rca_model_ctx=1024)
        t0 = time.perf_counter()
        self.model = LocalModel.load(s)  # the RCA's loader: manifest, sha256, chat layout
        self.load_s = time.perf_counter() - t0
        llama = self.model._llama
        self.llama = llama

        def ids(words: tuple[str, ...]) -> list[int]:
            found = {int(t[0]) for w in words
                     if len(t := llama.tokenize(w.encode(), add_bos=False, special=False)) == 1}
            return sorted(found)

        self.yes, self.no = ids(YES), ids(NO)

    def p_yes(self, text: str) -> tuple[float, int]:
        # the RCA's chat layout for this model (its GGUF template, or a named format)
        tokens, _ = self.model._prompt_tokens(text)
        self.llama.reset()
        self.llama.eval(tokens)
        logits = np.ctypeslib.as_array(self.llama._ctx.get_logits(),
                                       shape=(self.llama.n_vocab(),)).astype(np.float64)
        top = logits.max()
        yes = np.log(np.exp(logits[self.yes] - top).sum())
        no = np.log(np.exp(logits[self.no] - top).sum())
        return float(1 / (1 + np.exp(no - yes))), len(tokens)


def logistic_fit(x: Floats, y: Floats, l2: float = 1e-2, steps: int = 50) -> Floats:
    """Weights (bias first) of a logistic regression, by Newton's method."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + l2 * w
        hess = (xb.T * (p * (1 - p))) @ xb + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def logit(p: Floats) -> Floats:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)))


def combined(emb: Floats, judge: Floats, y: Floats, fold: npt.NDArray[np.int_]
             ) -> tuple[Floats, list[dict[str, Any]]]:
    """Out-of-fold logistic scores of (embedder, judge), and each fold's numbers."""
    feats = np.column_stack([emb, logit(judge)])
    out, folds = np.zeros(len(y)), []
    for k in (0, 1):
        train, test = fold != k, fold == k
        mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-9
        w = logistic_fit((feats[train] - mu) / sd, y[train])
        xt = np.hstack([np.ones((int(test.sum()), 1)), (feats[test] - mu) / sd])
        out[test] = 1 / (1 + np.exp(-xt @ w))
        yt = list(y[test].astype(int))
        folds.append({"test_fold": k, "train": int(train.sum()), "test": int(test.sum()),
                      "weights_bias_embedder_judge": [round(float(v), 3) for v in w],
                      "auc_embedder": round(roc_auc(list(emb[test]), yt), 4),
                      "auc_judge": round(roc_auc(list(judge[test]), yt), 4),
                      "auc_average": round(roc_auc(list((emb[test] + judge[test]) / 2), yt), 4),
                      "auc_logistic": round(roc_auc(list(out[test]), yt), 4)})
    return out, folds


def fast_auc(s: Floats, y: Floats) -> float:
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def bootstrap_gain(a: Floats, b: Floats, y: Floats, fold: npt.NDArray[np.int_],
                   n: int = 2000, seed: int = 1) -> dict[str, Any]:
    """AUC(a) - AUC(b) within each fold, averaged over the folds (a fold's logistic
    scores are not on the same scale as the other fold's), with its 95 % interval from
    resampling the triples of each fold with replacement."""
    rng = np.random.default_rng(seed)
    parts = [np.flatnonzero(fold == k) for k in (0, 1)]

    def gain(idx: list[npt.NDArray[np.int_]]) -> float:
        return float(np.mean([fast_auc(a[i], y[i]) - fast_auc(b[i], y[i]) for i in idx]))

    gains = []
    for _ in range(n):
        idx = [rng.choice(p, len(p)) for p in parts]
        if all(0 < y[i].sum() < len(i) for i in idx):
            gains.append(gain(idx))
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return {"auc_gain": round(gain(parts), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def measure(name: str, cases: list[Triple], emb: Floats, data_dir: Path) -> dict[str, Any]:
    judge = Judge(name, data_dir)
    p, seconds, tokens = [], [], []
    for i, t in enumerate(cases):
        t0 = time.perf_counter()
        got, n = judge.p_yes(question_of(t))
        seconds.append(time.perf_counter() - t0)
        p.append(got)
        tokens.append(n)
        if i % 20 == 0:
            print(f"{name}: {i + 1}/{len(cases)} {seconds[-1]:.2f} s", flush=True)
    y = np.array([t.labels["groundedness"] for t in cases], dtype=np.float64)
    pj = np.array(p)
    fold = np.array([next(i for i, f in enumerate(FACTS) if f.question == t.question) % 2
                     for t in cases])
    oof, folds = combined(emb, pj, y, fold)
    avg = (emb + pj) / 2
    labels = list(y.astype(int))
    by_kind: dict[str, list[float]] = {}
    for t, v in zip(cases, p, strict=True):
        by_kind.setdefault(t.kind, []).append(v)
    gain = bootstrap_gain(oof, emb, y, fold)
    gain_avg = bootstrap_gain(avg, emb, y, fold)
    return {
        "model": name, "file": str(judge.model.info.path.name), "load_s": round(judge.load_s, 2),
        "yes_tokens": judge.yes, "no_tokens": judge.no,
        "seconds_per_judgement": {"median": round(statistics.median(seconds), 3),
                                  "p95": round(float(np.percentile(seconds, 95)), 3),
                                  "total": round(sum(seconds), 1)},
        "prompt_tokens_median": int(statistics.median(tokens)),
        "auc_judge_alone": round(roc_auc(list(pj), labels), 4),
        "accuracy_at_0.5_judge_alone": round(accuracy(list(pj), labels, 0.5), 4),
        "share_judged_yes": round(float((pj >= 0.5).mean()), 4),
        "mean_p_yes_by_kind": {k: round(statistics.fmean(v), 3)
                               for k, v in sorted(by_kind.items())},
        "auc_average_all": round(roc_auc(list(avg), labels), 4),
        "accuracy_at_0.5_logistic_out_of_fold": round(accuracy(list(oof), labels, 0.5), 4),
        "folds": folds,
        "gain_logistic_vs_embedder": gain,
        "gain_average_vs_embedder": gain_avg,
        "adds_accuracy": bool(gain["ci95"][0] > 0 or gain_avg["ci95"][0] > 0),
        "p_yes": [round(v, 4) for v in p],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m-instruct",
                    help="comma-separated names of models/manifest.toml")
    ap.add_argument("--limit", type=int, default=0, help="judge at most this many triples")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/tracehold-judge"),
                    help="where a chunked GGUF (Gemma) is joined once")
    ap.add_argument("--out", default="evals-judge")
    args = ap.parse_args()
    cases = [t for t in triples() if "groundedness" in t.labels]
    if args.limit:
        step = max(1, len(cases) // args.limit)  # spread over the facts, not the first few
        cases = cases[::step][:args.limit]
    ev = Evaluators(Embedder(threads=1))
    emb = np.array([ev.groundedness(Call(t.question, t.answer, t.context, t.prompt)).score or 0.0
                    for t in cases])
    labels = [t.labels["groundedness"] for t in cases]
    load = [round(x, 2) for x in os.getloadavg()]
    models = [measure(m, cases, emb, args.data_dir) for m in args.models.split(",") if m]
    result = {
        "benchmark": "local GGUF as a groundedness judge, alone and with the embedder",
        "command": "PYTHONPATH=. python bench/evals_judge_bench.py " + " ".join(sys.argv[1:]),
        "triples": len(cases), "positives": sum(labels), "negatives": len(labels) - sum(labels),
        "split": "two folds by fact (even/odd fact index); combination fitted on one, "
                 "scored on the other",
        "prompt": question_of(cases[0]),
        "auc_embedder_alone": round(roc_auc(list(emb), labels), 4),
        "embedder_ties": "the embedder caps a sentence with a number or name absent from the "
                         "context at 0.15, so many wrong answers tie; any second score, "
                         "noise included, can break those ties and move a fold's AUC a "
                         "little: read the interval, not the point",
        "kinds": [t.kind for t in cases], "labels": labels,
        "embedder_scores": [round(float(v), 4) for v in emb],
        "accuracy_embedder_at_threshold": round(
            accuracy(list(emb), labels, Evaluators.THRESHOLDS["groundedness"]), 4),
        "models": models,
        "decision": ("ship the judge (off by default)"
                     if any(m["adds_accuracy"] for m in models)
                     else "not shipped: no measurable gain over the embedder"),
        "llama_threads": 1, "load_average_start": load,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "prompt"}, indent=2))


if __name__ == "__main__":
    main()
