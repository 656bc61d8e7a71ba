"""The GUI without a worker: view state, persistence, and the window driven by fabricated events.

Protocol events are plain data, so `FakeClient` below plays the worker: it hands out real
JobStreams and the test pushes Started / Step / ExpertActivity / Done into them exactly as the
client would. That makes the visualizer, timeline, chat and history testable in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QByteArray, QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.demo import world
from app.imageio import decode_image, encode_png, read_png_text
from app.protocol import Done, ExpertActivity, Failed, Ready, Started, Step
from app.ui import files
from app.ui.app import create_window
from app.ui.chat import render_stream
from app.ui.persistence import DataDir, Message, Settings, load_settings, save_settings
from app.ui.run_record import MASK_RGB, RunRecord, export_gif, export_png_frames
from app.ui.settings import check_model_folder, needs_reload
from app.worker.client import LoadError
from app.worker.jobstream import JobStream

qasync = pytest.importorskip("qasync")
ROOT = Path(__file__).resolve().parent.parent
GRID = 4  # fabricated runs: a 4x4 token grid, 4 cells committed per step
PALETTE = np.random.default_rng(0).integers(0, 256, (GRID * GRID, 3), dtype=np.uint8)


# ---- a worker made of plain events -----------------------------------------------------------
class FakeClient:
    """WorkerClient's interface; jobs stay open until the test pushes their events."""

    def __init__(self) -> None:
        self.on_event = None
        self.state = "ready"
        self.model = Ready({"name": "fake", "path": "/fake-model", "device": "cpu",
                            "params": 5_000_000, "dtype": "float32"}, None)
        self.streams: dict[str, JobStream] = {}
        self.requests = []

    async def start(self, timeout=None):
        return None

    async def load(self, path, placement=None, timeout=600.0, *, device="cpu", dtype=None,
                   progress=None):
        if "broken" in str(path):
            raise LoadError(Failed(None, "model", f"{path}: config.json is not valid JSON",
                                   model_loaded=False))
        self.model = Ready({**self.model.model_info, "path": str(path)}, None)
        return self.model

    def submit(self, request):
        stream = JobStream(request, self.cancel)
        self.streams[request.job_id] = stream
        self.requests.append(request)
        return stream

    def cancel(self, job_id: str) -> bool:
        stream = self.streams.get(job_id)
        if stream is None or stream.done:
            return False
        stream._push(Failed(job_id, "cancelled", "Cancelled."))
        return True

    def queued(self):
        return []

    def running(self):
        return None

    async def shutdown(self, timeout=5.0):
        return None

    def last(self) -> JobStream:
        return self.streams[self.requests[-1].job_id]


def image_steps(job_id: str, coalesce: bool = False) -> list[Step]:
    """4 steps over a 4x4 grid; step 2 revises cell 0 (committed at step 0) and recommits it."""
    masked = np.ones(GRID * GRID, dtype=bool)
    steps = []
    for i in range(4):
        positions = np.arange(i * 4, i * 4 + 4)
        revised = np.array([0]) if i == 2 else np.array([], dtype=np.int64)
        masked[positions] = False
        preview = PALETTE.copy()
        preview[masked] = MASK_RGB
        confidence = np.where(masked, np.nan, 0.25 * (i + 1)).astype(np.float32)
        counts = np.full((3, 8), i, dtype=np.int32)
        counts[1, 5] = 40
        steps.append(Step(job_id, i, 4, positions, PALETTE[positions, 0].astype(np.int64),
                          confidence, revised,
                          None if coalesce and i in (1, 2) else preview.reshape(GRID, GRID, 3),
                          None, counts, masked.copy()))
    return steps


def text_steps(job_id: str) -> list[Step]:
    words = ["red", "circle", "on", "blue"]
    shown = ["▯"] * 4
    steps = []
    for i, k in enumerate((1, 3, 0, 2)):
        shown[k] = words[k]
        masked = np.array([w == "▯" for w in shown])
        steps.append(Step(job_id, i, 4, np.array([k]), np.array([k]),
                          np.full(4, 0.9, np.float32), np.array([], np.int64), None,
                          " ".join(shown), np.ones((3, 8), np.int32), masked))
    return steps


