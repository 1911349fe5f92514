"""Tracehold: a self-hosted GenAI observability appliance."""

import os

# Nothing leaves the host. onnxruntime (the RCA embedder) sends usage telemetry to
# Microsoft's collector on Linux too: ~10 s after the first session, a DNS query for
# mobile.events.data.microsoft.com (tests/unit/test_rca_kb.py traces it). Only this
# variable, read when onnxruntime is imported, stops it; its disable_telemetry_events()
# does not. Every process that imports onnxruntime imports this package first.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
