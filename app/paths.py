"""Where things live: the shipped resources and the user's data (platformdirs). No torch here."""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs

APP_NAME = "UnmaskStudio"


def resources_dir() -> Path:
    """`resources/` next to the `app` package, or inside a frozen bundle."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


DEFAULT_MODEL = resources_dir() / "models" / "shapes-demo"


def user_data_dir() -> Path:
    path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
