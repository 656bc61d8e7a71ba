"""Train the ShapesWorld demo model and write it as a model folder.

    python -m app.demo.train --out resources/models/shapes-demo --steps 1400 --seed 0

Everything is reproducible by seed: the tokenizer corpus, the codec, the initial weights and the
order of training examples. The trained weights match a rerun's only up to float rounding, which
CPU kernels do in a thread-dependent order (two runs of the same 600 steps from the same weights
differed by at most 0.014 in any weight, session 15). The objective is LLaDA's masked diffusion
over the free positions of every task mixed (text to image, edit, inpaint, VQA), with a little
uniform token corruption so the model also learns to fix wrong committed tokens (self-correction).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.demo import answer_pointer, world
from app.demo.anchor import FisherAnchor
from app.demo.answer_pointer import POINTER_HEAD, POINTER_LAYER, QUESTION_HEAD, QUESTION_LAYER
from app.demo.binding_probe import BINDING_PROBE_LAYER, BindingProbe
from app.demo.copy_head import COPY_LAYER, CopyHead, copy_targets, lm_readout
from app.demo.data import (
    GRID_SIDE,
    HARD_CELL_WEIGHT,
    TASK_MIX,
    TEXT_PAD_WEIGHT,
    ExampleMaker,
    collate,
    collate_blocks,
)
from app.demo.object_tokens import ObjectTokenTie
from app.demo.position_probe import IGNORE, PROBE_LAYER, LayerOutput, PositionProbe, grid_labels
from app.demo.scene_probe import SCENE_PROBE_LAYER, SceneProbe
from app.demo.text_tokenizer import set_rewrites, train_text_tokenizer
from app.engine.checkpoint import save_model
from app.engine.codecs.patch_vq import train_patch_vq
from app.engine.config import LLaDA2MoeConfig
from app.engine.model import LLaDA2MoeModelLM
from app.engine.presets import random_model
from app.engine.tasks import SPELL_OUT_KEY, PromptBuilder

# RoPE base chosen so the second rotary frequency (pair i=1 of rotary_dim/2 = 10) has a period of
# exactly one image row (16 codes): theta**(-2/20) = 2*pi/16. Tokens in the same column then share
# that phase, so "the cell above/below" is as easy to attend to as "the cell beside", which the
# 1-D positions of spec §3.3.4 otherwise leave for a tiny model to discover.
GRID_ROPE_THETA = (GRID_SIDE / (2 * math.pi)) ** 10

# Weight of the grid-position probe's loss (app/demo/position_probe.py).
POSITION_AUX = 0.5
# Weight of the scene probe's loss (app/demo/scene_probe.py); 0: it only reports.
SCENE_AUX = 1.0
# Weight of the binding probe's loss (app/demo/binding_probe.py); 0: no binding probe at all.
BINDING_AUX = 0.0

# What the weight anchor keeps (app/demo/anchor.py): the stage-3 mix's image and thinking tasks.
ANCHOR_MIX = {"generate": 0.4, "inpaint": 0.1, "ask": 0.2, "think": 0.1, "edit_think": 0.2}
ANCHOR_BATCHES = 40

POINTER_LOG_KEYS = {"point": "pointer_acc", "qpoint": "question_pointer_acc",
                    "point-read": "pointer_readout_acc"}

CODEC_SCENES = 3000
NUM_CODES = 1296  # every distinct 4x4 patch of the world: a lossless codec
CORPUS_SCENES = 4000

# The demo's backbone: same architecture as LLaDA2.0-mini (spec §1.3), scaled down to train on a
# 2-core CPU in about an hour and ship in well under 40 MB.
ARCH = dict(
    hidden_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
    head_dim=40, intermediate_size=384, moe_intermediate_size=160, num_experts=8,
    num_experts_per_tok=2, n_group=4, topk_group=2, num_shared_experts=1, first_k_dense_replace=1,
    routed_scaling_factor=2.5, partial_rotary_factor=0.5, rope_theta=GRID_ROPE_THETA, rms_norm_eps=1e-6,
    use_qk_norm=True, use_qkv_bias=False, use_bias=False, tie_word_embeddings=False,
    max_position_embeddings=1024,
)

# Sampling settings the demo model was tuned with (read by app.engine.pipeline; written into
# config.json `unmask_defaults` whenever a folder is written). Images use LLaDA2.0-Uni's own
# block loop (spec §5.2) on an unpadded canvas, as trained (app/demo/data.py collate_blocks).
DEMO_DEFAULTS = {
    "image_schedule": "blocks", "image_block_length": 32, "image_pad_to_block": False,
    "image_steps": 8, "image_threshold": 0.95, "cfg": 2.0, "temperature": 0.0,
    "choice_temperature": 2.0, "text_steps": 8, "block_length": 32, "gen_length": 32,
    "threshold": 0.9,
}

# Text to image thinks first (llada2_uni.md §4.4): the model writes the full caption, choosing
# what the prompt left open, then draws it; one 32-token block (the longest caption and its image
# header take 22). Written in one step at temperature 0.1: with the rest of the caption written,
# the model names a stated place worse than with it all masked (43/60 against 51/60 held-out
# prompts), so each later step of a many-step decode is a worse guess; in 8 steps at
# temperature 1 the thinking kept a stated place for 1 of 6 prompts
# (scripts/demo/t2i_breakdown.py), in one step 6 of 6.
# One object right 26/40 against 18/40 at temperature 0.2 (scripts/demo/sweep.py t2i, cfg 2.0).
# With the unguided drawing below, 0.1 drew 35/40 and 92/100 (`unmask eval -n 100`) against
# 31/40 and 89/100 at 0.2; 0 gives every seed the same caption, 0.1 still varies what the prompt
# leaves open (4 captions in 10 seeds of "a red circle", 6 at 0.2).
# The drawing after it unguided (cfg_after_thinking 1.0, one pass instead of two): one object
# 28/30 against 22/30 at cfg 2.0 (`unmask eval -n 30`), 31/40 against 26/40 (sweep); without
# thinking guidance still helps (11/30 at 2.0, 8/30 at 1.0), and edits need it (3/30, 0/30).
THINKING_DEFAULTS = {"thinking": True, "thinking_steps": 1, "thinking_length": 32,
                     "thinking_temperature": 0.1, "cfg_after_thinking": 1.0}

# ...and for a model trained with image_layout="canvas": whole-canvas MaskGIT decoding.
# Image temperature 0.5: on the shipped model one-object drawing 15/30 against 11/30 at 1.0
# (`unmask eval -n 30`), 18/40 against 14/40 (scripts/demo/sweep.py t2i), edits 2/30 against 0.
# Text answers in 2 steps, not 8, likewise: questions by kind 61/104
# against 55/104 (scripts/demo/vqa_kinds.py, 1 step also 61).
CANVAS_DEFAULTS = {
    "image_schedule": "canvas", "image_steps": 16, "cfg": 2.0, "temperature": 0.5,
    "choice_temperature": 2.0, "text_steps": 2, "block_length": 32, "gen_length": 32,
    "threshold": 0.9, **THINKING_DEFAULTS,
}


def world_corpus(rng: np.random.Generator) -> list[str]:
    texts = list(world.vocabulary())
    for _ in range(CORPUS_SCENES):
        scene = world.sample_scene(rng)
        texts += [world.caption(scene), world.sample_prompt(scene, rng)]
        texts += list(world.sample_qa(scene, rng))
        texts.append(world.sample_edit(scene, rng)[0])
    return texts


def codec_patches(rng: np.random.Generator) -> np.ndarray:
    images = [world.render(world.sample_scene(rng)) for _ in range(CODEC_SCENES)]
    p = world.PATCH_SIZE
    arr = np.stack(images).reshape(-1, 64 // p, p, 64 // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
    return arr.reshape(-1, p * p * 3)


def build_assets(seed: int, rope_theta: float = GRID_ROPE_THETA, text_rewrites: bool = True,
                 object_tokens: bool = False):
    """object_tokens: the tokenizer reads every full object phrase as one token
    (world.object_phrase_names, app/demo/object_tokens.py)."""
    rng = np.random.default_rng(seed)
    phrases = world.phrase_names() + (world.object_phrase_names() if object_tokens else ())
    tokenizer = train_text_tokenizer(
        world_corpus(rng), phrases, world.text_rewrites() if text_rewrites else ()
    )
    codec = train_patch_vq(codec_patches(rng), num_codes=NUM_CODES, seed=seed, iters=20,
                           snap_colors=world.PALETTE_ARRAY)
    text_vocab = tokenizer.get_vocab_size()
    config = LLaDA2MoeConfig.from_dict({
        **ARCH, "rope_theta": rope_theta,
        "vocab_size": text_vocab + codec.num_codes,
        "pad_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "image_token_offset": text_vocab,
        "eos_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "mask_token_id": tokenizer.token_to_id("<|mask|>"),
        "codec": "patch_vq",
        "unmask_defaults": DEMO_DEFAULTS,
        "demo": "shapesworld",
    })
    return tokenizer, codec, config


# batches whose output is text
TEXT_KINDS = ("ask", "think", "edit_think", "ask_think", "ask_pick", "edit_pick",
              "describe_full")
# Batches with no image at all (a prompt or description in, text out): a step of 12 costs
# ~0.2 s, mostly fixed per-step cost, against ~0.6 s for one with a 256-code canvas.
IMAGE_FREE_KINDS = ("think", "edit_think", "ask_think", "ask_pick", "edit_pick")


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    out: Path, steps: int, batch_size: int, seed: int, lr: float, threads: int,
    checkpoint_every: int = 200, init: Path | None = None, mask_schedule: str = "uniform",
    warmup: int = 100, task_mix: dict[str, float] | None = None, code_init: bool = True,
    schedule_steps: int | None = None, hard_cell_weight: float = HARD_CELL_WEIGHT,
    image_layout: str = "blocks", rope_theta: float = GRID_ROPE_THETA,
    position_aux: float = POSITION_AUX, scene_aux: float = SCENE_AUX,
    binding_aux: float = BINDING_AUX,
    text_pad_weight: float = TEXT_PAD_WEIGHT, copy_aux: float = 0.0, copy_readout: float = 0.0,
    kept_object_weight: float = 1.0, changed_cell_weight: float = 1.0,
    text_rewrites: bool = True, text_mask_schedule: str | None = None,
    answer_scene: bool = False, bf16: bool = False, two_object_rate: float | None = None,
    near_miss_rate: float = 0.0,
    full_mask_rate: float = 0.0, object_tokens: bool = False,
    text_batch_size: int | None = None, spell_out_descriptions: bool = False,
    pointer_aux: float = 0.0, question_pointer_aux: float = 0.0,
    pointer_readout: float = 0.0, anchor_weight: float = 0.0,
    anchor_mix: dict[str, float] | None = None, anchor_batches: int = ANCHOR_BATCHES,
) -> dict:
    """schedule_steps: the length the learning-rate schedule is laid out for (default: steps);
    stopping earlier keeps the schedule of the longer run, for a shorter annealing phase next.
    position_aux: weight of the grid-position probe loss (app/demo/position_probe.py); at 0 the
    probe still trains, on detached hidden states, so the log shows what the model knows.
    scene_aux: the same for the scene probe (app/demo/scene_probe.py).
    binding_aux: weight of the binding probe (app/demo/binding_probe.py); 0 leaves it out.
    copy_aux: weight of the supervised copy head of edits (app/demo/copy_head.py, canvas layout
    only); 0 leaves it out.
    kept_object_weight: loss weight of edit output cells that keep a source object's code.
    changed_cell_weight: loss weight of edit output cells whose code the edit changes.
    copy_readout: weight of the copy head's read-out loss (its output must name the source
    code, app/demo/copy_head.py); needs the copy head.
    text_rewrites: give the tokenizer the world's text rewrites (world.text_rewrites: "background
    to orange" reads the "orange background" token); with `init`, added to its tokenizer (ids
    unchanged); off, a fresh tokenizer has none and an init one is left as it is.
    text_mask_schedule: the mask-ratio schedule of text-output batches (ask, think, edit_think;
    default: mask_schedule). The cosine one favours heavy masking (29 % of draws mask over 90 %,
    uniform 10 %); the last steps of a text decode have few masks left.
    answer_scene: the scene probe also labels text answers (data.ExampleMaker).
    two_object_rate: share of two-object scenes (data.ExampleMaker); None: half, as drawn.
    near_miss_rate: share of question examples asking "is there" with near misses
    (data.ExampleMaker).
    full_mask_rate: share of image-output examples masked whole (data.collate; canvas layout).
    object_tokens: a fresh tokenizer reads each full object phrase as one token, tied to its
    words while training (app/demo/object_tokens.py); with `init` the folder's tokenizer decides.
    pointer_aux: weight of the answer pointer (app/demo/answer_pointer.py): a head of answer
    thinking's first answer position learns to look at the object the question asks about;
    0 leaves it out.
    question_pointer_aux: weight of the question pointer (answer_pointer.question_pointer): a
    head one layer earlier learns to look from the same position at the question's last word,
    which names what the answer pointer must find; 0 leaves it out.
    pointer_readout: weight of a read-out loss on the answer pointer's output (it must name the
    answer's first word, answer_pointer.readout_loss); needs the answer pointer.
    spell_out_descriptions: answer thinking reads descriptions with object phrases spelled out
    in words (tasks.SPELL_OUT_KEY, saved in config.json); with `init`, a folder that has it
    keeps it.
    anchor_weight: elastic weight consolidation (app/demo/anchor.py): each weight is pulled back
    to its start by anchor_weight times its importance to anchor_mix's tasks (default
    ANCHOR_MIX: drawing, describing and thinking), estimated over anchor_batches batches before
    the first step, so text-only steps at a high learning rate leave drawing be; 0 leaves it
    out.
    text_batch_size: the batch size of image-free batches (IMAGE_FREE_KINDS; default:
    batch_size): their steps cost mostly fixed time, so more examples a step come cheap.
    bf16: run forward and backward under bfloat16 autocast (fp32 weights and optimizer). Which is
    faster depends on the CPU: session 10's measured 0.57 s a step against 0.68 in fp32, session
    17's 0.62 against 0.55. The recipe keeps it: the shipped weights were trained with it, and a
    from-scratch fp32 run (session 17, docs/demo-model.md) did not learn two objects."""
    text_mask_schedule = text_mask_schedule or mask_schedule
    schedule_steps = schedule_steps or steps
    if not 0.0 <= full_mask_rate <= 1.0:
        raise ValueError(f"--full-mask-rate must be in [0, 1], not {full_mask_rate}")
    if full_mask_rate > 0 and image_layout != "canvas":
        raise ValueError("--full-mask-rate is for the canvas layout (blocks mask per block)")
    if copy_aux > 0 and image_layout != "canvas":
        raise ValueError("the copy head needs --image-layout canvas (one canvas copy per row)")
    if pointer_readout > 0 and pointer_aux <= 0:
        raise ValueError("--pointer-readout needs the answer pointer (--pointer-aux)")
    if copy_readout > 0 and copy_aux <= 0:
        raise ValueError("the copy read-out (--copy-readout) needs the copy head (--copy-aux > 0)")
    task_mix = task_mix or TASK_MIX
    anchor_mix = anchor_mix or ANCHOR_MIX
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    if init is not None:  # continue from a model folder, with its own tokenizer and codec
        model, tokenizer, codec = load_folder(init)
        config = model.config
        if text_rewrites:
            set_rewrites(tokenizer, world.text_rewrites())
    else:
        tokenizer, codec, config = build_assets(seed, rope_theta, text_rewrites, object_tokens)
        model = fresh_model(config, seed, codec if code_init else None)
    if spell_out_descriptions:
        config.extra[SPELL_OUT_KEY] = True
    tie = ObjectTokenTie.from_tokenizer(tokenizer)
    if tie is not None:  # phrase rows train as residuals over their words' rows
        (tie.to_residual if init is not None else tie.zero_residual)(model)
    forward = model if tie is None else partial(tie, model)
    prompts = PromptBuilder.for_model(tokenizer, config, codec)
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), image_layout,
                         text_pad_weight, kept_object_weight,
                         changed_cell_weight, answer_scene, two_object_rate,
                         near_miss_rate)
    defaults = DEMO_DEFAULTS if image_layout == "blocks" else CANVAS_DEFAULTS
    # Trained to rewrite a description by an instruction, or to answer from one: edits and
    # questions think first (describe, then that text step) by default.
    if task_mix.get("edit_think", 0) + task_mix.get("edit_pick", 0) > 0:
        defaults = {**defaults, "edit_thinking": True}
    if task_mix.get("ask_think", 0) + task_mix.get("ask_pick", 0) > 0:
        defaults = {**defaults, "ask_thinking": True}

    def save() -> None:  # a plain llada2_moe folder: phrase rows summed in (object_tokens.py)
        with tie.materialised(model) if tie is not None else nullcontext():
            write_folder(out, model, tokenizer, codec, defaults)

    model.train().requires_grad_(True)
    probe = PositionProbe(config.hidden_size, GRID_SIDE)
    probed = LayerOutput(model.model.layers[PROBE_LAYER])
    scene_probe = SceneProbe(config.hidden_size)
    scene_probed = LayerOutput(model.model.layers[SCENE_PROBE_LAYER])
    probes = [probe, scene_probe]
    binding_probe = binding_probed = None
    if binding_aux > 0:
        binding_probe = BindingProbe(config.hidden_size)
        binding_probed = LayerOutput(model.model.layers[BINDING_PROBE_LAYER])
        probes.append(binding_probe)
    copy_head = None
    if copy_aux > 0:
        copy_head = CopyHead(model.model.layers[COPY_LAYER].attention,
                             readout=lm_readout(model) if copy_readout else None)
    # Supervised attention of answer thinking (app/demo/answer_pointer.py), by log name: the
    # head, the Example field with its (query, key) and the loss weight.
    pointers = {}
    if pointer_aux > 0:
        pointers["point"] = (CopyHead(model.model.layers[POINTER_LAYER].attention,
                                      head=POINTER_HEAD,
                                      readout=lm_readout(model) if pointer_readout else None),
                             "pointer", pointer_aux)
    if question_pointer_aux > 0:
        pointers["qpoint"] = (CopyHead(model.model.layers[QUESTION_LAYER].attention,
                                       head=QUESTION_HEAD), "question_pointer",
                              question_pointer_aux)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2] + [
        p.read.weight for p in probes]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2] + [
        p.read.bias for p in probes]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                               {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                              betas=(0.9, 0.98))
    rng = np.random.default_rng(seed + 1)
    ids = prompts.ids

    def make_batch(kind: str, rng: np.random.Generator):
        size = text_batch_size if kind in IMAGE_FREE_KINDS and text_batch_size else batch_size
        examples = [maker.make(rng, kind) for _ in range(size)]
        if kind in TEXT_KINDS:
            batch = collate(examples, ids.mask, ids.eos, rng, mask_schedule=text_mask_schedule)
            return examples, batch, None
        if image_layout == "canvas":
            return examples, collate(examples, ids.mask, ids.eos, rng,
                                     mask_schedule=mask_schedule,
                                     full_mask_rate=full_mask_rate), None
        batch = collate_blocks(examples, ids.mask, ids.eos, rng, mask_schedule=mask_schedule,
                               hard_cell_weight=hard_cell_weight)
        return examples, batch, batch.positions

    def task_loss(batch, positions) -> torch.Tensor:
        # The head runs over the scored positions only: the prompt and the kept cells need no
        # logits.
        logits = forward(batch.noisy, batch.attention, positions, logits_index=batch.loss_mask)
        per_token = F.cross_entropy(logits.float(), batch.clean[batch.loss_mask],
                                    reduction="none")
        weights = batch.weights[batch.loss_mask]
        return (per_token * weights).sum() / weights.sum()

    weight_anchor = None
    if anchor_weight > 0:  # elastic weight consolidation of what anchor_mix's tasks use
        anchor_rng = np.random.default_rng(seed + 2)

        def anchor_loss() -> torch.Tensor:
            kind = str(anchor_rng.choice(list(anchor_mix), p=list(anchor_mix.values())))
            _, batch, positions = make_batch(kind, anchor_rng)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return task_loss(batch, positions)

        weight_anchor = FisherAnchor.estimate(model.parameters(), anchor_loss, anchor_batches,
                                              anchor_weight)
    log, start = [], time.perf_counter()
    for step in range(steps):
        # One task per batch: lengths differ 2x between tasks, so mixed batches waste padding.
        kind = str(rng.choice(list(task_mix), p=list(task_mix.values())))
        examples, batch, positions = make_batch(kind, rng)
        if copy_head is not None:  # its [B, S, S] scores only for batches with an edit to copy
            copy_goal = copy_targets(batch.clean, ids.boi, GRID_SIDE)
            copy_head.active = bool((copy_goal != IGNORE).any())
        pointer_goals = {}
        for name, (head, field, _) in pointers.items():
            pointer_goals[name] = answer_pointer.targets(
                [getattr(e, field) for e in examples], batch.clean.shape[1])
            head.active = bool((pointer_goals[name] != IGNORE).any())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = task_loss(batch, positions)
            # At weight 0 the hidden states are detached: the probe learns, the model does not.
            hidden, probe_weight = _probe_input(probed.value, position_aux)
            probe_loss, probe_acc = probe.loss(hidden, grid_labels(batch.clean, positions,
                                                                   ids.boi, GRID_SIDE))
            hidden, scene_weight = _probe_input(scene_probed.value, scene_aux)
            scene_loss, scene_acc = scene_probe.loss(hidden, batch.scene)
            total = loss + probe_weight * probe_loss + scene_weight * scene_loss
            bind_acc = None
            if binding_probe is not None:
                bind_loss, bind_acc = binding_probe.loss(binding_probed.value, batch.binding)
                total = total + binding_aux * bind_loss
            pointer_accs = {}
            for name, (head, _, weight) in pointers.items():
                if head.active:
                    pointer_loss, pointer_accs[name] = head.loss(pointer_goals[name])
                    total = total + weight * pointer_loss
                    if head.readout is not None:
                        word_loss, pointer_accs[name + "-read"] = answer_pointer.readout_loss(
                            head, pointer_goals[name], batch.clean)
                        total = total + pointer_readout * word_loss
            copy_acc = readout_acc = None
            if copy_head is not None:
                copy_loss, copy_acc = copy_head.loss(copy_goal)
                total = total + copy_aux * copy_loss
                if copy_readout > 0:
                    readout_loss, readout_acc = copy_head.readout_loss(copy_goal, batch.clean)
                    total = total + copy_readout * readout_loss
        optim.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if weight_anchor is not None:
            weight_anchor.pull()
        for group in optim.param_groups:
            group["lr"] = lr_at(step, schedule_steps, lr, warmup)
        optim.step()
        if step % 25 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - start
            log.append({"step": step, "kind": kind, "loss": round(loss.item(), 4),
                        "probe_loss": round(probe_loss.item(), 4),
                        "probe_acc": round(probe_acc, 3), "scene_loss": round(scene_loss.item(), 4),
                        "scene_acc": round(scene_acc, 3), "seconds": round(elapsed, 1)})
            extra = ""  # the optional heads' accuracies
            if bind_acc is not None:
                log[-1]["binding_acc"] = round(bind_acc, 3)
                extra = f"  bind {bind_acc:.2f}"
            for name, acc in pointer_accs.items():
                log[-1][POINTER_LOG_KEYS[name]] = round(acc, 3)
                extra += f"  {name} {acc:.2f}"
            if weight_anchor is not None:
                log[-1]["anchor_drift"] = weight_anchor.drift()
                extra += f"  drift {log[-1]['anchor_drift']:.2e}"
            if copy_acc is not None and kind.startswith("edit"):
                log[-1]["copy_acc"] = round(copy_acc, 3)
                extra += f"  copy {copy_acc:.2f}"
                if readout_acc is not None:
                    log[-1]["readout_acc"] = round(readout_acc, 3)
                    extra += f"  read {readout_acc:.2f}"
            print(f"step {step:5d}  {kind:8s} loss {loss.item():.4f}  cell {probe_acc:.2f}  "
                  f"scene {scene_acc:.2f}{extra}  {elapsed / 60:.1f} min", flush=True)
        if checkpoint_every and step and step % checkpoint_every == 0:
            model.eval()
            save()  # a usable model at any time
            model.train()
    probed.remove()
    scene_probed.remove()
    if binding_probed is not None:
        binding_probed.remove()
    if copy_head is not None:
        copy_head.remove()
    for head, _, _ in pointers.values():
        head.remove()
    model.eval().requires_grad_(False)
    save()
    summary = {"steps": steps, "schedule_steps": schedule_steps, "batch_size": batch_size,
               "text_batch_size": text_batch_size or batch_size,
               "seed": seed, "lr": lr,
               "init": str(init) if init else None, "mask_schedule": mask_schedule,
               "text_mask_schedule": text_mask_schedule,
               "position_aux": position_aux, "scene_aux": scene_aux, "binding_aux": binding_aux,
               "text_pad_weight": text_pad_weight,
               "copy_aux": copy_aux, "copy_readout": copy_readout,
               "kept_object_weight": kept_object_weight,
               "changed_cell_weight": changed_cell_weight,
               "text_rewrites": text_rewrites, "answer_scene": answer_scene, "bf16": bf16,
               "two_object_rate": two_object_rate, "full_mask_rate": full_mask_rate,
               "near_miss_rate": near_miss_rate, "pointer_aux": pointer_aux,
               "question_pointer_aux": question_pointer_aux,
               "pointer_readout": pointer_readout,
               "anchor_weight": anchor_weight,
               "anchor_mix": anchor_mix if anchor_weight > 0 else None,
               "anchor_batches": anchor_batches if anchor_weight > 0 else None,
               "spell_out_descriptions": bool(config.extra.get(SPELL_OUT_KEY)),
               "image_layout": image_layout, "object_tokens": tie is not None,
               "minutes": round((time.perf_counter() - start) / 60, 1), "log": log}
    (out / "training_log.json").write_text(json.dumps(summary, indent=1))
    return summary


def _probe_input(hidden: torch.Tensor, weight: float) -> tuple[torch.Tensor, float]:
    """A probe's input and loss weight: at weight 0 the probe reads detached states at weight 1,
    so it keeps learning (and reporting) without training the model."""
    return (hidden, weight) if weight > 0 else (hidden.detach(), 1.0)


def code_features(codec) -> torch.Tensor:
    """[K, p*p*C] one-hot palette colour per pixel of each code: codes that share pixels share
    features, so what the model learns about one edge patch carries over to its recoloured twins."""
    palette = world.PALETTE_ARRAY.astype(np.float32)
    pixels = codec.centroids.reshape(codec.num_codes, -1, 3)
    labels = np.argmin(((pixels[:, :, None, :] - palette[None, None]) ** 2).sum(-1), axis=-1)
    onehot = np.eye(len(palette), dtype=np.float32)[labels]  # [K, p*p, C]
    return torch.from_numpy(onehot.reshape(codec.num_codes, -1))


def init_code_rows(model: LLaDA2MoeModelLM, codec, seed: int) -> None:
    """Start the image-code rows of the embedding and the output head as a fixed linear map of
    code_features: the head's logits then begin as a sum of per-pixel colour scores, and training
    only has to learn which pixel gets which colour instead of 1296 unrelated classes."""
    features = code_features(codec)
    features = features - features.mean(0, keepdim=True)
    hidden = model.config.hidden_size
    generator = torch.Generator().manual_seed(seed + 7)
    basis = torch.linalg.qr(torch.randn(max(hidden, features.shape[1]), hidden,
                                        generator=generator))[0][: features.shape[1]]
    rows = features @ basis
    offset = model.config.image_token_offset
    with torch.no_grad():
        for table in (model.model.word_embeddings.weight, model.lm_head.weight):
            target_norm = table[:offset].norm(dim=1).mean()
            table[offset:offset + len(rows)] = rows * (target_norm / rows.norm(dim=1).mean())


def fresh_model(config: LLaDA2MoeConfig, seed: int, codec=None) -> LLaDA2MoeModelLM:
    model = random_model(config, seed=seed, std=0.02)
    if codec is not None:
        init_code_rows(model, codec, seed)
    for block in model.moe_blocks():  # the router starts neutral; the bias only steers selection
        block.gate.expert_bias.zero_()
    for name, p in model.named_parameters():
        if "norm" in name:
            p.data.fill_(1.0)
    return model


def load_folder(folder: Path):
    from tokenizers import Tokenizer

    from app.engine.checkpoint import load_model
    from app.engine.codecs.patch_vq import PatchVQCodec

    model = load_model(folder)
    return model, Tokenizer.from_file(str(folder / "tokenizer.json")), PatchVQCodec.load(
        folder / "image_tokenizer")


def load_with_prompts(folder: Path):
    """load_folder, the model in eval mode, plus the prompt builder over the folder's tokenizer
    and codec: (model, tokenizer, codec, prompts), what the diagnostic scripts open."""
    model, tokenizer, codec = load_folder(folder)
    prompts = PromptBuilder.for_model(tokenizer, model.config, codec)
    return model.eval(), tokenizer, codec, prompts


def write_folder(out: Path, model, tokenizer, codec, defaults: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.config.extra["unmask_defaults"] = dict(defaults or DEMO_DEFAULTS)
    save_model(model, out)
    tokenizer.save(str(out / "tokenizer.json"))
    codec.save(out / "image_tokenizer")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train the ShapesWorld demo model")
    parser.add_argument("--out", type=Path, default=Path("resources/models/shapes-demo"))
    parser.add_argument("--steps", type=int, default=1400)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--text-batch-size", type=int, default=None,
                        help="batch size of the image-free thinking batches (think, edit_think, "
                             "ask_think; default: --batch-size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", type=Path, default=None, help="continue from this model folder")
    parser.add_argument("--mask-schedule", choices=["uniform", "cosine"], default="uniform")
    parser.add_argument("--full-mask-rate", type=float, default=0.0,
                        help="share of image-output examples with the whole canvas masked")
    parser.add_argument("--text-mask-schedule", choices=["uniform", "cosine"], default=None,
                        help="mask-ratio schedule of text-output batches (default: "
                             "--mask-schedule)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--schedule-steps", type=int, default=None,
                        help="lay the learning-rate schedule out for this many steps (default: "
                             "--steps) and stop after --steps")
    parser.add_argument("--hard-cell-weight", type=float, default=HARD_CELL_WEIGHT,
                        help="loss weight of canvas cells that differ from the cell above or to "
                             "the left, and of the first row (1 = unweighted)")
    parser.add_argument("--image-layout", choices=["blocks", "canvas"], default="blocks",
                        help="blocks: block-causal canvases (LLaDA2.0-Uni's loop); canvas: the "
                             "whole canvas at once (MaskGIT)")
    parser.add_argument("--rope-theta", type=float, default=GRID_ROPE_THETA)
    parser.add_argument("--no-code-init", action="store_true",
                        help="random image-code embedding rows instead of pixel-colour features")
    parser.add_argument("--position-aux", type=float, default=POSITION_AUX,
                        help="weight of the auxiliary loss that teaches early layers each image "
                             "cell's row and column (0: off, the probe only reports)")
    parser.add_argument("--scene-aux", type=float, default=SCENE_AUX,
                        help="weight of the auxiliary loss that makes every image cell encode the "
                             "scene its image shows or must show (0: off, the probe only reports)")
    parser.add_argument("--binding-aux", type=float, default=BINDING_AUX,
                        help="weight of the auxiliary loss that makes every output-canvas cell "
                             "name the object whose place holds it (0: off)")
    parser.add_argument("--copy-aux", type=float, default=0.0,
                        help="weight of the loss that makes one layer-2 head of every edit's "
                             "output cell look at the same source cell (0: off; canvas layout)")
    parser.add_argument("--copy-readout", type=float, default=0.0,
                        help="weight of the loss that makes the copy head's output name the "
                             "source cell's code through the lm_head (0: off; needs --copy-aux)")
    parser.add_argument("--kept-object-weight", type=float, default=1.0,
                        help="loss weight of edit output cells that keep a source object's code")
    parser.add_argument("--changed-cell-weight", type=float, default=1.0,
                        help="loss weight of edit output cells whose code the edit changes")
    parser.add_argument("--text-pad-weight", type=float, default=TEXT_PAD_WEIGHT,
                        help="loss weight of text answers' eos padding after the first eos")
    parser.add_argument("--answer-scene", action="store_true",
                        help="the scene probe also labels text answers: thinking with the scene "
                             "its prompt states, a question's answer with its image's scene")
    parser.add_argument("--two-object-rate", type=float, default=None,
                        help="share of two-object scenes in training (default: half, the "
                             "world's own draw)")
    parser.add_argument("--near-miss-rate", type=float, default=0.0,
                        help="share of question examples (ask, ask_think) asking 'is there' "
                             "about a near miss or an object that is there (default 0)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for forward and backward (fp32 weights)")
    parser.add_argument("--no-text-rewrites", action="store_true",
                        help="leave out the tokenizer's text rewrites (world.text_rewrites); with "
                             "--init, the folder's tokenizer is kept as it is")
    parser.add_argument("--object-tokens", action="store_true",
                        help="a fresh tokenizer reads each full object phrase ('a small red "
                             "circle at the top left') as one token (app/demo/object_tokens.py)")
    parser.add_argument("--pointer-aux", type=float, default=0.0,
                        help="weight of the answer pointer (app/demo/answer_pointer.py); 0: off")
    parser.add_argument("--question-pointer-aux", type=float, default=0.0,
                        help="weight of the question pointer (app/demo/answer_pointer.py); 0: off")
    parser.add_argument("--pointer-readout", type=float, default=0.0,
                        help="weight of the answer pointer's read-out loss; 0: off")
    parser.add_argument("--spell-out-descriptions", action="store_true",
                        help="answer thinking reads descriptions with object phrases spelled out "
                             "in words (saved in config.json)")
    parser.add_argument("--anchor-weight", type=float, default=0.0,
                        help="elastic weight consolidation of the --anchor-mix tasks "
                             "(app/demo/anchor.py); 0: off")
    parser.add_argument("--anchor-mix", type=_task_mix, default=None,
                        help="the tasks the anchor keeps, as --task-mix (default: drawing, "
                             "describing and thinking)")
    parser.add_argument("--anchor-batches", type=int, default=ANCHOR_BATCHES,
                        help="batches the anchor's Fisher is estimated over")
    parser.add_argument("--task-mix", type=_task_mix, default=None,
                        help="shares of the tasks, default " + ",".join(
                            f"{k}={v:g}" for k, v in TASK_MIX.items()))
    args = parser.parse_args(argv)
    train(args.out, args.steps, args.batch_size, args.seed, args.lr, args.threads,
          init=args.init, mask_schedule=args.mask_schedule, warmup=args.warmup,
          text_mask_schedule=args.text_mask_schedule,
          schedule_steps=args.schedule_steps, hard_cell_weight=args.hard_cell_weight,
          task_mix=args.task_mix, image_layout=args.image_layout, rope_theta=args.rope_theta,
          code_init=not args.no_code_init, position_aux=args.position_aux,
          scene_aux=args.scene_aux, binding_aux=args.binding_aux,
          text_pad_weight=args.text_pad_weight,
          copy_aux=args.copy_aux, copy_readout=args.copy_readout,
          kept_object_weight=args.kept_object_weight,
          changed_cell_weight=args.changed_cell_weight,
          text_rewrites=not args.no_text_rewrites, answer_scene=args.answer_scene,
          bf16=args.bf16, two_object_rate=args.two_object_rate,
          near_miss_rate=args.near_miss_rate,
          full_mask_rate=args.full_mask_rate, object_tokens=args.object_tokens,
          text_batch_size=args.text_batch_size,
          spell_out_descriptions=args.spell_out_descriptions, pointer_aux=args.pointer_aux,
          question_pointer_aux=args.question_pointer_aux,
          pointer_readout=args.pointer_readout,
          anchor_weight=args.anchor_weight, anchor_mix=args.anchor_mix,
          anchor_batches=args.anchor_batches)


def _task_mix(text: str) -> dict[str, float]:
    mix = {k: float(v) for k, v in (part.split("=") for part in text.split(","))}
    unknown = set(mix) - set(TASK_MIX)
    if unknown or abs(sum(mix.values()) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"tasks {sorted(TASK_MIX)} with shares summing to 1")
    return mix


if __name__ == "__main__":
    main()
