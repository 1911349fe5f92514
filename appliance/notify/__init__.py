"""Cases reach people: signed webhooks, chat, e-mail and tickets, through a persistent
outbox in the daemon's DuckDB file (see ``service.py`` for how the parts fit)."""
