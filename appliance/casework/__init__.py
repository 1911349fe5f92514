"""Wiring for the stores that keep records in the daemon's DuckDB (audit log, change
events, cases) and their API routes, CLI commands and background work."""
