"""The ``tracehold`` command (``main.py`` builds it). Commands are thin: resolve the
settings, call one library object (or the daemon through ``client``), print with
``output.emit`` (every read command takes ``--json``), and let ``main`` turn a
``TraceholdError`` into a clean message and a non-zero exit. Heavy libraries are
imported inside the commands that use them, so ``tracehold status`` starts fast."""
