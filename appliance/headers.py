"""Header names the daemon's API and its clients (CLI, console) share; no imports, so a
client can use them without loading the web framework."""

# The actor recorded in the audit log: `cli:<user>`, the console's signed-in user,
# `detector:<name>`.
USER_HEADER = "x-tracehold-user"
# Echoed on every answer and named in every error body and in the daemon's log.
REQUEST_ID_HEADER = "x-request-id"
