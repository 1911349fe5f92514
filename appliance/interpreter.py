"""The argv that runs a Python module or snippet in a child process, frozen or not.

From a source install it is ``python -m <module>``; in the frozen appliance (the air-gap
bundle's PyInstaller folder) there is no ``python``, so the same request goes to the
frozen ``tracehold`` executable, whose entry (``appliance/airgap/frozen_entry.py``)
runs the module or the snippet itself.
"""

from __future__ import annotations

import sys


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m module args...``, or its frozen equivalent."""
    if frozen():
        return [sys.executable, "--run-module", module, *args]
    return [sys.executable, "-m", module, *args]


def code_argv(code: str, *args: str) -> list[str]:
    """``python -c code args...``, or its frozen equivalent."""
    return [sys.executable, "-c", code, *args]
