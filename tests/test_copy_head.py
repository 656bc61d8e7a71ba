"""The supervised copy head (app/demo/copy_head.py): in an edit, every output-canvas cell's target
is the same cell of the source image, and the head's kept scores are its real attention logits."""

import json

import numpy as np
import pytest
import torch

from app.demo import world
from app.demo.copy_head import CopyHead, copy_targets, lm_readout
from app.demo.data import ExampleMaker, collate
from app.demo.position_probe import IGNORE
from tests.probe_fixtures import tiny_trainable_model

CELLS = 256


def _batch(prompts, codec, tokenizer, kinds, seed):
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(seed)
    examples = [maker.make(rng, kind) for kind in kinds]
    return examples, collate(examples, prompts.ids.mask, prompts.ids.eos, rng)


def test_output_cells_point_at_the_same_source_cell(assets):
    config, tokenizer, codec, prompts = assets
    scene = world.Scene("white", (world.Obj("circle", "red", "large", "top left"),))
    source = codec.encode(world.render(scene))
    recoloured = codec.encode(world.render(world.apply_edit(scene, "make the circle blue")))
    layout = prompts.edit(source, "make the circle blue")
    ids = torch.tensor([layout.prefix + (recoloured.reshape(-1) + prompts.ids.image_offset)
                        .tolist()])
    targets = copy_targets(ids, prompts.ids.boi, 16)[0]
    source_start = layout.prefix.index(prompts.ids.boi) + 1
    out = len(layout.prefix)
    assert (targets[:out] == IGNORE).all()
    assert targets[out:].tolist() == list(range(source_start, source_start + CELLS))
    # the recolouring keeps the background: those cells' targets hold the very same code
    same = ids[0, out:] == ids[0, targets[out:]]
    assert 0.7 < same.float().mean() < 1.0


def test_tasks_without_a_source_image_get_no_targets(assets):
    config, tokenizer, codec, prompts = assets
    examples, batch = _batch(prompts, codec, tokenizer,
                                  ["generate", "ask", "inpaint", "think", "edit"], 3)
    targets = copy_targets(batch.clean, prompts.ids.boi, 16)
    assert (targets[:4] == IGNORE).all()
    assert int((targets[4] != IGNORE).sum()) == CELLS
    assert targets[4, examples[4].prefix_len] != IGNORE


def test_kept_scores_are_the_heads_attention_logits(assets):
    config, tokenizer, codec, prompts = assets
    model = tiny_trainable_model(config).eval()
    examples, batch = _batch(prompts, codec, tokenizer, ["edit", "ask"], 4)
    attention = model.model.layers[2].attention
    head = CopyHead(attention, head=1)
    mixed = {}
    handle = attention.dense.register_forward_pre_hook(
        lambda module, args: mixed.setdefault("value", args[0]))
    values = {}
    qkv_handle = attention.query_key_value.register_forward_hook(
        lambda module, args, out: values.setdefault("qkv", out))
    with torch.no_grad():
        model(batch.noisy, batch.attention)
    for hook in (handle, qkv_handle, head):
        hook.remove()
    b, s = batch.noisy.shape
    nh, nkv, hd = attention.nh, attention.nkv, attention.hd
    group = 1 // (nh // nkv)  # grouped-query attention: head 1's key/value group
    v = values["qkv"].view(b, s, nh + 2 * nkv, hd)[:, :, nh + nkv + group]
    # head 1's output = softmax(kept scores) @ its value group's values
    rebuilt = head.scores.softmax(-1) @ v.float()
    actual = mixed["value"].view(b, s, nh, hd)[:, :, 1]
    assert torch.allclose(rebuilt, actual.float(), atol=1e-5)


