"""Checks packaging/bundle_trim.py against a real run: nothing the bundle leaves out may be imported.

    .venv/bin/python packaging/check_trim.py [--model DIR]

Imports the GUI modules (as the app process does), then does what the worker does in the
self-test: loads the demo model and runs one drawing and one question. Exits 1 naming every module
the run imported that the trim lists exclude (the bundle would fail with ImportError there), else
prints how many modules the run loaded. Run it after upgrading torch or PySide6, before a release.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "packaging")]

import bundle_trim  # noqa: E402


def exercise(model: Path) -> None:
    import app.ui.app  # noqa: F401  the GUI process's imports
    import app.ui.main_window  # noqa: F401
    from app.demo.world import Obj, Scene, render
    from app.engine.jobs import JobSpec
    from app.engine.pipeline import Pipeline
    from app.selftest import DRAW_PROMPT, QUESTION, SEED

    pipeline = Pipeline.load(model)
    pipeline.run(JobSpec("generate", DRAW_PROMPT, params={"seed": SEED}))
    image = render(Scene("blue", (Obj("triangle", "yellow", "large", "top left"),)))
    pipeline.run(JobSpec("ask", QUESTION, images=[image], params={"seed": SEED}))


def main() -> int:
    from app.paths import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    exercise(args.model)
    excluded = (*bundle_trim.UNUSED_TORCH_MODULES, *bundle_trim.UNUSED_PACKAGES)
    offenders = sorted(name for name in sys.modules if bundle_trim.is_listed(name, excluded))
    if offenders:
        print("check_trim: the run imported modules that the bundle leaves out "
              "(remove them from packaging/bundle_trim.py):\n  " + "\n  ".join(offenders),
              file=sys.stderr)
        return 1
    print(f"check_trim: ok, the run loaded {len(sys.modules)} modules and none is trimmed away")
    return 0


if __name__ == "__main__":
    sys.exit(main())