def result_png(prompt: str = "a red circle", seed: int = 42) -> bytes:
    image = np.kron(PALETTE.reshape(GRID, GRID, 3), np.ones((16, 16, 1), np.uint8))
    return encode_png(image, {"prompt": prompt, "seed": str(seed), "image_steps": "4",
                              "model": "/fake-model", "task": "generate"})


def finish_image_run(client: FakeClient, coalesce: bool = False, seed: int = 42) -> None:
    stream = client.last()
    job_id = stream.job_id
    stream._push(Started(job_id))
    total = np.zeros((3, 8), np.int64)
    for step in image_steps(job_id, coalesce):
        stream._push(step)
        total = total + step.expert_counts
        stream._push(ExpertActivity(job_id, total))
    stream._push(Done(job_id, image_png=result_png(stream.request.prompt, seed),
                      params={"seed": seed, "image_steps": 4}))


# ---- fixtures --------------------------------------------------------------------------------
def settle(loop, seconds: float = 0.05) -> None:
    """Let the loop deliver what was pushed (the window follows streams in asyncio tasks)."""
    loop.run_until_complete(asyncio.sleep(seconds))


@pytest.fixture
def make_window(loop, tmp_path):
    made = []

    def make(data_dir: Path | None = None, client: FakeClient | None = None):
        client = client or FakeClient()
        win = create_window(data_dir or tmp_path / "data", model="/fake-model", client=client)
        win.fake = client
        win.resize(1200, 800)
        win.show()
        loop.run_until_complete(win.studio.start())
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()
        win.deleteLater()


def drop_on(widget, payload: bytes, fmt: str = "image/png") -> bool:
    mime = QMimeData()
    mime.setData(fmt, QByteArray(payload))
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    QApplication.sendEvent(widget, QDropEvent(pos, Qt.DropAction.CopyAction, mime,
                                              Qt.MouseButton.LeftButton,
                                              Qt.KeyboardModifier.NoModifier))
    return enter.isAccepted()


def scene() -> np.ndarray:
    return world.render(world.Scene("white", (world.Obj("square", "green", "large", "left"),)))


