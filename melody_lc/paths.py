"""Where melody-lc keeps its caches (datasets); ``MELODY_LC_CACHE`` overrides the default."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("MELODY_LC_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "melody-lc"


def shipped_dir(name: str) -> Path:
    """The shipped ``models`` or ``rules`` folder: inside the installed wheel, or the source checkout."""
    if name not in ("models", "rules"):
        raise ValueError(f"no shipped folder {name!r}")
    here = Path(__file__).resolve().parent
    installed = here / "_shipped" / name
    return installed if installed.is_dir() else here.parent / name
