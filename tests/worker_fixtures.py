"""Test-only engine for tests/test_worker.py: the Pipeline contract over a real tiny model.

`TinyPipeline` has the interface of app.engine.pipeline.Pipeline (load / describe / run) and
runs a random-weight `tiny` LLaDA2-MoE from a real model folder (config.json + safetensors,
loaded by app.engine.checkpoint with byte progress) through the real denoising loops, so the
worker tests exercise real torch work in the real spawned process. What it skips is only the
tokenizer and image codec: prompts become ids by character code and the "codec" is a fixed
random palette per image code. `params["step_delay"]` (seconds) stretches each step so timing
tests (streaming, cancel) do not depend on how fast two shared CPU cores happen to be.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

# torch and the engine are imported inside the functions that use them: the fake workers at the
# bottom are spawned by tests that should not pay a torch import in the child.

SIDE = 8  # image tasks: an 8x8 token canvas (preview 8x8x3)
CELL = 4  # pixels per token in the final image (32x32)
TEXT_LENGTH = 16


def make_model_folder(folder: Path) -> Path:
    """A tiny random model in the Hugging Face layout, in a few shards (several progress calls)."""
    from app.engine.checkpoint import save_model
    from app.engine.presets import config_for, random_model

    model = random_model(config_for("tiny"), seed=3, std=0.3)
    save_model(model, folder, max_shard_bytes=64 * 1024)
    return folder


class TinyPipeline:
    def __init__(self, folder: Path, model, placement: dict | None):
        self.folder, self.model, self.placement = folder, model, placement
        config = model.config
        self.mask_id, self.offset = config.special_id("mask_token_id"), config.image_token_offset
        self.num_codes = config.special_id("eos_token_id") - self.offset  # codes end at specials
        self.palette = np.random.default_rng(0).integers(0, 256, (self.num_codes, 3), np.uint8)

    @classmethod
    def load(cls, folder, *, device="cpu", dtype=None, placement=None, progress=None):
        import torch

        from app.engine.checkpoint import load_model

        torch.set_num_threads(1)  # two shared cores: leave one to the test process
        model = load_model(folder, device=device, dtype=dtype or torch.float32, progress=progress)
        return cls(Path(folder), model, placement)

    def describe(self) -> dict:
        return {
            "name": self.folder.name, "path": str(self.folder), "device": "cpu",
            "params": int(sum(p.numel() for p in self.model.parameters())),
            "placement": {"experts_on_gpu": 0, "setting": self.placement},
        }

    def run(self, job, on_step=None, should_cancel=None):
        import torch

        from app.engine.jobs import JobError

        if job.task in ("edit", "inpaint", "ask") and not job.images:
            raise JobError("bad_input", f"{job.task} needs an image")
        delay = float(job.params.get("step_delay", 0.0))
        steps = int(job.params.get("steps", 4))
        seed = int(job.params.get("seed", 0))
        generator = torch.Generator().manual_seed(seed)
        prompt = torch.tensor([ord(c) % self.offset for c in job.prompt] or [0])
        start = time.perf_counter()
        with torch.no_grad():
            if job.task in ("ask", "chat"):
                result = self._text(prompt, steps, delay, generator, on_step, should_cancel)
            else:
                result = self._image(prompt, steps, delay, generator, on_step, should_cancel)
        result.params = {"seed": seed, "steps": steps}
        result.timings["total"] = time.perf_counter() - start
        return result

    def _text(self, prompt, steps, delay, generator, on_step, should_cancel):
        from app.engine.generate import BlockDiffusionRun
        from app.engine.jobs import JobResult

        run = BlockDiffusionRun(
            self.model, prompt, gen_length=TEXT_LENGTH, mask_id=self.mask_id, eos_id=None,
            block_length=8, steps=steps, token_range=(0, self.offset), generator=generator,
            should_cancel=should_cancel,
        )
        p = run.prompt_len
        for step in run:
            answer = run.sequence[p : p + TEXT_LENGTH]
            text = " ".join("▯" if t == self.mask_id else f"w{t}" for t in answer.tolist())
            self._emit(on_step, step, p, answer, text=text)
            time.sleep(delay)
        tokens = run.result()
        return JobResult(text=" ".join(f"w{t}" for t in tokens.tolist()), tokens=tokens.numpy())

    def _image(self, prompt, steps, delay, generator, on_step, should_cancel):
        import torch

        from app.engine.generate import CanvasRun
        from app.engine.jobs import JobResult

        p = prompt.numel()
        seq = torch.cat([prompt, torch.full((SIDE * SIDE,), self.mask_id)])
        free = torch.zeros(seq.numel(), dtype=torch.bool)
        free[p:] = True
        run = CanvasRun(
            self.model, seq, free, prefix_len=p, mask_id=self.mask_id, steps=steps,
            token_range=(self.offset, self.offset + self.num_codes), generator=generator,
            should_cancel=should_cancel,
        )
        for step in run:
            cells = run.sequence[p:]
            self._emit(on_step, step, p, cells, preview=self._preview(cells))
            time.sleep(delay)
        codes = (run.sequence[p:] - self.offset).numpy().reshape(SIDE, SIDE)
        image = np.kron(self.palette[codes], np.ones((CELL, CELL, 1), np.uint8))
        return JobResult(image=image, tokens=codes)

    def _preview(self, cells) -> np.ndarray:
        codes = (cells - self.offset).clamp(0, self.num_codes - 1).numpy()
        preview = self.palette[codes]
        preview[cells.numpy() == self.mask_id] = 96
        return preview.reshape(SIDE, SIDE, 3)

    def _emit(self, on_step, step, offset, output, preview=None, text=None) -> None:
        from app.engine.jobs import StepView

        if on_step is None:
            return
        n = output.numel()
        confidence = np.full(n, np.nan, dtype=np.float32)
        window = (step.window - offset).numpy()
        inside = (window >= 0) & (window < n)
        confidence[window[inside]] = step.confidence.numpy()[inside]
        counts = step.expert_counts
        on_step(StepView(
            index=step.index, total=step.total, positions=(step.committed - offset).numpy(),
            tokens=step.tokens.numpy(), confidence=confidence,
            revised=(step.revised - offset).numpy(), preview=preview, text=text,
            expert_counts=None if counts is None else counts.numpy(),
            masked=(output == self.mask_id).numpy(),
        ))


def stale_worker_main(requests, events, engine: str = "", prewarm: bool = True) -> None:
    """A worker from an 'older install': says protocol version 0, then waits to be killed."""
    from app.protocol import Hello

    events.send(Hello(protocol_version=0, pid=os.getpid()))
    with contextlib.suppress(EOFError):
        requests.recv()


def silent_worker_main(requests, events, engine: str = "", prewarm: bool = True) -> None:
    """A worker that hangs before saying Hello (start() must time out, not wait forever)."""
    time.sleep(120)


class SlowLoadPipeline:
    """An engine whose load never finishes in time (load() must time out, not wait forever)."""

    @classmethod
    def load(cls, folder, **kwargs):
        time.sleep(120)
        raise AssertionError("unreachable in the tests")
