"""Real screenshots of Unmask Studio for the docs: the app under Xvfb, a real worker, the demo model.

    .venv/bin/python scripts/screenshots.py [--model DIR] [--out docs/screenshots]

Without a display it re-runs itself under `xvfb-run` (Debian/Ubuntu: `apt-get install -y xvfb`),
or starts `Xvfb :99` itself. It drives the real window the way a user would (prompt, Run, overlay
toggles, timeline scrub, an attached image and a question, the expert tab) and saves:

    01-run-midway.png            a drawing half unmasked, the timeline filling up
    02-overlay-commit-order.png  commit order (step numbers) and self-corrected cells
    03-overlay-confidence.png    the confidence heat map over a middle step
    04-chat-with-image.png       an attached image, the question, the streamed answer
    05-expert-activity.png       layers x experts routing heat map for the run
    06-inpaint-mask.png          a painted inpaint mask on the result

Settings, conversations and images go to a temporary data folder, never the user's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHILD = "UNMASK_SCREENSHOTS_UNDER_XVFB"
SIZE = (1480, 920)


def find_model(explicit: str | None) -> Path:
    from app.paths import DEFAULT_MODEL

    for candidate in (explicit, DEFAULT_MODEL, os.environ.get("UNMASK_TEST_MODEL"),
                      "/tmp/demo_run/shapes-demo", "/tmp/untrained"):
        if candidate and (Path(candidate) / "config.json").is_file():
            return Path(candidate)
    sys.exit("screenshots: no model folder found; pass --model DIR")


def ensure_display() -> subprocess.Popen | None:
    """Re-exec under xvfb-run when there is no display (returns only in the process to use)."""
    if os.environ.get("DISPLAY") or os.environ.get(CHILD):
        return None
    if shutil.which("xvfb-run"):
        env = {**os.environ, CHILD: "1"}
        cmd = ["xvfb-run", "-a", "-s", f"-screen 0 {SIZE[0] + 80}x{SIZE[1] + 80}x24",
               sys.executable, *sys.argv]
        sys.exit(subprocess.call(cmd, env=env))
    if shutil.which("Xvfb"):
        server = subprocess.Popen(["Xvfb", ":99", "-screen", "0",
                                   f"{SIZE[0] + 80}x{SIZE[1] + 80}x24"])
        os.environ["DISPLAY"] = ":99"
        time.sleep(1.0)
        return server
    sys.exit("screenshots: no display and no Xvfb; install it: apt-get install -y xvfb")


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"screenshots: timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Shooter:
    def __init__(self, window, out: Path) -> None:
        self.window, self.out = window, out
        out.mkdir(parents=True, exist_ok=True)

    def save(self, name: str) -> None:
        from PySide6.QtWidgets import QApplication

        QApplication.processEvents()
        self.window.repaint()
        path = self.out / name
        self.window.grab().save(str(path))
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


async def scenario(window, out: Path) -> None:
    from app.demo import world
    from app.imageio import encode_png
    from app.ui import files

    shoot = Shooter(window, out)
    state, studio = window.state, window.studio
    if not await studio.start():
        raise RuntimeError(f"screenshots: the model did not load: {state.worker.message}")
    s = state.settings
    # cfg left at the model's default: after thinking the demo model draws unguided
    # (cfg_after_thinking 1.0); forcing 2.0 over-pushes the drawing (README, demo section)
    s.image_steps, s.seed_random, s.seed = 16, False, 11
    s.self_correction, s.remask_threshold = True, 0.02

    # 1. a run mid-way: grabbed from the step signal itself, so it is mid-way however fast.
    window.prompt.set_text("a large red circle at the center on a blue background")
    taken = []

    def midway(record) -> None:
        if not taken and len(record.steps) == 7:
            taken.append(True)
            shoot.save("01-run-midway.png")

    state.run_updated.connect(midway)
    drawn = window.run()
    await until(lambda: drawn.finished, 300, "the drawing")
    state.run_updated.disconnect(midway)

    # 2-3. overlays over a middle step of the finished run.
    acts = window.acts
    for name, on in (("overlay_order", True), ("overlay_revised", True)):
        acts[name].setChecked(on)
    window.timeline.set_step(6)
    shoot.save("02-overlay-commit-order.png")
    acts["overlay_order"].setChecked(False)
    acts["overlay_revised"].setChecked(False)
    acts["overlay_confidence"].setChecked(True)
    window.timeline.set_step(6)
    shoot.save("03-overlay-confidence.png")
    acts["overlay_confidence"].setChecked(False)

    # 4. chat with an attached image and a streamed answer.
    scene = world.Scene("yellow", (world.Obj("triangle", "purple", "large", "center"),
                                   world.Obj("circle", "green", "small", "top left")))
    files.attach(window, encode_png(world.render(scene)), "scene.png")
    window.prompt.set_text("what color is the triangle?")
    asked = window.run()
    await until(lambda: asked.finished, 120, "the answer")
    files.attach(window, encode_png(world.render(scene)), "scene.png")
    window.prompt.set_text("what color is the background?")
    again = window.run()
    await until(lambda: again.finished, 120, "the second answer")
    window.timeline.set_run(drawn, follow=True)
    window.canvas.show_document()
    shoot.save("04-chat-with-image.png")

    # 5. the expert panel for the drawing.
    window.tabs.setCurrentWidget(window.experts)
    window.experts.show_run(drawn, None)
    window.experts.set_scope("run")
    shoot.save("05-expert-activity.png")

    # 6. an inpaint mask painted on the result, Inpaint mode chosen by itself.
    window.tabs.setCurrentWidget(window.chat)
    doc = state.canvas
    doc.begin_stroke()
    doc.paint(6, 6, 22, 8, 5)
    doc.paint(22, 8, 20, 20, 5)
    window.prompt.set_text("a small yellow square at the top left")
    shoot.save("06-inpaint-mask.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    server = ensure_display()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    model = find_model(args.model)
    import qasync
    from PySide6.QtWidgets import QApplication

    from app.ui.app import apply_theme, create_window

    app = QApplication([sys.argv[0]])
    apply_theme(app)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    data = tempfile.mkdtemp(prefix="unmask-screens-")
    window = create_window(data, model=str(model))
    window.resize(*SIZE)
    window.move(0, 0)
    window.show()
    print(f"model {model} · display {os.environ.get('DISPLAY')} · data {data}")
    try:
        with loop:
            loop.run_until_complete(scenario(window, args.out.resolve()))
            loop.run_until_complete(window.studio.shutdown())
    finally:
        shutil.rmtree(data, ignore_errors=True)
        if server is not None:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
