"""`rag-api`: a RAG pipeline. Embed the question, retrieve scored chunks from a
versioned index, build the prompt from a versioned template, ask the model,
parse its answer, and attach evaluation scores to the model call."""

from __future__ import annotations

import json
import random

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from appliance.demo import calls, catalog, corpus, prompting
from appliance.demo.conditions import Conditions
from appliance.demo.plan import SpanPlan, TraceBuilder

SERVICE = "rag-api"
MODEL = catalog.GPT_4O_MINI
DATA_SOURCE = "kb-handbook"
TEMPLATE_ID = "rag-answer"
SYSTEM_TOKENS = 180
# An index queried with vectors from another embedding model than it was built
# with scores near random.
MISMATCH_PENALTY = 0.42


class RagApp:
    service = SERVICE

    def trace(self, tb: TraceBuilder, rng: random.Random, cond: Conditions) -> None:
        topic = rng.choice(corpus.TOPICS)
        q_tokens = rng.randint(12, 40)
        with tb.span("POST /v1/answer", SpanKind.SERVER, {
            "http.request.method": "POST", "http.route": "/v1/answer",
            "tracehold.prompt.template.version": cond.template_version,
        }) as root:
            tb.elapse(rng.uniform(0.001, 0.004))
            error = calls.embeddings(tb, rng, catalog.EMBEDDING_MODEL, MODEL, q_tokens, cond)
            if error:
                _failed(root, error)
                return
            scores, chunk_tokens = self._retrieve(tb, rng, cond, topic)
            with tb.span("build prompt", attributes={
                "tracehold.prompt.template.id": TEMPLATE_ID,
                "tracehold.prompt.template.version": cond.template_version,
            }):
                tb.elapse(rng.uniform(0.0005, 0.003))
            result, refused, malformed = self._generate(tb, rng, cond, topic, q_tokens,
                                                        chunk_tokens)
            if result.span is None:
                _failed(root, result.error or "unknown")
                return
            self._evaluate(rng, cond, result.span, scores, refused)
            if not refused and not prompting.parse_answer(tb, rng, TEMPLATE_ID,
                                                          cond.template_version, malformed):
                _failed(root, "format_error", 502)
                return
            tb.elapse(rng.uniform(0.001, 0.005))
            root.set(http__response__status_code=200)

    def _retrieve(self, tb: TraceBuilder, rng: random.Random, cond: Conditions,
                  topic: corpus.Topic) -> tuple[list[float], list[int]]:
        mismatch = cond.index_embedding_model != catalog.EMBEDDING_MODEL
        top = rng.gauss(0.86, 0.035) - (MISMATCH_PENALTY if mismatch else 0.0)
        scores = []
        for _ in range(cond.top_k):
            scores.append(round(min(max(top, 0.01), 0.99), 4))
            top -= rng.uniform(0.005, 0.04)
        # Long documents make every chunk of a request longer.
        fill = rng.uniform(0.9, 1.0) if cond.chunk_tokens > 1024 else 1.0
        chunk_tokens = [int(cond.chunk_tokens * fill * rng.uniform(0.97, 1.0))
                        for _ in range(cond.top_k)]
        others = [t for t in corpus.TOPICS if t is not topic]
        docs = []
        for i, score in enumerate(scores):
            # A mismatched index returns chunks of other documents.
            source = rng.choice(others) if mismatch else topic
            doc: dict[str, object] = {"id": f"doc-{corpus.TOPICS.index(source)}#{i}",
                                      "text": source.chunks[i % len(source.chunks)]}
            if cond.app_scores:
                doc["score"] = score
            docs.append(doc)
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": DATA_SOURCE,
            "tracehold.index.version": cond.index_version,
            "tracehold.index.embedding_model": cond.index_embedding_model,
            "tracehold.embedding.model": catalog.EMBEDDING_MODEL,
            "tracehold.retrieval.top_k": cond.top_k,
            "tracehold.retrieval.chunk_size": cond.chunk_tokens,
            "tracehold.retrieval.documents": json.dumps(docs),
        }
        if cond.app_scores:
            attributes["tracehold.retrieval.scores"] = scores
        with tb.span(f"retrieval {DATA_SOURCE}", attributes=attributes):
            tb.elapse(rng.uniform(0.015, 0.05) + 0.002 * cond.top_k)
        return scores, chunk_tokens

    def _generate(self, tb: TraceBuilder, rng: random.Random, cond: Conditions,
                  topic: corpus.Topic, q_tokens: int,
                  chunk_tokens: list[int]) -> tuple[calls.ChatResult, bool, bool]:
        refused, malformed = prompting.draw(rng, cond.template_version)
        quantized = bool(cond.response_model_suffix)
        ungrounded = rng.random() < (0.7 if quantized else 0.02)
        shown = "\n".join(topic.chunks[i % len(topic.chunks)]
                          for i in range(min(len(chunk_tokens), 5)))
        if len(chunk_tokens) > 5:
            shown += f"\n[… {len(chunk_tokens) - 5} more chunks]"
        text = (corpus.REFUSAL if refused
                else corpus.UNGROUNDED if ungrounded else topic.answer)
        # The answer cites its sources, so it grows with the number of chunks.
        out_tokens = int(rng.lognormvariate(0, 0.35) * (60 + 25 * len(chunk_tokens)))
        req = calls.ChatRequest(
            model=MODEL,
            input_tokens=SYSTEM_TOKENS + q_tokens + sum(chunk_tokens),
            output_tokens=rng.randint(8, 20) if refused else out_tokens,
            input_messages=calls.messages(
                ("system", f"Answer only from the context. Reply as JSON. ({TEMPLATE_ID} "
                           f"{cond.template_version})"),
                ("user", f"{topic.question}\n\nContext:\n{shown}")),
            output_text=text, temperature=cond.temperature, max_tokens=1024,
            finish_reason="content_filter" if refused else "stop",
            attributes={"tracehold.prompt.template.version": cond.template_version,
                        "gen_ai.data_source.id": DATA_SOURCE},
        )
        return calls.chat(tb, rng, req, cond), refused, malformed

    def _evaluate(self, rng: random.Random, cond: Conditions, span: SpanPlan,
                  scores: list[float], refused: bool) -> None:
        quantized = bool(cond.response_model_suffix)
        hot = max(cond.temperature - 0.2, 0.0)
        retrieval = sum(scores[:3]) / len(scores[:3]) + rng.gauss(0, 0.02)
        # Poor retrieval leaves less to ground the answer on.
        starved = max(0.0, 0.7 - retrieval) * 0.5
        penalty = (0.3 if quantized else 0.0) + 0.15 * hot
        drawn = {  # either way: the flag leaves the rest of the traffic as it was
            "groundedness": rng.gauss(0.89, 0.04) - penalty - starved,
            "faithfulness": rng.gauss(0.87, 0.04) - penalty * 0.9 - starved,
            "relevance": rng.gauss(0.86, 0.05) - (0.7 if refused else 0.0),
            "coherence": rng.gauss(0.9, 0.03),
            "retrieval_relevance": retrieval,
        }
        if cond.app_scores:
            calls.evaluate(span, drawn, span.attributes["gen_ai.response.id"])


def _failed(root: SpanPlan, error: str, status: int = 503) -> None:
    root.set(http__response__status_code=status)
    root.fail(error)
