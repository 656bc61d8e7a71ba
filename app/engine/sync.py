"""Waiting for a device's queued work, for timings and for reusing buffers a kernel may still read."""
from __future__ import annotations

import torch


def synchronize(device: torch.device) -> None:
    """Block until `device` has finished its queued kernels and copies; CPU work is synchronous."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