# ---- the visualizer, timeline, experts and history from fabricated events --------------------
def test_a_run_fills_the_visualizer_timeline_experts_chat_and_history(loop, make_window):
    win = make_window()
    win.prompt.set_text("a red circle")
    record = win.run()
    finish_image_run(win.fake, coalesce=True)
    settle(loop)
    assert record.state == "done" and len(record.steps) == 4
    assert win.timeline.count == 5
    # Frames of the coalesced steps are rebuilt: committed cells from a later preview.
    frame1 = record.frame(1).reshape(-1, 3)
    assert np.array_equal(frame1[:8], PALETTE[:8]) and (frame1[8:] == MASK_RGB).all()
    assert list(record.commit_order(3)) == [2, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert record.revised_upto(3)[0] == 2 and (record.revised_upto(3)[1:] == -1).all()
    for overlay in ("confidence", "order", "revised"):
        win.canvas.set_overlay(overlay, True)
    for i in range(win.timeline.count):
        win.timeline.set_step(i)
        assert not win.canvas.grab().isNull()
    assert win.state.canvas.image.shape == (64, 64, 3)  # the final decode on the canvas
    win.experts.set_scope("step")
    win.timeline.set_step(2)
    assert win.experts.current_counts()[1, 5] == 40
    win.experts.set_scope("run")
    assert win.experts.current_counts()[0, 0] == 0 + 1 + 2  # steps 0..2
    assert win.experts.image_map.counts[1, 5] == 160  # the session, image jobs
    assert win.experts.text_map.counts is None
    entry = win.state.history.entries[-1]
    assert entry.params["seed"] == 42 and entry.prompt == "a red circle"
    assert win.chat.bubbles[-1].message.images == [entry.image]


def test_the_text_answer_streams_in_place_and_the_timeline_replays_it(loop, make_window):
    win = make_window()
    win.state.set_mode("chat")
    win.prompt.set_text("describe it")
    record = win.run()
    stream = win.fake.last()
    seen = []
    win.state.conversations.message_changed.connect(
        lambda i: seen.append(win.chat.bubbles[i].body.text()))
    stream._push(Started(record.job_id))
    for step in text_steps(record.job_id):
        stream._push(step)
    settle(loop)
    assert win.chat.bubbles[-1].message.status == "running"
    assert "circle" in seen[-1] and "▯" in seen[0]
    stream._push(Done(record.job_id, text="red circle on blue", params={"seed": 3}))
    settle(loop)
    bubble = win.chat.bubbles[-1]
    assert bubble.message.text == "red circle on blue" and bubble.message.status == "done"
    win.timeline.set_step(0)
    assert "circle" in bubble.body.text() and "on" not in bubble.body.text().split()
    assert win.prompt.text() == ""  # chat clears the box after sending


def test_thinking_streams_into_the_chat_and_the_timeline_keeps_the_picture(loop, make_window):
    """Thinking mode (llada2_uni.md §4.4): the text written before drawing streams into the
    answer bubble and stays there beside the image; the step timeline holds the picture only."""
    win = make_window()
    win.prompt.set_text("a red circle")
    record = win.run()
    stream = win.fake.last()
    stream._push(Started(record.job_id))
    for step in text_steps(record.job_id):
        step.phase = "thinking"
        stream._push(step)
    settle(loop)
    bubble = win.chat.bubbles[-1]
    assert bubble.message.text == "Thinking: red circle on blue"
    assert record.thinking == "red circle on blue" and record.steps == []
    for step in image_steps(record.job_id):
        stream._push(step)
    stream._push(Done(record.job_id, image_png=result_png(), thinking="red circle on blue",
                      params={"seed": 42, "image_steps": 4}))
    settle(loop)
    assert bubble.message.status == "done" and bubble.message.images
    assert bubble.message.text == "Thinking: red circle on blue"
    # the picture's 4 steps and its final decode, as for any image run
    assert len(record.steps) == 4 and win.timeline.count == 5 and record.grid == (GRID, GRID)
    assert win.state.history.entries[-1].text == "Thinking: red circle on blue"


def test_an_answer_after_thinking_keeps_its_thinking_in_view(loop, make_window):
    """Answer thinking (our extension): the description streams first, then the answer below
    it, in the bubble, in the history and when the timeline replays the answer's steps."""
    win = make_window()
    win.state.set_mode("chat")
    win.prompt.set_text("what color is the circle?")
    record = win.run()
    stream = win.fake.last()
    stream._push(Started(record.job_id))
    thinking = text_steps(record.job_id)
    for step in thinking:
        step.phase = "thinking"
        stream._push(step)
    for step in text_steps(record.job_id):
        stream._push(step)
    settle(loop)
    bubble = win.chat.bubbles[-1]
    assert bubble.message.text == "Thinking: red circle on blue\n\nred circle on blue"
    stream._push(Done(record.job_id, text="red", thinking="red circle on blue",
                      params={"seed": 3}))
    settle(loop)
    assert bubble.message.text == "Thinking: red circle on blue\n\nred"
    assert win.state.history.entries[-1].text == bubble.message.text
    win.timeline.set_step(0)
    shown = bubble.body.text()
    assert shown.startswith("Thinking: red circle on blue<br><br>") and "▯" in shown


def test_thinking_setting_is_sent_only_when_chosen(loop, make_window, tmp_path):
    assert not {"thinking", "edit_thinking", "ask_thinking"} & set(Settings().params())
    on, off = Settings(thinking="on").params(), Settings(thinking="off").params()
    # one switch for every task that can think first
    assert on["thinking"] is on["edit_thinking"] is on["ask_thinking"] is True
    assert off["thinking"] is off["edit_thinking"] is off["ask_thinking"] is False
    win = make_window(tmp_path / "profile")
    dialog = win.open_settings()
    assert dialog.thinking.currentData() == "default"
    dialog.thinking.setCurrentIndex(dialog.thinking.findData("off"))
    assert dialog.result_settings().params()["thinking"] is False
    dialog.reject()


def test_self_check_setting_is_sent_only_when_chosen_and_zero_means_off(loop, make_window,
                                                                        tmp_path):
    assert "self_check" not in Settings().params()
    assert Settings(self_check=0).params()["self_check"] == 0
    win = make_window(tmp_path / "profile")
    dialog = win.open_settings()
    assert dialog.self_check.text() == "model default"
    dialog.self_check.setValue(3)
    assert dialog.result_settings().params()["self_check"] == 3
    dialog.self_check.setValue(dialog.self_check.maximum() + 5)  # Qt clamps to the maximum
    assert dialog.result_settings().params()["self_check"] == dialog.self_check.maximum()
    dialog.reject()


def test_stream_rendering_dims_placeholders_and_lights_new_words():
    html = render_stream("the ▯ circle", "▯ ▯ circle")
    assert "color:#5d6070'>▯" in html
    assert "font-weight:600'>the</span>" in html
    assert "circle" in html and "font-weight:600'>circle" not in html


def test_regenerate_copy_and_history_actions(loop, make_window):
    win = make_window()
    win.prompt.set_text("a red circle")
    win.run()
    finish_image_run(win.fake, seed=42)
    settle(loop)
    entry = win.state.history.entries[-1]
    win.history.refresh()
    win.history.list.setCurrentRow(0)
    win.history.act("seed")
    assert not win.state.settings.seed_random and win.state.settings.seed == 42
    win.prompt.edit.clear()
    win.history.act("prompt")
    assert win.prompt.text() == "a red circle"
    win.history.act("star")
    assert win.state.history.get(entry.id).starred
    win.history.act("rerun")
    assert win.fake.requests[-1].params["seed"] == 42
    assert win.fake.requests[-1].prompt == "a red circle"
    finish_image_run(win.fake, seed=42)
    settle(loop)
    index = len(win.state.conversations.current.messages) - 1
    win.chat.regenerate_requested.emit(index)
    assert win.fake.requests[-1].prompt == "a red circle"
    win.stop()
    settle(loop)
    assert win.chat.bubbles[index].message.status == "cancelled"
    win.chat.bubbles[index - 2].copy_button.click()
    assert not QApplication.clipboard().image().isNull()
    win.history.act("delete", entry.id)
    assert win.state.history.get(entry.id) is None


def test_export_steps_as_gif_and_png_frames(loop, make_window, tmp_path):
    win = make_window()
    win.prompt.set_text("a red circle")
    win.run()
    finish_image_run(win.fake, coalesce=True)
    settle(loop)
    assert files.export_run(win, "gif", tmp_path / "steps.gif") == 5
    from PIL import Image

    with Image.open(tmp_path / "steps.gif") as gif:
        assert gif.n_frames >= 4 and gif.size == (256, 256)  # equal frames may merge
    assert files.export_run(win, "png", tmp_path / "frames") == 5
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[-1] == "step_003.png"


# ---- canvas, modes, files --------------------------------------------------------------------
def test_mode_follows_the_mask_and_attachments_and_is_always_shown(loop, make_window):
    win = make_window()
    state = win.state
    assert state.mode == "draw" and win.prompt.mode_buttons["draw"].isChecked()
    state.canvas.set_image(scene())
    state.canvas.begin_stroke()
    state.canvas.paint(10, 10, 20, 10, 3)
    assert state.mode == "inpaint" and win.prompt.mode_buttons["inpaint"].isChecked()
    state.canvas.undo()  # the stroke goes, and with it Inpaint
    assert state.mode == "edit"
    files.attach(win, encode_png(scene()), "scene.png")
    assert state.mode == "ask"
    state.set_mode("chat")
    assert win.prompt.hint.text().startswith("Talk")


def test_missing_inputs_are_explained_not_sent(loop, make_window):
    win = make_window()
    win.state.set_mode("inpaint")
    win.prompt.set_text("a cat")
    assert win.run() is None
    assert "canvas" in win.notice.log[-1][1] and not win.fake.requests
    win.state.canvas.set_image(scene())
    win.state.set_mode("inpaint")
    assert win.run() is None and "Paint" in win.notice.log[-1][1]


def test_a_corrupt_png_dropped_in_gives_an_error_and_changes_nothing(loop, make_window):
    win = make_window()
    state = win.state
    state.canvas.set_image(scene(), {"prompt": "kept"}, name="scene.png")
    before = (state.canvas.image, state.canvas.can_undo, state.mode, len(state.conversations
                                                                           .current.messages))
    corrupt = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
    assert drop_on(win.canvas, corrupt)
    assert win.notice.log[-1][0] == "error" and "Cannot open" in win.notice.log[-1][1]
    assert drop_on(win.chat, corrupt)
    assert win.notice.log[-1][0] == "error" and "Cannot attach" in win.notice.log[-1][1]
    after = (state.canvas.image, state.canvas.can_undo, state.mode, len(state.conversations
                                                                          .current.messages))
    assert after[0] is before[0] and after[1:] == before[1:]
    assert state.canvas.meta == {"prompt": "kept"} and not state.attachments.items


def test_saved_png_keeps_prompt_seed_steps_model_mode_and_opening_reads_them(
        loop, make_window, tmp_path):
    win = make_window()
    win.prompt.set_text("a red circle")
    win.run()
    finish_image_run(win.fake, seed=99)
    settle(loop)
    assert files.save_png(win, tmp_path / "out.png")
    text = read_png_text((tmp_path / "out.png").read_bytes())
    assert {k: text[k] for k in ("prompt", "seed", "steps", "mode")} == {
        "prompt": "a red circle", "seed": "99", "steps": "4", "mode": "draw"}
    assert text["model"] == "/fake-model"
    other = make_window(tmp_path / "other")
    assert files.open_path(other, tmp_path / "out.png")
    assert other.state.canvas.meta["seed"] == "99"
    assert other.prompt.text() == "a red circle"
    assert "seed 99" in other.notice.log[-1][1]


def test_brush_eraser_and_undo_redo_on_the_canvas():
    from app.ui.document import CanvasDoc

    doc = CanvasDoc()
    doc.set_image(np.zeros((64, 64, 3), np.uint8))
    doc.begin_stroke()
    doc.paint(10, 10, 30, 10, 4)
    painted = int(doc.mask.sum())
    assert painted > 100 and doc.mask[10, 20] and not doc.mask[40, 40]
    doc.begin_stroke()
    doc.paint(20, 10, 20, 10, 4, erase=True)
    assert not doc.mask[10, 20] and 0 < doc.mask.sum() < painted
    assert doc.undo() and doc.mask.sum() == painted
    assert doc.redo() and not doc.mask[10, 20]
    mask = decode_image(doc.mask_png())
    assert mask.shape == (64, 64, 3)


# ---- persistence -----------------------------------------------------------------------------
def test_settings_and_conversations_survive_a_restart_of_the_app(loop, make_window, tmp_path):
    data = tmp_path / "profile"
    win = make_window(data)
    changed = Settings(image_steps=24, cfg=3.5, seed_random=False, seed=5, self_correction=True,
                       model_path="/fake-model", brush_size=11)
    win.apply_settings(changed)
    first = win.state.conversations.current
    win.state.conversations.append(Message("user", "hello there", "chat"))
    win.state.conversations.append(Message("assistant", "hi", "chat"))
    win.chat.rename_current("Greetings")
    second = win.state.conversations.new()
    win.state.conversations.append(Message("user", "second talk", "chat"))
    win.state.conversations.select(first.id)
    win.canvas.brush_size = 11
    win.close()

    again = make_window(data)
    s = again.state.settings
    assert (s.image_steps, s.cfg, s.seed_random, s.seed, s.self_correction) == (24, 3.5, False,
                                                                                 5, True)
    assert again.canvas.brush_size == 11
    titles = {c.title for c in again.state.conversations.items}
    assert titles == {"Greetings", "second talk"}
    current = again.state.conversations.current
    assert current.id == first.id  # the conversation that was open
    assert [m.text for m in current.messages] == ["hello there", "hi"]
    assert [b.body.text() for b in again.chat.bubbles] == ["hello there", "hi"]
    again.chat.picker.setCurrentIndex(again.chat.picker.findData(second.id))
    again.chat.picker.activated.emit(again.chat.picker.currentIndex())
    assert again.state.conversations.current.id == second.id
    again.chat.delete_current(confirm=False)
    assert not (data / "conversations" / f"{second.id}.json").exists()
    assert not list((data / "conversations").glob(".*.tmp"))  # atomic writes left no temp files


def test_corrupt_files_are_set_aside_with_a_warning_never_a_crash(loop, make_window, tmp_path):
    data = tmp_path / "profile"
    (data / "conversations").mkdir(parents=True)
    (data / "settings.json").write_text("{not json")
    (data / "conversations" / "bad.json").write_text("[1, 2")
    (data / "conversations" / "odd.json").write_text(json.dumps({"title": "no id"}))
    (data / "history.json").write_text(json.dumps({"not": "a list"}))
    win = make_window(data)
    assert win.state.settings.image_steps == Settings().image_steps  # defaults, no crash
    warned = " ".join(text for _, text in win.notice.log)
    assert "settings.json" in warned and "bad.json" in warned and "history.json" in warned
    kept = sorted(p.name for p in data.rglob("*.corrupt-*"))
    assert len(kept) == 4 and any(name.startswith("odd.json") for name in kept)


def test_settings_ignore_wrong_types_and_round_trip(tmp_path):
    path = tmp_path / "settings.json"
    save_settings(path, Settings(cfg=4.0, overlays=["order"]))
    assert load_settings(path, []) == Settings(cfg=4.0, overlays=["order"])
    path.write_text(json.dumps({"cfg": "high", "image_steps": 8, "seed_random": 1}))
    warnings_: list[str] = []
    loaded = load_settings(path, warnings_)
    assert loaded.cfg == Settings().cfg and loaded.image_steps == 8 and loaded.seed_random
    assert len(warnings_) == 2


def test_an_unfinished_run_is_marked_interrupted_after_a_restart(tmp_path):
    from app.ui.state import Conversations

    data = DataDir(tmp_path)
    conversations = Conversations(data, [])
    conversations.new()
    conversations.append(Message("assistant", "half ▯", "chat", status="running"))
    reopened = Conversations(data, [])
    message = reopened.items[0].messages[0]
    assert message.status == "cancelled" and "Interrupted" in message.text


# ---- settings dialog and model folder --------------------------------------------------------
def test_a_broken_model_folder_shows_the_workers_message(loop, make_window, tmp_path):
    win = make_window()
    assert "not found" in check_model_folder(str(tmp_path / "nowhere"))
    assert "config.json" in check_model_folder(str(tmp_path))
    folder = tmp_path / "broken"  # looks like a model folder; only loading it tells
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (folder / name).write_text("{")
    assert check_model_folder(str(folder)) is None
    broken = Settings(model_path=str(folder))
    assert needs_reload(win.state.settings, broken)
    win.apply_settings(broken)
    settle(loop)
    assert win.state.worker.state == "no_model"
    assert "config.json is not valid JSON" in win.notice.log[-1][1]
    assert win.notice.log[-1][0] == "error"
    dialog = win.open_settings()
    assert "could not load" in dialog.model_status.text()
    dialog.image_steps.setValue(33)
    dialog.accept()
    assert win.state.settings.image_steps == 33
    assert win.status.state.text() == "No model loaded"


def test_status_bar_shows_model_device_placement_speed_and_loading(loop, make_window):
    win = make_window()
    status = win.state.worker
    assert "fake" in win.status.model.text() and "5.0M" in win.status.model.text()
    assert win.status.placement.text() == "all weights on CPU"
    status.update(state="loading", stage="weights", progress=0.5)
    assert win.status.progress.isVisibleTo(win) and win.status.progress.value() == 500
    status.update(state="ready", progress=None, steps_per_s=12.5,
                  placement={"experts_total": 64, "resident_total": 16, "int8_cpu": True})
    assert win.status.speed.text() == "12.5 steps/s"
    assert win.status.placement.text() == "experts on GPU 16/64 · int8 CPU"
    assert not win.status.progress.isVisibleTo(win)


def test_run_record_without_grid_info_uses_positions(loop):
    record = RunRecord("j", "generate", "p", {})
    for step in image_steps("j"):
        step.masked = None
        record.add_step(step)
    assert record.grid == (GRID, GRID)
    assert record.masked_at(0).sum() == 12
    assert record.steps_per_second() is None or record.steps_per_second() > 0


def test_export_helpers_refuse_text_runs(tmp_path):
    record = RunRecord("j", "chat", "p", {})
    for step in text_steps("j"):
        record.add_step(step)
    with pytest.raises(ValueError):
        export_gif(record, tmp_path / "x.gif")
    with pytest.raises(ValueError):
        export_png_frames(record, tmp_path / "f")


def test_the_gui_process_never_imports_torch():
    code = ("import sys, os; os.environ['QT_QPA_PLATFORM']='offscreen'\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from app.ui.app import create_window, apply_theme\n"
            "import tempfile\n"
            "apply_theme(app)\n"
            "w = create_window(tempfile.mkdtemp())\n"
            "w.show(); app.processEvents()\n"
            "bad = [m for m in ('torch', 'app.engine', 'app.worker.host') if m in sys.modules]\n"
            "print('IMPORTED', bad)\n"
            "sys.exit(1 if bad else 0)\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - start < 30


def test_void_qt_calls_and_signals_do_not_wear_out_none():
    """PySide6 6.12 on CPython 3.11 drops a reference to None per void call (app/ui/qtfix.py);
    with such a build this loop aborts the interpreter. The dependency pin must prevent it."""
    from PySide6.QtCore import QObject, QPointF, Signal

    from app.ui import qtfix

    class Emitter(QObject):
        fired = Signal(object)

    point, emitter = QPointF(), Emitter()
    emitter.fired.connect(lambda _: None)
    for _ in range(200_000):
        point.setX(1.0)
        emitter.fired.emit(1)
    assert sys.getrefcount(None) > 1000 and sys.getrefcount(True) > 1000
    assert not qtfix.BROKEN and not qtfix.leaks_none()


def test_shortcuts_paste_undo_redo_and_zoom_act_on_the_canvas(loop, make_window):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QImage
    from PySide6.QtTest import QTest

    win = make_window()
    win.activateWindow()
    ctrl = Qt.KeyboardModifier.ControlModifier
    QApplication.clipboard().setImage(QImage.fromData(encode_png(scene())))
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_V, ctrl)  # Ctrl+V: an image onto the canvas
    doc = win.state.canvas
    assert doc.image is not None and doc.image.shape == (64, 64, 3)
    assert win.state.mode == "edit"
    win.prompt.edit.setFocus()
    QTest.keyClick(win.prompt.edit, Qt.Key.Key_V, ctrl)  # in the prompt: an attachment
    assert len(win.state.attachments.items) == 1 and win.prompt.text() == ""
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_Z, ctrl)  # Ctrl+Z: the canvas is empty again
    assert doc.image is None
    QTest.keyClick(win.canvas, Qt.Key.Key_Z, ctrl | Qt.KeyboardModifier.ShiftModifier)
    assert doc.image is not None  # Ctrl+Shift+Z: back
    fit = win.canvas.scale()
    QTest.keyClick(win.canvas, Qt.Key.Key_Plus, ctrl)
    assert win.canvas.scale() > fit
    before = win.canvas.image_rect().topLeft()
    right = Qt.MouseButton.RightButton
    QTest.mousePress(win.canvas, right, Qt.KeyboardModifier.NoModifier, QPoint(200, 200))
    QTest.mouseMove(win.canvas, QPoint(240, 230))
    QTest.mouseRelease(win.canvas, right, Qt.KeyboardModifier.NoModifier, QPoint(240, 230))
    moved = win.canvas.image_rect().topLeft() - before
    assert (round(moved.x()), round(moved.y())) == (40, 30)  # right-drag pans
    QTest.keyClick(win.canvas, Qt.Key.Key_0, ctrl)
    assert win.canvas.scale() == pytest.approx(fit)
    QApplication.clipboard().setText("just text")
    QTest.keyClick(win.canvas, Qt.Key.Key_V, ctrl)
    assert "no image" in win.notice.log[-1][1]


