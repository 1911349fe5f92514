"""Only the package list, its folder map and the one C extension; everything else is in
pyproject.toml.

The console (app/), the component templates (bundled-stack/) and the knowledge
base's seed playbooks (kb/) keep their folders in the repo and ship inside the
package as ``appliance.console``, ``appliance.bundled`` and ``appliance.kb_seed``
(found through appliance/resources.py). pyproject.toml can
map a package to another folder only beside a hand-written package list, which
would silently leave out any subpackage not added to it; here the list is found.
"""

from setuptools import Extension, find_namespace_packages, setup

_JUNK = ["*__pycache__*"]

setup(
    packages=[
        *find_namespace_packages(include=["appliance", "appliance.*"], exclude=_JUNK),
        "appliance.console",
        *(f"appliance.console.{p}" for p in find_namespace_packages("app", exclude=_JUNK)),
        "appliance.bundled",
        "appliance.kb_seed",
    ],
    package_dir={"appliance.console": "app", "appliance.bundled": "bundled-stack",
                 "appliance.kb_seed": "kb"},
    # The native OTLP walker of ingest's hot path (appliance/ingest/rows.py): C99 against
    # Python's own API, built by the C compiler llama-cpp-python's build needs anyway.
    ext_modules=[Extension("appliance.ingest._wire", ["appliance/ingest/_wire.c"],
                           extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra",
                                               "-Wno-unused-parameter"])],
)