def _train_tiny_copy_head(assets, steps: int, with_readout: bool) -> list[tuple[float, float]]:
    """Trains a tiny random model on the copy losses alone (attention, plus the read-out when
    asked) on two edits; per step, the loss and hit rate of the read-out if trained, else of the
    attention."""
    config, tokenizer, codec, prompts = assets
    torch.manual_seed(0)
    model = tiny_trainable_model(config)
    head = CopyHead(model.model.layers[2].attention,
                    readout=lm_readout(model) if with_readout else None)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    examples, batch = _batch(prompts, codec, tokenizer, ["edit"] * 2, 5)
    targets = copy_targets(batch.clean, prompts.ids.boi, 16)
    history = []
    for _ in range(steps):
        model(batch.clean, batch.attention)
        total, hit = head.loss(targets)
        loss = total
        if with_readout:
            loss, hit = head.readout_loss(targets, batch.clean)
            total = total + loss
        optim.zero_grad()
        total.backward()
        optim.step()
        history.append((loss.item(), hit))
    head.remove()
    return history


def test_training_the_copy_head_finds_the_source_cells(assets):
    """Trained on the copy loss alone, a tiny random model learns to point at the source cells
    far above chance (1 in ~540 keys)."""
    hits = [hit for _, hit in _train_tiny_copy_head(assets, 60, with_readout=False)]
    assert hits[0] < 0.05 and hits[-1] > 0.5


def test_carried_vector_is_the_heads_share_of_the_attention_output(assets):
    config, tokenizer, codec, prompts = assets
    model = tiny_trainable_model(config).eval()
    examples, batch = _batch(prompts, codec, tokenizer, ["edit"], 6)
    attention = model.model.layers[2].attention
    head = CopyHead(attention, head=3, readout=lm_readout(model))
    mixed = {}
    handle = attention.dense.register_forward_pre_hook(
        lambda module, args: mixed.setdefault("value", args[0]))
    with torch.no_grad():
        model(batch.noisy, batch.attention)
    handle.remove()
    head.remove()
    b, s = batch.noisy.shape
    hd = attention.hd
    share = mixed["value"][:, :, 3 * hd: 4 * hd] @ attention.dense.weight[:, 3 * hd: 4 * hd].T
    everywhere = torch.ones(b, s, dtype=torch.bool)
    assert torch.allclose(head.carried(everywhere), share.reshape(b * s, -1), atol=1e-5)


def test_training_the_readout_makes_the_head_carry_the_source_codes(assets):
    """Attention and read-out losses together: the head's output, read through the lm_head,
    comes to name the source cells' codes (cross-entropy from ln 1444 = 7.3, chance over the
    vocabulary, to under a third of it; object cells, a few dozen here, take longer)."""
    losses = [loss for loss, _ in _train_tiny_copy_head(assets, 80, with_readout=True)]
    assert losses[0] > 6.5 and losses[-1] < losses[0] / 3


def test_the_readout_needs_the_copy_head(tmp_path):
    from app.demo.train import train

    with pytest.raises(ValueError, match="--copy-aux"):
        train(tmp_path / "out", steps=1, batch_size=1, seed=0, lr=1e-3, threads=1,
              image_layout="canvas", copy_readout=1.0)


def test_training_with_the_copy_head_logs_it_and_saves_a_plain_model(tmp_path):
    from app.demo.train import train
    from app.engine.checkpoint import load_model

    summary = train(tmp_path / "out", steps=2, batch_size=2, seed=0, lr=1e-3, threads=1,
                    checkpoint_every=0, task_mix={"edit": 1.0}, image_layout="canvas",
                    copy_aux=1.0, copy_readout=1.0)
    assert summary["copy_aux"] == 1.0 and "copy_acc" in summary["log"][0]
    assert summary["copy_readout"] == 1.0 and "readout_acc" in summary["log"][0]
    assert json.loads((tmp_path / "out" / "training_log.json").read_text())["copy_aux"] == 1.0
    model = load_model(tmp_path / "out")  # a plain llada2_moe: the hook added nothing
    assert set(model.state_dict()) == set(load_model(tmp_path / "out").state_dict())
    assert not any("copy" in name for name in model.state_dict())