def test_regenerating_an_inpaint_sends_the_same_image_and_mask_with_a_new_seed(loop, make_window):
    win = make_window()
    win.state.settings.seed_random, win.state.settings.seed = False, 5
    win.state.canvas.set_image(scene())
    win.state.canvas.begin_stroke()
    win.state.canvas.paint(8, 8, 20, 8, 4)
    win.prompt.set_text("a small yellow square at the top left")
    win.run()
    first = win.fake.requests[-1]
    assert first.task == "inpaint" and first.mask is not None and first.params["seed"] == 5
    finish_image_run(win.fake, seed=5)
    settle(loop)
    index = len(win.state.conversations.current.messages) - 1
    win.chat.bubbles[index].regen_button.click()
    again = win.fake.requests[-1]
    assert again.task == "inpaint" and again.prompt == first.prompt
    assert again.mask == first.mask and again.images == first.images
    assert again.params["seed"] is None  # a new sample


def test_sampling_settings_default_to_the_models_own(loop, make_window, tmp_path):
    """Untouched sampling boxes read "model default" and send nothing, so the model folder's
    tuned unmask_defaults apply; a value the user sets is sent as is."""
    assert set(Settings().params()) == {"seed"}
    win = make_window(tmp_path / "profile")
    dialog = win.open_settings()
    assert dialog.image_steps.text() == "model default" and dialog.cfg.text() == "model default"
    dialog.cfg.setValue(0.0)  # one step up from "model default": a real value, sent
    dialog.image_steps.setValue(12)
    params = dialog.result_settings().params()
    assert params["cfg"] == 0.0 and params["image_steps"] == 12 and "temperature" not in params
    dialog.reject()


