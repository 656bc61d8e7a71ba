"""PyInstaller hook for PySide6.QtCore: PyInstaller's own, minus Qt's translations (the app
installs no QTranslator, so they would never be loaded; packaging/bundle_trim.py)."""

from bundle_trim import UNUSED_QT_DATA_DIRS, is_listed, upstream_hook

_upstream = upstream_hook("PySide6.QtCore")
hiddenimports = _upstream.get("hiddenimports", [])
binaries = _upstream.get("binaries", [])
datas = [(src, dest) for src, dest in _upstream.get("datas", [])
         if not is_listed(dest, UNUSED_QT_DATA_DIRS)]
