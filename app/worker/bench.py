"""`unmask bench worker`: what the process split costs the live view.

Runs a real spawned worker with a synthetic engine (the Pipeline contract, no model: steps are
emitted as fast as asked) so the numbers are the transport's own: StepEmitter -> outbox thread ->
pickle -> pipe -> reader thread -> call_soon_threadsafe -> the async iterator the GUI reads.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from app.protocol import Done, Generate, Step
from app.worker.client import WorkerClient

ENGINE = "app.worker.bench:SyntheticPipeline"


class SyntheticPipeline:
    """Pipeline contract without a model. params: side (preview side), steps, interval (s),
    experts ([layers, E] counts per step, 0 = none)."""

    @classmethod
    def load(cls, folder, *, device="cpu", dtype=None, placement=None, progress=None):
        if progress is not None:
            progress(1, 1)
        return cls()

    def describe(self) -> dict:
        return {"name": "synthetic", "params": 0, "device": "cpu", "placement": None}

    def run(self, job, on_step=None, should_cancel=None):
        from app.engine.jobs import JobResult, StepView

        side, steps = int(job.params.get("side", 16)), int(job.params.get("steps", 100))
        interval, experts = float(job.params.get("interval", 0.0)), job.params.get("experts")
        rng = np.random.default_rng(0)
        previews = rng.integers(0, 256, (4, side, side, 3), np.uint8)  # a few to cycle through
        confidence = rng.random(side * side, dtype=np.float32)
        counts = rng.integers(0, 64, tuple(experts), np.int64) if experts else None
        per_step = max(1, side * side // steps)
        for i in range(steps):
            if should_cancel is not None and should_cancel():
                raise _cancelled()
            positions = np.arange(i * per_step, (i + 1) * per_step, dtype=np.int64) % (side * side)
            if on_step is not None:
                on_step(StepView(
                    index=i, total=steps, positions=positions, tokens=positions.copy(),
                    confidence=confidence, revised=np.zeros(0, np.int64),
                    preview=previews[i % 4], expert_counts=counts,
                ))
            if interval:
                time.sleep(interval)
        return JobResult(image=previews[0], tokens=np.zeros((side, side), np.int64))


def _cancelled() -> Exception:
    from app.engine.generate import Cancelled

    return Cancelled()


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream(client: WorkerClient, job_id: str, **params) -> tuple[list[float], int, float]:
    """(latencies in s, previews received, seconds from first to last step received)."""
    stream = client.submit(Generate(job_id, "generate", "bench", params=params))
    latencies, previews, first, last = [], 0, None, None
    async for event in stream:
        if isinstance(event, Step):
            now = time.time()
            latencies.append(now - event.sent_at)
            previews += event.preview is not None
            first = now if first is None else first
            last = now
    if not isinstance(stream.final, Done):
        raise RuntimeError(f"bench job {job_id} failed: {stream.final}")
    return latencies, previews, (last or 0.0) - (first or 0.0)


def _row(label: str, steps: int, shown: int, span: float, side: int) -> str:
    rate = (steps - 1) / span if span > 0 else float("inf")
    preview_rate = shown / span if span > 0 else float("inf")
    return (f"  {label:<36} {rate:>9.0f} {preview_rate:>11.0f} {100 * shown / steps:>9.1f} % "
            f"{preview_rate * side * side * 3 / 1e6:>9.2f}")


async def _bench(steps: int, idle_seconds: float) -> list[str]:
    client = WorkerClient(engine=ENGINE)
    await client.start(60)
    try:
        await client.load(tempfile.gettempdir(), timeout=120)
        await _stream(client, "warmup", steps=50, side=16)  # first job imports the engine's types
        lines = ["worker transport bench: spawned worker, synthetic engine (no model); "
                 "pickle + pipe + reader thread + asyncio hop", ""]
        for side in (16, 64):
            lat, _, _ = await _stream(client, f"latency-{side}", steps=300, side=side,
                                      interval=0.004)
            ms = sorted(x * 1e3 for x in lat)
            p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
            lines.append(f"step latency emit -> client, {side}x{side} preview, 250 steps/s: "
                         f"median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms")
        lines += ["", f"  {'throughput':<36} {'steps/s':>9} {'previews/s':>11} "
                      f"{'previews':>11} {'preview MB/s':>9}"]
        for side in (16, 64):
            # Paced at 1000 steps/s (10x a fast real model): every preview should get through.
            _, shown, span = await _stream(client, f"paced-{side}", steps=500, side=side,
                                           interval=0.001)
            lines.append(_row(f"{side}x{side}, paced 1000 steps/s", 500, shown, span, side))
        for side, experts in ((16, None), (64, None), (64, [20, 256])):
            # Emitted as fast as possible: step records all arrive, stale previews are dropped.
            _, shown, span = await _stream(client, f"burst-{side}-{experts}", steps=steps,
                                           side=side, experts=experts)
            extra = " + experts [20,256]" if experts else ""
            lines.append(_row(f"{side}x{side}{extra}, burst", steps, shown, span, side))
        pid = client.worker_pid
        await asyncio.sleep(0.5)  # let the last job's tail settle
        before = _cpu_seconds(pid) if pid else None
        await asyncio.sleep(idle_seconds)
        after = _cpu_seconds(pid) if pid else None
        if before is None or after is None:
            lines.append("\nidle worker CPU: n/a (needs /proc)")
        else:
            share = 100 * (after - before) / idle_seconds
            lines.append(f"\nidle worker CPU over {idle_seconds:g} s (model loaded, torch "
                         f"imported): {share:.2f} % of one core")
        return lines
    finally:
        await client.shutdown()


def run_worker_bench(steps: int = 2000, idle_seconds: float = 3.0) -> str:
    """The worker transport benchmark as a printable table (spawns and stops a worker)."""
    return "\n".join(asyncio.run(_bench(steps, idle_seconds)))


if __name__ == "__main__":
    print(run_worker_bench())
