"""Tracehold's exceptions, in one tree so callers can catch at the level they handle.

    TraceholdError
    ├── IngestError              the request body cannot be taken (API: 4xx)
    │   ├── PayloadTooLarge      body, compressed or not, is over the limit (413)
    │   ├── MalformedPayload     body does not decode as OTLP (400)
    │   └── UnsupportedMediaType content type or encoding we do not speak (415)
    ├── StoreError               the span store failed for a reason retrying will not fix (500)
    │   └── StoreUnavailable     transient: disk full, I/O error, lock held (503 + Retry-After)
    ├── ConfigError              settings are missing or inconsistent
    ├── StackError               the bundled telemetry stack misbehaved
    ├── NotFound                 the thing asked for does not exist (404)
    ├── InvalidRequest           an API body, query or CLI argument is invalid (400)
    │   └── ContentTooLarge      a body or field is over its size limit (413)
    ├── Conflict                 the action does not fit the current state, e.g. an
    │                            invalid case status transition (409)
    ├── Forbidden                the caller may not do this, e.g. not on loopback (403)
    └── DaemonUnavailable        the CLI cannot reach the daemon (is the stack up?)

Why the ingest split matters: the OpenTelemetry Collector's otlphttp exporter retries
only 429/502/503/504 and drops the batch on any other status, so only a
``StoreUnavailable`` may become a retryable answer; every ``IngestError`` is final.

Every exception carries a human-readable message (``str(exc)`` / ``exc.message``).
"""

from __future__ import annotations


class TraceholdError(Exception):
    """Base of every error Tracehold raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IngestError(TraceholdError):
    """An ingest request body cannot be accepted; retrying the same body will not help."""


class PayloadTooLarge(IngestError):
    """The body, or what it decompresses to, is larger than the configured limit."""


class MalformedPayload(IngestError):
    """The body is not a decodable OTLP export request; the message says why."""


class UnsupportedMediaType(IngestError):
    """The Content-Type or Content-Encoding is not one Tracehold decodes."""


class StoreError(TraceholdError):
    """The span store failed; not expected to go away by itself."""


class StoreUnavailable(StoreError):
    """The span store cannot write right now (disk full, I/O error, file lock); retry later."""


class ConfigError(TraceholdError):
    """Configuration is missing, malformed or contradictory."""


class StackError(TraceholdError):
    """A component of the bundled telemetry stack failed to start, stop or answer."""


class NotFound(TraceholdError):
    """The requested trace, span or resource does not exist."""


class InvalidRequest(TraceholdError):
    """A request body, query parameter or argument is invalid; the message says which."""


class ContentTooLarge(InvalidRequest):
    """A body or one of its fields (e.g. a case note) is over its size limit."""


class Conflict(TraceholdError):
    """The action does not fit the thing's current state (invalid status transition)."""


class Forbidden(TraceholdError):
    """The caller may not do this (e.g. an audit write from beyond loopback)."""


class DaemonUnavailable(TraceholdError):
    """The CLI could not reach the daemon's API."""
