"""An OpenTelemetry SDK pipeline pointed at the appliance (test trace, demo traffic).

The exporter is wrapped to count what the appliance acknowledged, so callers
can reconcile 'sent' with 'stored'.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


@dataclass
class CountingExporter(SpanExporter):
    inner: SpanExporter
    acknowledged: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.acknowledged += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def exporter(endpoint: str, key: str, protocol: str = "grpc", timeout: float = 10) -> SpanExporter:
    """OTLP exporter with the appliance's API key header."""
    headers = {"x-api-key": key}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers,
                                timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", headers=headers,
                        timeout=timeout)


def tracer_provider(
    service: str, endpoint: str, key: str, protocol: str = "grpc", batch: bool = True,
    attributes: dict[str, str] | None = None,
) -> tuple[TracerProvider, CountingExporter]:
    counting = CountingExporter(exporter(endpoint, key, protocol))
    provider = TracerProvider(resource=Resource.create({"service.name": service,
                                                        **(attributes or {})}))
    processor = (BatchSpanProcessor(counting, max_export_batch_size=512, schedule_delay_millis=200)
                 if batch else SimpleSpanProcessor(counting))
    provider.add_span_processor(processor)
    return provider, counting
