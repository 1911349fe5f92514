"""Where Tracehold's own files are, however it is installed.

The component templates, the console and the knowledge base's seed playbooks ship
inside the package as ``appliance.bundled``, ``appliance.console`` and
``appliance.kb_seed``; setup.py maps them from the repo's ``bundled-stack/``, ``app/``
and ``kb/`` folders, so a wheel, an editable install
(``make setup``) and the frozen appliance all find them here by package name.
Nothing else in the code locates them.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files
from pathlib import Path

BUNDLED = "appliance.bundled"
CONSOLE = "appliance.console"
KB_SEED = "appliance.kb_seed"


@cache
def _folder(package: str) -> Path:
    found = files(package)
    # Jinja's loader, shutil and `streamlit run` need real files; a wheel, an
    # editable install and PyInstaller's folder all keep the package on disk.
    if not isinstance(found, Path):
        raise RuntimeError(f"{package} is not on the file system: {found!r}")
    return found


def templates() -> Path:
    """The component templates: Jinja configs, collector builder manifest, Debian pins."""
    return _folder(BUNDLED)


def playbooks() -> Path:
    """The knowledge base's seed playbooks (the repo's ``kb/``)."""
    return _folder(KB_SEED)


def console_main() -> Path:
    """The console's entry script, for ``streamlit run``."""
    return _folder(CONSOLE) / "main.py"


@cache
def checkout_root() -> Path | None:
    """The source checkout this package is imported from (``make setup``'s editable
    install, or a path entry), or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "bundled-stack").is_dir():
        return root
    return None


def default_bin_dir(data_dir: Path) -> Path:
    """Component binaries: a checkout's ``.stack/bin`` (where ``make setup`` puts them),
    else ``<data_dir>/bin``, beside everything else the installed appliance keeps."""
    root = checkout_root()
    return root / ".stack" / "bin" if root is not None else data_dir / "bin"


def build_dir() -> Path:
    """Scratch folder of set-up's collector build: a checkout's ``.stack/build``, else
    the user's cache (nothing in it is needed once the binary is in place)."""
    root = checkout_root()
    if root is not None:
        return root / ".stack" / "build"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "tracehold" / "build"
