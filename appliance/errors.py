"""Tracehold's exceptions, in one tree so callers can catch at the level they handle.

    TraceholdError               type                    HTTP
    ├── IngestError              ingest_error            400  the request body cannot be taken
    │   ├── PayloadTooLarge      payload_too_large       413  body, compressed or not, over limit
    │   ├── MalformedPayload     malformed_payload       400  body does not decode as OTLP
    │   └── UnsupportedMediaType unsupported_media_type  415  content type/encoding we don't speak
    ├── StoreError               store_error             500  span store failed; retry won't fix it
    │   └── StoreUnavailable     store_unavailable       503  transient: disk full, I/O, lock held
    ├── ConfigError              config_error            500  settings missing or inconsistent
    ├── StackError               stack_error             500  the bundled stack misbehaved
    ├── NotFound                 not_found               404  the thing asked for does not exist
    ├── InvalidRequest           invalid_request         400  an API body, query or CLI argument
    │   ├── ContentTooLarge      content_too_large       413  a body or field over its size limit
    │   ├── MethodNotAllowed     method_not_allowed      405  the route exists, the method doesn't
    │   └── UnsupportedContent   unsupported_content     415  a JSON route sent something else
    ├── Conflict                 conflict                409  does not fit the current state
    ├── Forbidden                forbidden               403  the caller may not do this
    ├── InternalError            internal_error          500  an unexpected failure (logged with
    │                                                         the request id)
    ├── KnowledgeBaseUnavailable knowledge_base_unavailable 503  the RCA knowledge base folder
    │                                                         is corrupt or unreadable
    ├── ModelError               model_error             500  the local RCA model failed
    │   ├── ModelUnavailable     model_unavailable       503  GGUF missing, corrupt, sha256
    │   │                                                     mismatch, or llama.cpp can't load it
    │   ├── ModelAnswerInvalid   model_answer_invalid    502  invalid JSON, off-schema, or invented
    │   │                                                     ids or numbers in its explanation
    │   └── ModelTimeout         model_timeout           504  no answer within the time allowed
    ├── DeliveryError            delivery_failed         502  a webhook, mail relay or tracker
    │                                                         refused or did not answer
    ├── BundleCorrupt            bundle_corrupt          400  an air-gap bundle fails its checksums
    │                                                         or signature (names the file)
    └── DaemonUnavailable        daemon_unavailable      -    the CLI cannot reach the daemon

Every class carries its HTTP ``status``, a ``title`` and a stable ``type``: the API's one
error body (``appliance/api/errors.py``) is built from them, and the CLI's client turns a
body's ``type`` back into the same class (``from_type``), so a 413 of an ingest body and a
413 of a case note stay different exceptions on both sides of the wire.

Why the ingest split matters: the OpenTelemetry Collector's otlphttp exporter retries
only 429/502/503/504 and drops the batch on any other status, so only a
``StoreUnavailable`` may become a retryable answer; every ``IngestError`` is final.

Every exception carries a human-readable message (``str(exc)`` / ``exc.message``).
"""

from __future__ import annotations

from typing import ClassVar


