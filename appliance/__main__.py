"""``python -m appliance`` is the ``tracehold`` command."""

from appliance.cli.main import main

if __name__ == "__main__":
    main()
