"""The frozen appliance's one executable: the ``tracehold`` CLI, and the interpreter the
CLI's child processes need.

Outside a freeze the CLI starts the daemon, the console and the demo as
``python -m <module>`` (``appliance.interpreter``); a PyInstaller executable has no
``-m``, so the same argv arrives here as ``tracehold --run-module <module> ...`` (or
``-c <code> ...``) and runs that module as ``__main__``, with the frozen packages.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--run-module":
        module = args[1]
        sys.argv = [module, *args[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    if len(args) >= 2 and args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        return
    from appliance.cli.main import main as cli

    cli()


if __name__ == "__main__":
    main()
