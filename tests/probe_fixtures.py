"""Shared by the training-probe tests: the shipped demo model's tokenizer, codec and prompt
builder, and a tiny random model of its config to backpropagate through."""

from __future__ import annotations

from app.demo.train import load_with_prompts
from app.engine.presets import random_model
from app.paths import DEFAULT_MODEL


def shipped_assets():
    """(config, tokenizer, codec, prompts) of the shipped demo model."""
    shipped, tokenizer, codec, prompts = load_with_prompts(DEFAULT_MODEL)
    return shipped.config, tokenizer, codec, prompts


def tiny_trainable_model(config):
    """A 3-layer, 32-wide random model with the shipped vocabulary, in training mode."""
    small = type(config).from_dict({**config.to_dict(), "hidden_size": 32, "head_dim": 8,
                                    "num_hidden_layers": 3, "intermediate_size": 48,
                                    "moe_intermediate_size": 16})
    return random_model(small, seed=0).train().requires_grad_(True)


def made_examples(assets, kind: str, count: int, seed: int, **maker_options):
    """`count` training examples of one task from an ExampleMaker in the canvas layout over the
    shipped assets, and the generator that made them (for collate)."""
    import numpy as np

    from app.demo.data import ExampleMaker

    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas", **maker_options)
    rng = np.random.default_rng(seed)
    return [maker.make(rng, kind) for _ in range(count)], rng
