"""Demo traffic: three small GenAI apps instrumented with the OpenTelemetry SDK.

They power air-gapped demos (``tracehold demo``, ``tracehold up --demo``), the
tests, and the detectors: every failure type of the taxonomy can be injected
with ``--scenario`` at a known onset, which is logged as ground truth.

Nothing calls a model: the apps compute what a real call would have looked
like (tokens, time to first token, durations, errors) from seeded random
draws and emit the spans with explicit start and end times, so high rates
cost no waiting and a seed reproduces the same traces.
"""
