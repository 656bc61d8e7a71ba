"""Where a cached step of the image loop spends its time on a GPU (a dev tool, not a test):
    PYTHONPATH=. python3 scripts/gpu_profile.py [--scale mini] [--forwards 24]
Prints torch.profiler's top ops by self CUDA and self CPU time, kernel launches and host syncs
per forward, and the forward's wall time against its GPU busy time."""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from app.engine.bench import image_loop
from app.engine.presets import config_for, random_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="mini")
    parser.add_argument("--forwards", type=int, default=24)
    args = parser.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = random_model(config_for(args.scale), seed=0, dtype=dtype, device=dev)
    for cache in (True, False):
        image_loop(model, prompt_len=64, image_tokens=64, use_cache=cache, cfg=True)  # warm-up
        torch.cuda.synchronize() if dev.type == "cuda" else None
        start = time.perf_counter()
        n = image_loop(model, prompt_len=64, image_tokens=1024, use_cache=cache, cfg=True,
                       max_forwards=args.forwards)
        torch.cuda.synchronize() if dev.type == "cuda" else None
        print(f"cache={cache}: {1000 * (time.perf_counter() - start) / n:.1f} ms/forward over the "
              f"loop's first {n} forwards", flush=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        n = image_loop(model, prompt_len=64, image_tokens=1024, use_cache=True, cfg=True,
                       max_forwards=args.forwards)
    events = prof.key_averages()
    sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=30, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))
    for name in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaStreamSynchronize",
                 "cudaMemcpyAsync", "cudaDeviceSynchronize", "aten::item", "aten::_local_scalar_dense"):
        hits = [e for e in events if e.key == name]
        if hits:
            print(f"{name}: {hits[0].count / n:.1f} per forward, "
                  f"{hits[0].self_cpu_time_total / n / 1000:.2f} ms CPU per forward")
    gpu_busy = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
    print(f"GPU kernel time {gpu_busy / n / 1000:.2f} ms per forward ({n} forwards profiled)")


if __name__ == "__main__":
    main()
