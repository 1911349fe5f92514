"""The domain vocabulary every layer shares (ingest -> store -> detect -> cases -> rca ->
audit -> export): plain types with no dependency on any other Tracehold module."""
