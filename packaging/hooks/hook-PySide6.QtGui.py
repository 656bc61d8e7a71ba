"""PyInstaller hook for PySide6.QtGui: PyInstaller's own, minus the Qt plugins a desktop app never
loads (embedded/kiosk platforms, evdev input, the GTK3 theme; packaging/bundle_trim.py).
Dropping a plugin here, before binary analysis, also keeps out the libraries only it needs."""

from bundle_trim import is_unused_qt_plugin, upstream_hook

_upstream = upstream_hook("PySide6.QtGui")
hiddenimports = _upstream.get("hiddenimports", [])
datas = _upstream.get("datas", [])
binaries = [(src, dest) for src, dest in _upstream.get("binaries", [])
            if not is_unused_qt_plugin(src, dest)]
