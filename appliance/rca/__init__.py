"""Root-cause analysis: the knowledge base's local sentence embedder (``embed.py``)."""