class TraceholdError(Exception):
    """Base of every error Tracehold raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    type: ClassVar[str] = "tracehold_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IngestError(TraceholdError):
    """An ingest request body cannot be accepted; retrying the same body will not help."""

    status, title, type = 400, "Invalid ingest request", "ingest_error"


class PayloadTooLarge(IngestError):
    """The body, or what it decompresses to, is larger than the configured limit."""

    status, title, type = 413, "Payload too large", "payload_too_large"


class MalformedPayload(IngestError):
    """The body is not a decodable OTLP export request; the message says why."""

    status, title, type = 400, "Malformed payload", "malformed_payload"


class UnsupportedMediaType(IngestError):
    """The Content-Type or Content-Encoding is not one Tracehold decodes."""

    status, title, type = 415, "Unsupported media type", "unsupported_media_type"


class StoreError(TraceholdError):
    """The span store failed; not expected to go away by itself."""

    status, title, type = 500, "Span store error", "store_error"


class StoreUnavailable(StoreError):
    """The span store cannot write right now (disk full, I/O error, file lock); retry later."""

    status, title, type = 503, "Span store unavailable", "store_unavailable"


class ConfigError(TraceholdError):
    """Configuration is missing, malformed or contradictory."""

    status, title, type = 500, "Configuration error", "config_error"


class StackError(TraceholdError):
    """A component of the bundled telemetry stack failed to start, stop or answer."""

    status, title, type = 500, "Stack error", "stack_error"


class NotFound(TraceholdError):
    """The requested trace, span or resource does not exist."""

    status, title, type = 404, "Not found", "not_found"


class InvalidRequest(TraceholdError):
    """A request body, query parameter or argument is invalid; the message says which."""

    status, title, type = 400, "Invalid request", "invalid_request"


class ContentTooLarge(InvalidRequest):
    """A body or one of its fields (e.g. a case note) is over its size limit."""

    status, title, type = 413, "Content too large", "content_too_large"


class MethodNotAllowed(InvalidRequest):
    """The path is a route, but not for this HTTP method."""

    status, title, type = 405, "Method not allowed", "method_not_allowed"


class UnsupportedContent(InvalidRequest):
    """A JSON route was sent a body that is not JSON."""

    status, title, type = 415, "Unsupported media type", "unsupported_content"


class Conflict(TraceholdError):
    """The action does not fit the thing's current state (invalid status transition)."""

    status, title, type = 409, "Conflict", "conflict"


class Forbidden(TraceholdError):
    """The caller may not do this (e.g. an audit write from beyond loopback)."""

    status, title, type = 403, "Forbidden", "forbidden"


class InternalError(TraceholdError):
    """Something failed that we did not expect; the daemon logged it with the request id."""

    status, title, type = 500, "Internal error", "internal_error"


class ModelError(TraceholdError):
    """The local RCA model (appliance/rca/model.py) gave no usable answer; the RCA falls
    back to the rules-only answer."""

    status, title, type = 500, "Model error", "model_error"


class ModelUnavailable(ModelError):
    """The GGUF is missing, corrupt or not the file the manifest names (sha256), or
    llama.cpp cannot load it; the message says which file and what to do."""

    status, title, type = 503, "Model unavailable", "model_unavailable"


class ModelAnswerInvalid(ModelError):
    """The model's output is not valid JSON, breaks the case's schema, or its explanation
    names an id or number that is not in the evidence table."""

    status, title, type = 502, "Model answer invalid", "model_answer_invalid"


class ModelTimeout(ModelError):
    """The model did not finish its answer within the time allowed."""

    status, title, type = 504, "Model timeout", "model_timeout"


class KnowledgeBaseUnavailable(TraceholdError):
    """The RCA knowledge base (a Chroma folder) cannot be opened or read: the message
    names the folder, what failed and how to rebuild it. RCA goes on with the rules."""

    status, title, type = 503, "Knowledge base unavailable", "knowledge_base_unavailable"


class DaemonUnavailable(TraceholdError):
    """The CLI could not reach the daemon's API."""

    status, title, type = 503, "Daemon unavailable", "daemon_unavailable"


class DeliveryError(TraceholdError):
    """A notification or ticket system outside the appliance refused or did not answer
    (the message names it and its answer, e.g. a 401 from the tracker)."""

    status, title, type = 502, "Delivery failed", "delivery_failed"


class BundleCorrupt(TraceholdError):
    """An air-gap bundle is refused before anything is installed: a file's checksum or
    size differs, a file is missing or unexpected, or the manifest's signature does not
    verify. The message names the file."""

    status, title, type = 400, "Bundle corrupt", "bundle_corrupt"


def _tree(cls: type[TraceholdError]) -> list[type[TraceholdError]]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _tree(sub)]


def from_type(type_: str | None, status: int) -> type[TraceholdError]:
    """The class an API error body names by ``type``; by status for a body without one
    (a proxy's answer), else the base class."""
    by_type = {c.type: c for c in _tree(TraceholdError)}
    if type_ in by_type:
        return by_type[type_]
    by_status = {404: NotFound, 405: MethodNotAllowed, 409: Conflict, 403: Forbidden,
                 503: StoreUnavailable}
    return by_status.get(status, TraceholdError)
