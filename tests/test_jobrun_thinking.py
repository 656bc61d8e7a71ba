"""A thinking-mode job inside the worker's job runner: the phase-1 text steps go out as Step
events marked "thinking" before the picture's steps, and the thinking comes back in Done and in
the PNG's text chunks (in process, over a random-weight demo-format folder)."""

import threading
from types import SimpleNamespace

from app.imageio import read_png_text
from app.protocol import Done, Generate, Started, Step
from app.worker.jobrun import run_job


class ListOutbox(list):
    def put(self, event) -> None:
        self.append(event)


def test_thinking_steps_then_picture_steps_then_done_with_the_thinking(tmp_path):
    from app.demo.train import build_assets, fresh_model, write_folder
    from app.engine.pipeline import Pipeline

    tokenizer, codec, config = build_assets(seed=0)
    write_folder(tmp_path / "demo", fresh_model(config, seed=0), tokenizer, codec)
    host = SimpleNamespace(pipeline=Pipeline.load(tmp_path / "demo"), outbox=ListOutbox(),
                           model_path=tmp_path / "demo")
    request = Generate("job-1", "generate", "a red circle", params={
        "seed": 4, "thinking": True, "thinking_steps": 4, "thinking_length": 32,
        "image_steps": 3, "image_schedule": "canvas"})
    done = run_job(host, request, threading.Event())
    assert isinstance(done, Done) and isinstance(host.outbox[0], Started)
    phases = [e.phase for e in host.outbox if isinstance(e, Step)]
    thinking = phases.count("thinking")
    assert thinking >= 1 and phases == ["thinking"] * thinking + [None] * 3
    assert isinstance(done.thinking, str) and done.text is None
    assert read_png_text(done.image_png)["thinking"] == done.thinking
