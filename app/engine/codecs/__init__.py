"""Image codecs: images <-> grids of integer codes the model reads and writes."""

from app.engine.codecs.patch_vq import PatchVQCodec, train_patch_vq

__all__ = ["PatchVQCodec", "train_patch_vq"]
