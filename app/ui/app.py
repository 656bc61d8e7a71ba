"""Entry point of the desktop app: `app.ui.app:main(argv)`.

Sets up QApplication, the qasync event loop (Qt and asyncio share one loop, so worker calls are
plain asyncio tasks and the GUI thread never blocks), the dark theme, and the window; starts the
worker and loads the model in the background, and shuts the worker down when the window closes.
This process never imports torch: only the worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
from pathlib import Path

from app.paths import DEFAULT_MODEL, resources_dir, user_data_dir

STYLE = "styles/app.qss"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)  # resources/icons/unmask-studio-{size}.png


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmask gui", description="Unmask Studio")
    parser.add_argument("--model", default=None,
                        help="model folder for this session (default: the one in Settings, "
                             "else the shipped demo model)")
    parser.add_argument("--data-dir", default=os.environ.get("UNMASK_DATA_DIR"),
                        help="where settings, conversations and images live "
                             "(default: the platform's user data folder)")
    parser.add_argument("--engine", default=None, help=argparse.SUPPRESS)  # tests, benchmarks
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation without a display: build the window "
                             "offscreen, draw one image and answer one question through the "
                             "worker process, print the results; exit status 0 = all good")
    return parser


def app_icon():
    """The app icon at every shipped size (Qt picks the best one per use); empty if missing."""
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for size in ICON_SIZES:
        path = resources_dir() / "icons" / f"unmask-studio-{size}.png"
        if path.is_file():
            icon.addFile(str(path))
    return icon


def create_application():
    """The QApplication with the app's name, icon and theme (the GUI and the self-test)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Unmask Studio")
    app.setOrganizationName("Unmask Studio")
    app.setDesktopFileName("unmask-studio")  # Wayland/X11: match installer/linux/*.desktop
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # the loop ends after the worker has shut down
    apply_theme(app)
    return app


def apply_theme(app) -> None:
    """Fusion with a dark palette, then resources/styles/app.qss when it is there."""
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QStyleFactory

    app.setStyle(QStyleFactory.create("Fusion"))
    palette = QPalette()
    roles = QPalette.ColorRole
    for role, rgb in ((roles.Window, (30, 31, 36)), (roles.WindowText, (222, 224, 232)),
                      (roles.Base, (24, 25, 29)), (roles.AlternateBase, (36, 37, 43)),
                      (roles.Text, (222, 224, 232)), (roles.Button, (42, 44, 51)),
                      (roles.ButtonText, (222, 224, 232)), (roles.Highlight, (124, 92, 255)),
                      (roles.HighlightedText, (255, 255, 255)), (roles.ToolTipBase, (42, 44, 51)),
                      (roles.ToolTipText, (222, 224, 232)), (roles.PlaceholderText, (120, 124, 138)),
                      (roles.Link, (170, 150, 255))):
        palette.setColor(role, QColor(*rgb))
    app.setPalette(palette)
    qss = resources_dir() / STYLE
    if qss.is_file():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))


def create_window(data_dir: Path | str | None = None, *, model: str | None = None,
                  client=None, engine: str | None = None):
    """The window and its Studio (not started): what main() and the tests build."""
    from app.ui.controller import Studio
    from app.ui.main_window import MainWindow
    from app.ui.persistence import DataDir
    from app.ui.state import AppState

    state = AppState(DataDir(Path(data_dir) if data_dir else user_data_dir()))
    studio = Studio(state, client, default_model=DEFAULT_MODEL, engine=engine)
    studio.override_model = str(model or "")
    if client is not None:
        studio.owns_client = False
    return MainWindow(studio)


async def run_window(window) -> None:
    """Start the worker, wait for the window to close, shut the worker down."""
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    window.studio.spawn(window.studio.start())
    await closed.wait()
    await window.studio.shutdown()


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        from app.selftest import run_self_test

        return run_self_test(model=args.model, engine=args.engine)
    import qasync

    app = create_application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = create_window(args.data_dir, model=args.model, engine=args.engine)
    window.show()
    with loop:
        loop.run_until_complete(run_window(window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
