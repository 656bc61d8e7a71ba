"""A loaded model folder that runs jobs: text to image, edit, inpaint, ask, chat.

Folder layout (Hugging Face, ../shared/DESIGN.md §3): config.json, model safetensors,
tokenizer.json, image_tokenizer/ (the codec: our demo's `patch_vq`; the real SigLIP-VQ + pixel
decoder is not implemented yet and is reported as such). Default sampling settings may sit in
config.json under `unmask_defaults`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from app.engine.checkpoint import CheckpointError, load_model
from app.engine.generate import BlockDiffusionRun, CanvasRun, Step
from app.engine.jobs import TASKS, JobError, JobResult, JobSpec, SelfCheck, StepView
from app.engine.sampler import BlockDiffusionScheduler, CanvasScheduler
from app.engine.self_check import read_back
from app.engine.tasks import Layout, PromptBuilder

MASK_PLACEHOLDER = "▯"
EDIT_ARROW = "→"  # edit thinking's text: the picture's description → the edited one
PREVIEW_MASK_RGB = (96, 96, 96)

DEFAULTS: dict[str, Any] = {
    "image_steps": 16, "cfg": 2.0, "temperature": 1.0, "choice_temperature": 2.0,
    "text_steps": 16, "block_length": 32, "gen_length": 32, "threshold": 0.9,
    "text_temperature": 0.0, "remask_threshold": None, "edit_threshold": None,
    "image_schedule": "blocks", "image_block_length": 32, "image_threshold": 0.95,
    "image_pad_to_block": True,
    # llada2_uni.md §4.4 thinking mode (text to image): off by default, as in the reference; the
    # README/ComfyUI knobs thinking_steps=32, thinking_gen_length=4096. A model folder may turn
    # it on in `unmask_defaults` (the demo does).
    "thinking": False, "thinking_steps": 32, "thinking_length": 4096,
    "thinking_temperature": 0.0,
    # Thinking for edits and questions (our extension; the reference thinks for text to image
    # only): both first describe the picture; an edit then rewrites the description and draws
    # it, a question is answered from it (app/engine/tasks.py).
    "edit_thinking": False, "ask_thinking": False,
    # Guidance of the drawing after thinking (our extension; None: `cfg`, as the reference). The
    # thinking spells out the whole picture, so guidance can over-push: the demo draws one object
    # right 28/30 at 1.0 against 22/30 at its cfg 2.0. A job's own `cfg` applies to both.
    "cfg_after_thinking": None,
    # Self-check (our extension, app/engine/self_check.py): after drawing from a full text
    # (thinking's, or edit thinking's rewritten description) the model reads its picture back;
    # up to this many redraws (seed + 1, + 2, ...) while it does not read that text there. 0: off.
    "self_check": 0,
}


def load_codec(folder: Path):
    """The image codec named by image_tokenizer/config.json (`codec` field)."""
    import json

    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    kind = json.loads(config_path.read_text()).get("codec")
    if kind == "patch_vq":
        from app.engine.codecs.patch_vq import PatchVQCodec

        return PatchVQCodec.load(folder)
    raise CheckpointError(
        f"{folder}: image codec {kind!r} is not supported yet (only the demo's 'patch_vq'); "
        "text tasks still work"
    )


class Pipeline:
    def __init__(self, folder: Path, model, tokenizer: Tokenizer, codec, defaults: dict):
        self.folder, self.model, self.tokenizer, self.codec = folder, model, tokenizer, codec
        self.defaults = defaults
        self.prompts = PromptBuilder.for_model(tokenizer, model.config, codec)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        placement: dict | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Pipeline:
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: model folder not found")
        tokenizer_path = folder / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise CheckpointError(f"{tokenizer_path}: missing; a model folder needs its tokenizer")
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise CheckpointError(f"{tokenizer_path}: unreadable tokenizer ({exc})") from exc
        model = load_model(folder, device=device, dtype=dtype, progress=progress)
        codec = load_codec(folder / "image_tokenizer")
        defaults = {**DEFAULTS, **model.config.extra.get("unmask_defaults", {})}
        pipe = cls(folder, model, tokenizer, codec, defaults)
        pipe.placement = None
        if placement:
            from app.engine.placement import PlacementOptions, apply_placement

            known = PlacementOptions.__dataclass_fields__
            options = PlacementOptions(**{k: v for k, v in placement.items() if k in known})
            options.heat_key = options.heat_key or folder.name
            pipe.placement = apply_placement(model, options=options, device=device)
        return pipe

    def describe(self) -> dict:
        config = self.model.config
        return {
            "name": self.folder.name,
            "path": str(self.folder),
            "params": sum(p.numel() for p in self.model.parameters()),
            "layers": config.num_hidden_layers,
            "experts": config.num_experts,
            "experts_per_token": config.num_experts_per_tok,
            "vocab": config.vocab_size,
            "device": str(self.model.device),
            "dtype": str(self.model.dtype).replace("torch.", ""),
            "image_size": getattr(self.codec, "image_size", None),
            "image_tasks": self.codec is not None,
            "placement": self.placement.summary() if getattr(self, "placement", None) else None,
        }

    # ---- running a job -------------------------------------------------------------------
    def run(
        self,
        job: JobSpec,
        on_step: Callable[[StepView], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> JobResult:
        if job.task not in TASKS:
            raise JobError("bad_input", f"unknown task {job.task!r}; choose from {', '.join(TASKS)}")
        params = {**self.defaults, **{k: v for k, v in job.params.items() if v is not None}}
        params["seed"] = int(params.get("seed") if params.get("seed") is not None
                             else random.randrange(2**31))
        warnings = self._word_warnings(job.prompt)
        start = time.perf_counter()
        with torch.no_grad():
            if job.task in ("ask", "chat"):
                result = self._run_text(job, params, on_step, should_cancel)
            else:
                result = self._run_image(job, params, on_step, should_cancel)
        result.warnings = warnings + result.warnings
        result.params = params
        result.timings["total"] = time.perf_counter() - start
        return result

    def _word_warnings(self, text: str) -> list[str]:
        unknown = self.prompts.unknown_words(text)
        if not unknown:
            return []
        return [f"unknown word(s) {', '.join(sorted(set(unknown)))}: the model ignores them"]

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.model.device).manual_seed(seed)

    def _require_codec(self):
        if self.codec is None:
            raise JobError("unsupported", f"{self.folder}: this model folder has no supported "
                                          "image codec, so it cannot read or draw images")
        return self.codec

    def _grid_of(self, image: np.ndarray) -> np.ndarray:
        return self._require_codec().encode(self._fit(image))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """Resize (cover + centre crop) to the codec's image size."""
        from PIL import Image

        size = self._require_codec().image_size
        if image.shape[:2] == (size, size):
            return image
        pil = Image.fromarray(image)
        scale = size / min(pil.size)
        w, h = max(size, round(pil.width * scale)), max(size, round(pil.height * scale))
        pil = pil.resize((w, h), Image.NEAREST if scale < 1 else Image.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(pil.crop((left, top, left + size, top + size)).convert("RGB"))

    # ---- text tasks ----------------------------------------------------------------------
    def _run_text(self, job, params, on_step, should_cancel) -> JobResult:
        if job.task == "ask":
            if not job.images:
                raise JobError("bad_input", "ask needs an image to ask about")
            grids = [self._grid_of(im) for im in job.images]
        thinking = None
        if job.task == "ask" and params["ask_thinking"]:
            thought, thinking = self._describe(grids, params, on_step, should_cancel)
            prompt = self.prompts.answer_from_description(job.prompt, thought)
        elif job.task == "ask":
            prompt = self.prompts.understand(grids, job.prompt)
        else:
            prompt = self.prompts.chat(job.prompt)
        tokens = self._write_text(prompt, params, on_step, should_cancel,
                                  steps=int(params["text_steps"]),
                                  length=int(params["gen_length"]),
                                  temperature=float(params["text_temperature"]))
        return JobResult(text=self.prompts.decode_text(tokens.tolist()),
                         tokens=tokens.cpu().numpy(), thinking=thinking)

    def _write_text(self, prompt: list[int], params, on_step, should_cancel, *, steps: int,
                    length: int, temperature: float, stop_ids: tuple[int, ...] = (),
                    phase: str | None = None, lead: str = "") -> torch.Tensor:
        """Block-diffusion text after `prompt` (spec §5.2), a text view per step (after
        `lead`); the tokens."""
        ids = self.prompts.ids
        scheduler = BlockDiffusionScheduler(
            int(params["block_length"]), float(params["threshold"]), temperature,
            remask_threshold=params["remask_threshold"], edit_threshold=params["edit_threshold"],
        )
        run = BlockDiffusionRun(
            self.model, torch.tensor(prompt), gen_length=length,
            mask_id=ids.mask, eos_id=ids.eos, block_length=int(params["block_length"]),
            steps=steps, scheduler=scheduler, stop_ids=stop_ids,
            generator=self._generator(params["seed"]), should_cancel=should_cancel,
        )
        p = run.prompt_len
        for step in run:
            if on_step is not None:
                answer = run.sequence[p : p + run.gen_length]
                shown = int(step.window[-1]) + 1 - p  # the end of the block this step decoded
                if not bool((run.sequence[step.window] == ids.mask).any()):
                    shown += run.block_length  # that block is done: the next one comes next
                text = lead + self._partial_text(answer[:shown], stop_ids)
                on_step(self._view(step, p, answer, text=text, phase=phase))
        return run.result()

    def _think(self, prompt: list[int], params, on_step, should_cancel,
               stop_ids: tuple[int, ...] | None = None, lead: str = "",
               as_answer: bool = False) -> tuple[list[int], str]:
        """Thinking mode's phase 1 (llada2_uni.md §4.4): the model's own text before it draws
        (or answers), streamed as "thinking" steps after `lead` (thinking already written);
        the thinking tokens (header and eos cut off) and text. stop_ids: besides eos (None: the
        image header, for drawing). as_answer: decoded with the answer settings (text_steps,
        gen_length, text_temperature) instead of the thinking ones."""
        if stop_ids is None:
            stop_ids = self.prompts.thinking_stop_ids()
        keys = ("text_steps", "gen_length", "text_temperature") if as_answer else \
            ("thinking_steps", "thinking_length", "thinking_temperature")
        tokens = self._write_text(
            prompt, params, on_step, should_cancel,
            steps=int(params[keys[0]]), length=int(params[keys[1]]),
            temperature=float(params[keys[2]]), stop_ids=stop_ids, phase="thinking", lead=lead,
        )
        thought = self.prompts.thinking_text_ids(tokens.tolist())
        return thought, self.prompts.decode_text(thought)

    def _describe(self, grids: list[np.ndarray], params, on_step,
                  should_cancel) -> tuple[list[int], str]:
        """Where edit and answer thinking start: the model's own description of the picture
        (tasks.describe), streamed as thinking; decoded as any answer, so it is what asking
        "Describe the image" answers."""
        return self._think(self.prompts.describe(grids), params, on_step, should_cancel,
                           stop_ids=(), as_answer=True)

    def _partial_text(self, answer: torch.Tensor, stop_ids: tuple[int, ...] = ()) -> str:
        """The answer so far, a placeholder per masked token. Callers pass it up to the end of
        the block being decoded: later blocks are all masks (block diffusion decodes them in
        order), and a 4096-token thinking would otherwise send 4096 placeholders every step."""
        words, ids = [], self.prompts.ids
        for tid in answer.tolist():
            if tid == ids.eos or tid in stop_ids:
                break
            words.append(MASK_PLACEHOLDER if tid == ids.mask else self.prompts.decode_text([tid]))
        return " ".join(w for w in words if w)

    # ---- image tasks ---------------------------------------------------------------------
    def _run_image(self, job, params, on_step, should_cancel) -> JobResult:
        codec = self._require_codec()
        redraws = params["self_check"]
        if type(redraws) is not int or redraws < 0:
            raise JobError("bad_input", f"self_check is the number of redraws allowed, a whole "
                                        f"number from 0 up, not {redraws!r}")
        side = codec.image_size // codec.patch_size
        free = np.ones(side * side, dtype=bool)
        canvas = np.zeros(side * side, dtype=np.int64)
        source = None
        thinking = None
        drawn_from: list[int] = []  # the full text the picture must show (thinking modes)
        if job.task == "generate" and params["thinking"]:
            thought, thinking = self._think(self.prompts.thinking_prompt(job.prompt), params,
                                            on_step, should_cancel)
            layout = self.prompts.thinking_to_image(job.prompt, thought, side, side)
            drawn_from = thought
        elif job.task == "generate":
            layout = self.prompts.text_to_image(job.prompt, side, side)
        else:
            if not job.images:
                raise JobError("bad_input", f"{job.task} needs an image on the canvas")
            source = self._fit(job.images[0])
            grid = codec.encode(source)
            if job.task == "edit" and params["edit_thinking"]:
                layout, thinking, drawn_from = self._edit_thinking(grid, job.prompt, params,
                                                                   on_step, should_cancel)
            elif job.task == "edit":
                layout = self.prompts.edit(grid, job.prompt)
            else:
                pixel_mask = self._fit_mask(job.mask, job.images[0].shape[:2])
                free = self._cell_mask(pixel_mask, codec.patch_size).reshape(-1)
                if not free.any():
                    raise JobError("bad_input", "the inpaint mask is empty: paint the area to redo")
                canvas = grid.reshape(-1).copy()
                layout = self.prompts.inpaint(job.prompt, side, side)
        if thinking is not None:
            params = {**params, "cfg": self._cfg_after_thinking(job, params)}
        denoise = self._denoise_blocks if params["image_schedule"] == "blocks" else \
            self._denoise_canvas

        def draw(attempt: int) -> np.ndarray:
            tagged = None if on_step is None else \
                (lambda view: on_step(dataclasses.replace(view, attempt=attempt)))
            return denoise(layout, canvas, free, {**params, "seed": params["seed"] + attempt},
                           tagged, should_cancel, side)

        warnings: list[str] = []
        if drawn_from and redraws > 0:
            codes, checks = self._checked_drawing(draw, drawn_from, redraws, params, side,
                                                  should_cancel)
            if not any(check.passed for check in checks):
                best = next(check for check in checks if check.kept)
                warnings.append(
                    f"self-check: in {len(checks)} drawings the model never read its picture "
                    f"back as {self.prompts.decode_text(drawn_from)!r}; kept drawing "
                    f"{best.attempt + 1}, read as {best.read!r}")
        else:
            codes, checks = draw(0), []
        start = time.perf_counter()
        image = codec.decode(codes.reshape(side, side))
        if job.task == "inpaint":
            image = np.where(pixel_mask[..., None], image, source)
        return JobResult(image=image, tokens=codes.reshape(side, side), thinking=thinking,
                         timings={"decode": time.perf_counter() - start}, checks=checks,
                         warnings=warnings)

    def _checked_drawing(self, draw: Callable[[int], np.ndarray], target: list[int],
                         redraws: int, params, side: int,
                         should_cancel) -> tuple[np.ndarray, list[SelfCheck]]:
        """Draw, have the model describe the picture (as answer thinking does) and redraw
        with the next seed while the description is not `target` word for word, up to
        `redraws` times; the first picture that passes, else the one whose
        read-back score of `target` (self_check.read_back) is best, and every drawing's check.
        The first drawing is the one the job draws without a self-check, so a picture that
        passes at once is unchanged."""
        ids = self.prompts.ids
        checks: list[SelfCheck] = []
        drawings: list[np.ndarray] = []
        for attempt in range(1 + redraws):
            codes = draw(attempt)
            # Read the picture as it would come back in (decoded, then encoded again), the
            # codes a user who drops it back in gets: a model may draw codes its codec never
            # makes for those pixels (the demo's came back unchanged where we looked).
            grids = [self.codec.encode(self.codec.decode(codes.reshape(side, side)))]
            described, description = self._describe(grids, params, None, should_cancel)
            score = read_back(self.model, self.prompts.describe(grids), target,
                              mask_id=ids.mask, eos_id=ids.eos,
                              block_length=int(params["block_length"])).score
            passed = described == list(target)
            checks.append(SelfCheck(attempt, params["seed"] + attempt, passed, score,
                                    description))
            drawings.append(codes)
            if passed:
                break
        kept = checks[-1] if checks[-1].passed else max(checks, key=lambda c: c.score)
        checks[kept.attempt] = dataclasses.replace(kept, kept=True)
        return drawings[kept.attempt], checks

    def _edit_thinking(self, grid: np.ndarray, instruction: str, params, on_step,
                       should_cancel) -> tuple[Layout, str, list[int]]:
        """Edit thinking (tasks.py): describe the picture, rewrite the description by the
        instruction, then draw the rewritten one as text to image after thinking. The layout
        to draw, the thinking text ("description → edited description") and the edited
        description's tokens."""
        described, description = self._describe([grid], params, on_step, should_cancel)
        lead = f"{description} {EDIT_ARROW} "
        edited, result = self._think(self.prompts.rewrite_description(instruction, described),
                                     params, on_step, should_cancel, stop_ids=(), lead=lead)
        h, w = grid.shape
        return self.prompts.thinking_to_image(result, edited, h, w), lead + result, edited

    @staticmethod
    def _cfg_after_thinking(job: JobSpec, params) -> float:
        """The job's cfg_after_thinking, else the job's own cfg, else the model's
        cfg_after_thinking default, else cfg."""
        for value in (job.params.get("cfg_after_thinking"), job.params.get("cfg"),
                      params["cfg_after_thinking"]):
            if value is not None:
                return float(value)
        return float(params["cfg"])

    def _fit_mask(self, mask: np.ndarray | None, shape) -> np.ndarray:
        if mask is None:
            raise JobError("bad_input", "inpaint needs a mask (white = repaint)")
        if mask.shape != tuple(shape):
            raise JobError("bad_input", f"mask is {mask.shape[1]}x{mask.shape[0]} but the image "
                                        f"is {shape[1]}x{shape[0]}; they must match")
        rgb = np.repeat(mask.astype(np.uint8)[..., None] * 255, 3, axis=2)
        return self._fit(rgb)[..., 0] > 127

    @staticmethod
    def _cell_mask(pixel_mask: np.ndarray, patch: int) -> np.ndarray:
        h, w = pixel_mask.shape
        return pixel_mask.reshape(h // patch, patch, w // patch, patch).any(axis=(1, 3))

    def _denoise_canvas(self, layout: Layout, canvas, free, params, on_step, should_cancel, side):
        ids = self.prompts.ids
        offset = ids.image_offset
        seq = torch.tensor(layout.prefix + (canvas + offset).tolist())
        free_t = torch.zeros(len(seq), dtype=torch.bool)
        free_t[len(layout.prefix):] = torch.from_numpy(free)
        scheduler = CanvasScheduler(
            temperature=float(params["temperature"]),
            choice_temperature=float(params["choice_temperature"]),
            remask_threshold=params["remask_threshold"], edit_threshold=params["edit_threshold"],
        )
        run = CanvasRun(
            self.model, seq, free_t, prefix_len=len(layout.prefix), mask_id=ids.mask,
            steps=int(params["image_steps"]), scheduler=scheduler,
            uncond_prefix=torch.tensor(layout.uncond_prefix), cfg_scale=float(params["cfg"]),
            token_range=(offset, offset + ids.num_codes),
            generator=self._generator(params["seed"]), should_cancel=should_cancel,
        )
        return self._stream_canvas(run, len(layout.prefix), side, on_step)

    def _denoise_blocks(self, layout: Layout, canvas, free, params, on_step, should_cancel, side):
        """LLaDA2.0-Uni's own image loop (spec §5.2): block-causal, 32-code blocks top to bottom,
        `image_steps` denoising steps per block, CFG, image ids only."""
        ids = self.prompts.ids
        offset = ids.image_offset
        start = torch.from_numpy(np.where(free, ids.mask, canvas + offset))
        scheduler = BlockDiffusionScheduler(
            int(params["image_block_length"]), float(params["image_threshold"]),
            float(params["temperature"]), remask_threshold=params["remask_threshold"],
            edit_threshold=params["edit_threshold"],
        )
        run = BlockDiffusionRun(
            self.model, torch.tensor(layout.prefix), gen_length=side * side, mask_id=ids.mask,
            eos_id=None, block_length=int(params["image_block_length"]),
            steps=int(params["image_steps"]), scheduler=scheduler,
            uncond_ids=torch.tensor(layout.uncond_prefix), cfg_scale=float(params["cfg"]),
            token_range=(offset, offset + ids.num_codes), canvas=start,
            pad_to_block=bool(params["image_pad_to_block"]),
            generator=self._generator(params["seed"]), should_cancel=should_cancel,
        )
        return self._stream_canvas(run, run.prompt_len, side, on_step)

    def _stream_canvas(self, run, p: int, side: int, on_step) -> np.ndarray:
        """Drive an image run (canvas or blocks), a preview per step; its final codes."""
        n = side * side
        for step in run:
            if on_step is not None:
                cells = run.sequence[p:p + n]
                on_step(self._view(step, p, cells, preview=self._preview(cells, side)))
        return (run.sequence[p:p + n] - self.prompts.ids.image_offset).cpu().numpy()

    def _preview(self, cells: torch.Tensor, side: int) -> np.ndarray:
        codes = (cells - self.prompts.ids.image_offset).cpu().numpy()
        masked = cells.cpu().numpy() == self.prompts.ids.mask
        preview = self.codec.palette[np.clip(codes, 0, self.codec.num_codes - 1)]
        preview[masked] = PREVIEW_MASK_RGB
        return preview.reshape(side, side, 3)

    def _view(self, step: Step, offset: int, output: torch.Tensor, preview=None, text=None,
              phase=None):
        n = output.numel()
        confidence = np.full(n, np.nan, dtype=np.float32)
        window = (step.window - offset).cpu().numpy()
        inside = (window >= 0) & (window < n)
        confidence[window[inside]] = step.confidence.cpu().numpy()[inside]
        counts = step.expert_counts
        return StepView(
            index=step.index, total=step.total,
            positions=(step.committed - offset).cpu().numpy(),
            tokens=step.tokens.cpu().numpy(),
            confidence=confidence,
            revised=(step.revised - offset).cpu().numpy(),
            preview=preview, text=text,
            expert_counts=None if counts is None else counts.cpu().numpy(),
            masked=(output == self.prompts.ids.mask).cpu().numpy(), phase=phase,
        )
