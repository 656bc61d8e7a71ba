"""`unmask --self-test`: proves an installation works end to end, with no display and no user.

It runs what a user's first minute runs: the QApplication and the main window (offscreen unless
QT_QPA_PLATFORM names another platform; either way the Qt platform plugin, styles and icons must be
there), the real worker process (spawned the way the
app spawns it; in a frozen bundle this exercises multiprocessing.freeze_support), the model load,
one text-to-image job and one question about a rendered ShapesWorld image. It prints one line per
check with its timing and exits 0, or prints what failed and exits 1.

Answers are reported, not judged: the demo model is small and may answer wrongly; the self-test is
about the installation, not the model's quality. Settings and images go to a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 120.0  # Hello comes before torch is imported; generous for cold disks and busy CPUs
JOB_TIMEOUT = 300.0  # the model load uses the app's own timeout (app/ui/controller.py)

DRAW_PROMPT = "a large red circle at the center on a green background"
QUESTION = "What color is the background?"
SEED = 7


class SelfTestError(RuntimeError):
    """A check failed; the message names the check and the reason."""


class Report:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def line(self, check: str, detail: str, seconds: float | None = None) -> None:
        took = f"  ({seconds:.1f} s)" if seconds is not None else ""
        print(f"  {check:<8} ok  {detail}{took}", flush=True)


def _describe_install() -> str:
    from PySide6 import __version__ as pyside_version

    if getattr(sys, "frozen", False):
        where = f"frozen bundle at {Path(sys.executable).resolve().parent}"
    else:
        where = f"source checkout at {Path(__file__).resolve().parent.parent}"
    return f"{where}, Python {sys.version.split()[0]}, PySide6 {pyside_version}"


def _question_image() -> tuple[bytes, str]:
    """A ShapesWorld scene as PNG, and the answer the scene itself gives to QUESTION."""
    from app.demo.world import Obj, Scene, answer_question, render
    from app.imageio import encode_png

    scene = Scene("blue", (Obj("triangle", "yellow", "large", "top left"),))
    return encode_png(render(scene)), answer_question(scene, QUESTION) or "?"


async def _run_job(client, request):
    """Run one job through the worker; its Done event, or SelfTestError with the worker's words."""
    from app.protocol import Done, Failed, Step

    steps = 0

    async def consume():
        nonlocal steps
        async for event in client.submit(request):
            if isinstance(event, Step):
                steps += 1
            elif isinstance(event, Failed):
                raise SelfTestError(f"{request.task} job failed ({event.kind}): {event.message}")
            elif isinstance(event, Done):
                return event
        raise SelfTestError(f"{request.task} job ended without a result")

    try:
        done = await asyncio.wait_for(consume(), JOB_TIMEOUT)
    except asyncio.TimeoutError:
        raise SelfTestError(f"{request.task} job took longer than {JOB_TIMEOUT:g} s") from None
    if steps == 0:
        raise SelfTestError(f"{request.task} job streamed no denoising steps")
    return done, steps


async def _checks(window, report: Report) -> None:
    from app.demo.world import caption, parse_image
    from app.imageio import ImageError, decode_image
    from app.protocol import Generate
    from app.worker.client import WorkerError

    studio = window.studio
    t = time.perf_counter()
    try:
        await studio.client.start(timeout=START_TIMEOUT)
    except WorkerError as exc:
        raise SelfTestError(f"the worker process did not start: {exc}") from exc
    hello = studio.client.hello
    report.line("worker", f"pid {hello.pid}, protocol {hello.protocol_version}",
                time.perf_counter() - t)

    t = time.perf_counter()
    if not await studio.load_model():  # the app's own load path (settings, progress, status)
        raise SelfTestError(f"model load failed: {studio.state.worker.message}")
    info = studio.client.model.model_info
    report.line("model", f"{info.get('name')} ({info.get('params', 0) / 1e6:.1f}M params, "
                f"{info.get('device')} {info.get('dtype')}) from {info.get('path')}",
                time.perf_counter() - t)

    t = time.perf_counter()
    done, steps = await _run_job(studio.client, Generate(
        "selftest-draw", "generate", DRAW_PROMPT, params={"seed": SEED}))
    if not done.image_png:
        raise SelfTestError("the draw job returned no image")
    try:
        pixels = decode_image(done.image_png, name="the drawn image")
    except ImageError as exc:
        raise SelfTestError(f"the drawn image does not decode: {exc}") from exc
    scene = parse_image(pixels)
    reads_as = caption(scene) if scene else "no readable ShapesWorld scene"
    thought = f', thinking "{done.thinking}"' if done.thinking else ""
    report.line("draw", f'"{DRAW_PROMPT}"{thought} -> {pixels.shape[1]}x{pixels.shape[0]} PNG, '
                f"{len(done.image_png)} bytes, {steps} steps (reads as: {reads_as})",
                time.perf_counter() - t)

    png, expected = _question_image()
    t = time.perf_counter()
    done, steps = await _run_job(studio.client, Generate(
        "selftest-ask", "ask", QUESTION, images=[png], params={"seed": SEED}))
    answer = (done.text or "").strip()
    if not answer:
        raise SelfTestError("the question got an empty answer")
    verdict = "matches" if expected in answer.lower() else "differs from"
    report.line("ask", f'"{QUESTION}" -> "{answer}" ({verdict} the scene\'s "{expected}", '
                f"{steps} steps)", time.perf_counter() - t)


def run_self_test(model: str | None = None, engine: str | None = None) -> int:
    """The whole self-test; the process exit status (0 = everything worked)."""
    # Before QApplication exists: with no display Qt would abort instead of failing softly.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    torch_in_gui_before = "torch" in sys.modules
    report = Report()
    print(f"Unmask Studio self-test: {_describe_install()}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="unmask-selftest-") as data_dir:
            _run(report, data_dir, model, engine)
        if not torch_in_gui_before and "torch" in sys.modules:
            raise SelfTestError("the GUI process imported torch (only the worker may)")
    except SelfTestError as exc:
        print(f"self-test FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # an unexpected error is a failed check too: say what it was
        print(f"self-test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"self-test passed in {time.perf_counter() - report.start:.1f} s", flush=True)
    return 0


def _run(report: Report, data_dir: str, model: str | None, engine: str | None) -> None:
    import qasync
    from PySide6.QtGui import QGuiApplication

    from app.ui.app import create_application, create_window

    t = time.perf_counter()
    app = create_application()
    window = create_window(data_dir, model=model, engine=engine)
    window.show()
    app.processEvents()
    shot = window.grab()  # paints every widget once: styles, fonts and icons must all work
    if shot.isNull():
        raise SelfTestError("the main window could not be painted")
    icon_sizes = len(app.windowIcon().availableSizes())
    if icon_sizes == 0:
        raise SelfTestError("the app icon is missing (resources/icons)")
    report.line("window", f"{shot.width()}x{shot.height()} painted on Qt platform "
                f"'{QGuiApplication.platformName()}', icon at {icon_sizes} sizes",
                time.perf_counter() - t)

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        with loop:
            loop.run_until_complete(_checks_then_shutdown(window, report))
    finally:
        asyncio.set_event_loop(None)


async def _checks_then_shutdown(window, report: Report) -> None:
    try:
        await _checks(window, report)
    finally:
        window.close()
        await window.studio.shutdown()
