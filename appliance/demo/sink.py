"""Where demo traces go: one OpenTelemetry TracerProvider per (service, version),
each with an ack-counting exporter, so the summary can say what the appliance
acknowledged per service."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

from appliance.demo.plan import SpanPlan, emit
from appliance.sdk import CountingExporter

INSTRUMENTATION = "tracehold.demo"


class Sink:
    def __init__(self, make_exporter: Callable[[], SpanExporter], batch: bool = True) -> None:
        self._make_exporter = make_exporter
        self._batch = batch
        self._providers: dict[tuple[str, str], tuple[TracerProvider, CountingExporter]] = {}
        self._tracers: dict[tuple[str, str], Tracer] = {}
        self.sent: Counter[str] = Counter()

    def tracer(self, service: str, version: str) -> Tracer:
        key = (service, version)
        if key not in self._tracers:
            counting = CountingExporter(self._make_exporter())
            provider = TracerProvider(resource=Resource.create({
                "service.name": service, "service.version": version,
                "deployment.environment.name": "demo",
            }))
            # A deep queue: at high rates spans wait rather than being dropped.
            provider.add_span_processor(
                BatchSpanProcessor(counting, max_queue_size=100_000, schedule_delay_millis=200,
                                   max_export_batch_size=512)
                if self._batch else SimpleSpanProcessor(counting))
            self._providers[key] = (provider, counting)
            self._tracers[key] = provider.get_tracer(INSTRUMENTATION)
        return self._tracers[key]

    def emit(self, service: str, version: str, root: SpanPlan, end_ns: int) -> int:
        sent = emit(self.tracer(service, version), root, end_ns)
        self.sent[service] += sent
        return sent

    def acknowledged(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (service, _), (_, counting) in self._providers.items():
            out[service] += counting.acknowledged
        return out

    def failed(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (service, _), (_, counting) in self._providers.items():
            out[service] += counting.failed
        return out

    def shutdown(self) -> None:
        """Flush every queue (waits for the exports) and close the exporters."""
        for provider, _ in self._providers.values():
            provider.shutdown()


def otlp(endpoint: str, key: str) -> Sink:
    """The appliance's OTLP gRPC endpoint (through Envoy) with an API key."""
    from appliance import sdk

    return Sink(lambda: sdk.exporter(endpoint, key, "grpc"))
