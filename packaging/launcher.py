"""Entry script of the frozen app (PyInstaller runs this as __main__; see unmask-studio.spec).

The same executable is the desktop app, the `unmask` command line and the worker process:
multiprocessing's spawn start method re-runs this executable with `--multiprocessing-fork`, and
freeze_support() turns that run into the worker (it runs the worker and exits) before anything
else, so the child never parses the app's options or opens a window.
"""

import multiprocessing
import os
import sys


def _give_windowed_app_streams() -> None:
    # A windowed Windows build has no console: sys.stdout/stderr are None and any write (a
    # warning, a traceback) would raise. Send them nowhere instead.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


if __name__ == "__main__":
    _give_windowed_app_streams()
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
