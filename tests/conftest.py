import os

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_config():
    from app.engine.presets import config_for

    return config_for("tiny", first_k_dense_replace=1, use_bias=True)


@pytest.fixture
def tiny_model(tiny_config):
    from app.engine.presets import random_model

    return random_model(tiny_config, seed=1, std=0.3)


@pytest.fixture(scope="module")
def assets():
    """(config, tokenizer, codec, prompts) of the shipped demo model (the probe tests' inputs)."""
    from tests.probe_fixtures import shipped_assets

    return shipped_assets()


@pytest.fixture(scope="module")
def loop(qapp):
    """A qasync loop over the Qt application, one per test module: Qt and asyncio share one loop,
    as in the app."""
    import asyncio

    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)
