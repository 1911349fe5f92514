"""The GenAI attributes Tracehold reads, declared once.

Each typed span-store column names the canonical OpenTelemetry GenAI attribute
and the older or foreign names that mean the same thing (the pre-1.30 GenAI
names, OpenInference). The same table renders the collector's transform
statements (so spanmetrics labels come out uniform whatever library emitted
the span) and drives the daemon's column extraction (so a span posted straight
to the daemon fills the same columns).

Where the conventions have no attribute yet, Tracehold reads one in the
``tracehold.*`` namespace and accepts the common alternatives listed here.

``ATTRIBUTES`` declares the few attributes read straight from a span's stored
attributes rather than from a column (the detectors' extra evidence), and
``RETRIEVAL_DOCUMENTS`` the retrieved documents (whose scores also fill the
``retrieval_scores`` column); nothing reads a span attribute that is not declared
in one of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "int", "float", "str_list", "float_list"]


@dataclass(frozen=True)
class GenAIField:
    column: str
    attribute: str
    kind: Kind
    aliases: tuple[str, ...] = ()
    doc: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.attribute, *self.aliases)


FIELDS: tuple[GenAIField, ...] = (
    GenAIField("operation", "gen_ai.operation.name", "str",
               doc="chat, embeddings, execute_tool, invoke_agent, retrieval, ... "
                   "(OpenInference span kinds are mapped, see OPENINFERENCE_KINDS)"),
    GenAIField("provider", "gen_ai.provider.name", "str",
               ("gen_ai.system", "llm.provider", "llm.system"), "model provider"),
    GenAIField("request_model", "gen_ai.request.model", "str", ("llm.model_name",),
               "model asked for"),
    GenAIField("response_model", "gen_ai.response.model", "str", (), "model that answered"),
    GenAIField("agent_name", "gen_ai.agent.name", "str", ("agent.name",), "agent"),
    GenAIField("tool_name", "gen_ai.tool.name", "str", ("tool.name",), "tool called"),
    GenAIField("input_tokens", "gen_ai.usage.input_tokens", "int",
               ("gen_ai.usage.prompt_tokens", "llm.token_count.prompt"), "prompt tokens"),
    GenAIField("output_tokens", "gen_ai.usage.output_tokens", "int",
               ("gen_ai.usage.completion_tokens", "llm.token_count.completion"),
               "completion tokens"),
    GenAIField("ttft_s", "gen_ai.response.time_to_first_chunk", "float",
               ("gen_ai.response.time_to_first_token", "tracehold.ttft"),
               "time to first token/chunk, seconds"),
    GenAIField("finish_reasons", "gen_ai.response.finish_reasons", "str_list",
               ("gen_ai.response.finish_reason", "llm.finish_reason"), "why generation stopped"),
    GenAIField("conversation_id", "gen_ai.conversation.id", "str",
               ("session.id", "gen_ai.session.id"), "conversation/session"),
    GenAIField("data_source_id", "gen_ai.data_source.id", "str", (), "retrieval data source"),
    GenAIField("error_type", "error.type", "str", (), "error class of a failed call"),
    GenAIField("prompt_template_version", "tracehold.prompt.template.version", "str",
               ("gen_ai.prompt.template.version", "llm.prompt_template.version",
                "prompt.template.version"), "version of the prompt template"),
    GenAIField("index_version", "tracehold.index.version", "str",
               ("gen_ai.data_source.version", "retrieval.index.version", "index.version"),
               "version of the retrieval index"),
    GenAIField("embedding_model", "tracehold.embedding.model", "str",
               ("embedding.model_name",), "embedding model used for retrieval"),
    GenAIField("retrieval_scores", "tracehold.retrieval.scores", "float_list",
               ("retrieval.scores",), "relevance score of each retrieved chunk (else the "
                                      "scores of RETRIEVAL_DOCUMENTS)"),
    GenAIField("input_messages", "gen_ai.input.messages", "str",
               ("gen_ai.prompt", "input.value"), "prompt messages (JSON text)"),
    GenAIField("output_messages", "gen_ai.output.messages", "str",
               ("gen_ai.completion", "output.value"), "model output messages (JSON text)"),
)

BY_COLUMN: dict[str, GenAIField] = {f.column: f for f in FIELDS}


@dataclass(frozen=True)
class SpanAttribute:
    """An attribute read from a span's stored attributes (no column of its own): few
    readers need it, so it does not widen every span row."""

    attribute: str
    aliases: tuple[str, ...] = ()
    doc: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.attribute, *self.aliases)


TOOL_CALL_ARGUMENTS = SpanAttribute(
    "gen_ai.tool.call.arguments",
    doc="arguments of a tool call (JSON text); the same call repeating marks an agent loop")
MODEL_CONTEXT_WINDOW = SpanAttribute(
    "tracehold.model.context_window",
    doc="the model's context window in tokens, to judge how full a prompt is")
INDEX_EMBEDDING_MODEL = SpanAttribute(
    "tracehold.index.embedding_model",
    doc="embedding model the retrieval index was built with")
REQUEST_TEMPERATURE = SpanAttribute(
    "gen_ai.request.temperature",
    doc="sampling temperature asked for; root-cause analysis compares its cohorts")
RETRIEVAL_TOP_K = SpanAttribute(
    "tracehold.retrieval.top_k",
    doc="how many chunks a retrieval returns; root-cause analysis compares its cohorts")
ATTRIBUTES: tuple[SpanAttribute, ...] = (TOOL_CALL_ARGUMENTS, MODEL_CONTEXT_WINDOW,
                                         INDEX_EMBEDDING_MODEL, REQUEST_TEMPERATURE,
                                         RETRIEVAL_TOP_K)



@dataclass(frozen=True)
class RetrievedDocuments:
    """Where instrumentation libraries put the documents a retrieval returned, each with
    its score: one list attribute per library (``lists``, a list of ``{id, score,
    content|text}`` objects, structured or as JSON text, on the span or on one of its
    events), or OpenInference's flattened ``retrieval.documents.<i>.document.<field>``.

    The chunk view shows them, and when a span sends no plain list of scores
    (``retrieval_scores``' own names) their scores fill that column: the retrieval
    signal is the same whichever library emitted the span."""

    lists: tuple[str, ...]
    score: tuple[str, ...]  # a document's score: the first of these keys it has
    flattened: str  # regular expression of a flattened key: (index, field)
    flattened_prefix: str  # what every flattened key starts with (a cheap test)
    flattened_score: str  # how a flattened key that holds a score ends


RETRIEVAL_DOCUMENTS = RetrievedDocuments(
    lists=("gen_ai.retrieval.documents", "tracehold.retrieval.documents"),
    score=("score", "document.score"),
    flattened=r"retrieval\.documents\.(\d+)\.document\.(id|content|score)",
    flattened_prefix="retrieval.documents.",
    flattened_score=".document.score",
)

# gen_ai.operation.name values that are a request to a model (as opposed to retrieval,
# tools, agent steps): detectors and the console's charts count the same calls.
MODEL_CALL_OPERATIONS: tuple[str, ...] = ("chat", "text_completion", "generate_content")

# OpenInference marks the kind of work in openinference.span.kind; these map
# onto gen_ai.operation.name values.
OPENINFERENCE_KIND = "openinference.span.kind"
OPENINFERENCE_KINDS: dict[str, str] = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "RETRIEVER": "retrieval",
    "RERANKER": "rerank",
}

# Evaluation results arrive as span events (GenAI conventions).
EVALUATION_EVENT = "gen_ai.evaluation.result"
EVALUATION_NAME = "gen_ai.evaluation.name"
EVALUATION_SCORE = "gen_ai.evaluation.score.value"

# spanmetrics dimensions: low-cardinality only (never conversation or call ids).
METRIC_DIMENSIONS: tuple[str, ...] = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.agent.name",
)


def alias_pairs() -> list[tuple[str, str]]:
    """(canonical, alias) pairs in priority order, for the collector's transform."""
    return [(f.attribute, a) for f in FIELDS for a in f.aliases]
