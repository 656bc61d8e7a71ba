"""A check for a PySide6 binding bug that crashes the app after a few thousand calls.

PySide6/shiboken 6.12 wheels are built against CPython 3.12+ headers, where None, True and False
are immortal. Run on CPython 3.11, every void Qt call and every Signal.emit gives back a reference
to None it never took, and CPython soon aborts with "deallocating None". pyproject.toml keeps
PySide6 below 6.12 on Python < 3.12; this check tells a user whose environment ignored that.
"""

from __future__ import annotations

import sys


def leaks_none() -> bool:
    """True if a void PySide6 call takes a reference from None (the 6.12-on-3.11 bug)."""
    from PySide6.QtCore import QPointF

    point = QPointF()
    before = sys.getrefcount(None)
    for _ in range(64):
        point.setX(1.0)
    return before - sys.getrefcount(None) >= 32


def warn_if_broken() -> bool:
    """Print a fix to stderr when the installed PySide6 has the bug; returns whether it has."""
    if sys.version_info >= (3, 12) or not leaks_none():
        return False
    sys.stderr.write("unmask: this PySide6 build leaks references to None on Python "
                     f"{sys.version_info.major}.{sys.version_info.minor} and will crash; "
                     "install PySide6-Essentials<6.12 or use Python 3.12+\n")
    return True


BROKEN = warn_if_broken()
