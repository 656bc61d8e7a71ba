"""The engine: LLaDA2.0 MoE model, checkpoint IO, schedulers and denoising loops (torch only)."""

from app.engine.checkpoint import CheckpointError, load_model, save_model
from app.engine.config import ConfigError, LLaDA2MoeConfig
from app.engine.generate import BlockDiffusionRun, Cancelled, CanvasRun, Step, generate_text
from app.engine.model import KVCache, LLaDA2MoeModelLM
from app.engine.sampler import BlockDiffusionScheduler, CanvasScheduler

__all__ = [
    "BlockDiffusionRun",
    "BlockDiffusionScheduler",
    "Cancelled",
    "CanvasRun",
    "CanvasScheduler",
    "CheckpointError",
    "ConfigError",
    "KVCache",
    "LLaDA2MoeConfig",
    "LLaDA2MoeModelLM",
    "Step",
    "generate_text",
    "load_model",
    "save_model",
]