def test_a_self_check_redraw_gets_a_fresh_timeline_and_the_kept_drawing_is_shown(loop,
                                                                                 make_window):
    """Self-check (app/engine/self_check.py): a redraw's steps (attempt 1) start a fresh
    timeline; at the end the timeline shows the drawing the engine kept, which need not be the
    last, and the chat says how many drawings there were."""
    win = make_window()
    win.prompt.set_text("a red circle")
    record = win.run()
    stream = win.fake.last()
    stream._push(Started(record.job_id))
    first = image_steps(record.job_id)
    redraw = image_steps(record.job_id)
    for step in redraw:
        step.attempt = 1
        if step.preview is not None:
            step.preview = 255 - step.preview  # a different picture
    for step in first + redraw[:2]:
        stream._push(step)
    settle(loop)
    assert record.attempt == 1 and len(record.steps) == 2 and len(record.drawings[0][0]) == 4
    assert record.commit_order(1).max() == 1  # the redraw's own commit order, from step 0
    for step in redraw[2:]:
        stream._push(step)
    checks = [{"attempt": 0, "seed": 42, "passed": False, "score": -0.2, "read": "a red square",
               "kept": True},
              {"attempt": 1, "seed": 43, "passed": False, "score": -0.9, "read": "a red disc",
               "kept": False}]
    stream._push(Done(record.job_id, image_png=result_png(), thinking="a red circle",
                      params={"seed": 42, "image_steps": 4}, checks=checks))
    settle(loop)
    assert record.attempt == 0 and len(record.steps) == 4
    assert np.array_equal(record.frame(3), first[3].preview)
    assert win.timeline.count == 5
    text = win.chat.bubbles[-1].message.text
    assert text.startswith("Thinking: a red circle\n\nSelf-check: drawn 2 times")
    assert "kept drawing 1" in text
    # the picker scrubs the redrawn drawing too (it has no final decode), then back
    picker = win.timeline.drawing
    assert picker.isVisibleTo(win) and picker.count() == 2 and picker.currentData() == 0
    assert picker.itemText(1) == "drawing 2 · redrawn"
    assert picker.itemData(1, Qt.ItemDataRole.ToolTipRole) == "read as “a red disc”"
    picker.activated.emit(1)
    assert record.attempt == 1 and win.timeline.count == 4
    assert np.array_equal(record.frame(3), redraw[3].preview)
    picker.activated.emit(0)
    assert record.attempt == 0 and win.timeline.count == 5
