"""Built-in evaluations: quality scores for model calls whose app sends none.

The evaluators (``evaluators.py``) score a model call's answer against its question and
retrieved context with the local sentence embedder, which the composition root builds
(``appliance.rca.embed.Embedder``) and hands in: this package sits below the detectors
in the import layers because they read its table (``store.py``), so it names the
embedder only by the shape it needs (``Encoder``). ``runner.py`` picks stored calls and
scores them on a sample and a CPU budget; ``worker.py`` does that in the daemon, off the
ingest path. The app's own score of the same name always wins.

No evaluator asks the local GGUF: as a groundedness judge SmolLM2-135M and Gemma 3 270M
score at chance (AUC 0.49, 0.47) and add nothing to the embedder's 0.980
(``bench/evals_judge_bench.py``, docs/evals.md).
"""
