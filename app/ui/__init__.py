"""The desktop app (PySide6 + qasync). Never imports torch: only the worker process does."""

from app.ui import qtfix  # noqa: F401  (warns about the PySide6 6.12 + CPython 3.11 crash)
