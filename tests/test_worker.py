"""The worker process and its client, with real spawned processes running a real tiny model.

The engine is tests/worker_fixtures.py:TinyPipeline (the Pipeline contract over a random `tiny`
LLaDA2-MoE), injected through WorkerClient(engine=...). One worker serves most tests (spawning
one costs a torch import); the tests that must kill or replace a worker make their own.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.imageio import decode_image, encode_png, read_png_text
from app.protocol import (
    Done,
    ExpertActivity,
    Failed,
    Generate,
    Started,
    Step,
    is_terminal,
)
from app.worker.buffer import EventBuffer
from app.worker.client import LoadError, WorkerClient, WorkerError
from app.worker.jobstream import JobStream
from tests.worker_fixtures import make_model_folder

ENGINE = "tests.worker_fixtures:TinyPipeline"
ROOT = Path(__file__).resolve().parent.parent


# ---- helpers ----------------------------------------------------------------------------------
def run(loop: asyncio.AbstractEventLoop, coro, timeout: float = 60.0):
    """Run a coroutine on the module's loop, failing (not hanging) after `timeout`."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def until(condition, poll: float = 0.02) -> None:
    while not condition():
        await asyncio.sleep(poll)


async def collect(stream: JobStream) -> list[tuple[float, object]]:
    return [(time.monotonic(), event) async for event in stream]


def kinds(events) -> list[str]:
    return [type(e).__name__ for _, e in events]


def alive(pid: int) -> bool:
    """Running (zombies count as gone: in a container nobody may reap an orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # not Linux
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> float | None:
    """Seconds until `pid` is gone, or None if it is still there after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not alive(pid):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries almost no data: opening it is cheap,
    decoding it would allocate width*height*3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def png_of(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return encode_png(pixels)


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def client(loop, model_dir):
    client = WorkerClient(engine=ENGINE)
    run(loop, client.start(60))
    run(loop, client.load(str(model_dir), timeout=120), timeout=130)
    yield client
    run(loop, client.shutdown())


# ---- streaming --------------------------------------------------------------------------------
def test_image_job_streams_steps_while_it_runs_then_done(loop, client):
    stream = client.submit(Generate("stream-1", "generate", "a red circle",
                                    params={"steps": 8, "step_delay": 0.05, "seed": 5}))
    events = run(loop, collect(stream))
    assert kinds(events)[0] == "Started" and kinds(events)[-1] == "Done"
    steps = [(t, e) for t, e in events if isinstance(e, Step)]
    assert [e.index for _, e in steps] == list(range(8))
    assert all(e.total == 8 and e.job_id == "stream-1" for _, e in steps)
    # Arrival times spread over the run: streamed, not delivered in a burst at the end.
    assert steps[-1][0] - steps[0][0] > 0.25
    assert events[-1][0] - steps[0][0] > 0.3
    last = steps[-1][1]
    assert last.preview.shape == (8, 8, 3) and last.preview.dtype == np.uint8
    assert last.confidence.shape == (64,) and not last.masked.any()
    assert last.expert_counts is not None and last.expert_counts.ndim == 2
    assert any(isinstance(e, ExpertActivity) for _, e in events)
    done = events[-1][1]
    assert isinstance(done, Done) and done.text is None
    assert decode_image(done.image_png).shape == (32, 32, 3)
    chunks = read_png_text(done.image_png)
    assert chunks["prompt"] == "a red circle" and chunks["seed"] == "5"
    assert done.params["seed"] == 5 and done.timings["job"] > 0.3


def test_text_job_streams_partial_text(loop, client):
    stream = client.submit(Generate("text-1", "chat", "hello", params={"steps": 4}))
    events = run(loop, collect(stream))
    steps = [e for _, e in events if isinstance(e, Step)]
    assert steps and all(e.preview is None and e.text for e in steps)
    assert "▯" in steps[0].text and "▯" not in steps[-1].text
    done = events[-1][1]
    assert isinstance(done, Done) and done.image_png is None and done.text.startswith("w")


def test_slow_reader_keeps_every_step_but_only_the_newest_preview(loop, client):
    stream = client.submit(Generate("slow-reader", "generate", "x", params={"steps": 30}))
    run(loop, stream.wait())  # read nothing until the job is over
    events = run(loop, collect(stream))
    steps = [e for _, e in events if isinstance(e, Step)]
    assert [s.index for s in steps] == list(range(30))  # step records all kept
    previews = [s for s in steps if s.preview is not None]
    assert previews == [steps[-1]]  # 30 unseen previews held as one: memory stays flat
    assert sum(isinstance(e, ExpertActivity) for _, e in events) == 1  # cumulative: newest wins


# ---- cancel -----------------------------------------------------------------------------------
def test_cancel_stops_a_running_job_within_one_step(loop, client):
    async def scenario():
        stream = client.submit(Generate("cancel-1", "generate", "x",
                                        params={"steps": 40, "step_delay": 0.2}))
        seen, cancelled_at = [], None
        async for event in stream:
            seen.append(event)
            if isinstance(event, Step) and event.index == 2 and cancelled_at is None:
                assert stream.cancel()
                cancelled_at = time.monotonic()
        return seen, time.monotonic() - cancelled_at

    seen, took = run(loop, scenario())
    final = seen[-1]
    assert isinstance(final, Failed) and final.kind == "cancelled"
    assert max(e.index for e in seen if isinstance(e, Step)) <= 3
    assert took < 1.0


def test_cancel_of_a_queued_job_removes_it(loop, client):
    first = client.submit(Generate("q-first", "chat", "a", params={"steps": 8, "step_delay": 0.05}))
    second = client.submit(Generate("q-second", "chat", "b", params={"steps": 2}))
    assert client.queued() == ["q-second"]
    assert client.cancel("q-second")
    assert client.queued() == [] and second.state == "cancelled"
    events = run(loop, collect(second))
    assert [type(e) for _, e in events] == [Failed]  # never started
    assert isinstance(run(loop, first.wait()), Done)
    assert not client.cancel("q-second") and not client.cancel("q-first")  # both finished


# ---- bad inputs -------------------------------------------------------------------------------
def test_bad_model_path_fails_naming_it_and_the_worker_stays_usable(loop, client, tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(LoadError) as err:
        run(loop, client.load(missing, timeout=30))
    assert missing in str(err.value) and err.value.kind == "bad_input"
    assert client.model is not None  # a typo does not unload the working model
    assert isinstance(run(loop, client.submit(Generate("after-typo", "chat", "a")).wait()), Done)

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(LoadError) as err:
        run(loop, client.load(str(broken), timeout=30))
    assert str(broken) in str(err.value) and err.value.kind == "model"
    assert client.model is None
    failed = run(loop, client.submit(Generate("no-model", "chat", "a")).wait())
    assert isinstance(failed, Failed) and failed.kind == "model" and "load" in failed.message


def test_corrupt_and_oversized_images_fail_clearly_without_a_memory_spike(loop, client, model_dir):
    if client.model is None:
        run(loop, client.load(str(model_dir), timeout=120), timeout=130)
    pid = client.worker_pid
    before = peak_rss_mb(pid)
    good = png_of(40, 30)
    cases = {
        "garbage": ([b"this is not an image at all"], "not a readable image"),
        "truncated": ([good[: len(good) // 2]], "truncated"),
        "huge": ([png_claiming(20000, 20000)], "too large"),
        "big": ([png_claiming(5000, 5000)], "5000x5000"),
        "second": ([good, b"\x89PNG\r\n\x1a\n broken"], "image 2 of 2"),
    }
    for name, (images, phrase) in cases.items():
        final = run(loop, client.submit(Generate(f"img-{name}", "edit", "x", images=images)).wait())
        assert isinstance(final, Failed) and final.kind == "bad_input", (name, final)
        assert phrase in final.message, (name, final.message)
    bad_mask = run(loop, client.submit(
        Generate("img-mask", "inpaint", "x", images=[good], mask=b"junk")).wait())
    assert isinstance(bad_mask, Failed) and "the mask" in bad_mask.message
    assert client.worker_pid == pid and peak_rss_mb(pid) - before < 100  # 20000² RGB = 1.2 GB
    ok = run(loop, client.submit(Generate("img-ok", "edit", "x", images=[good])).wait())
    assert isinstance(ok, Done)


# ---- a hundred queued jobs --------------------------------------------------------------------
def test_hundred_jobs_with_random_reorders_and_cancels_each_end_exactly_once(loop, client):
    rng = random.Random(7)
    ids = [f"many-{i}" for i in range(100)]

    async def scenario():
        # Tiny jobs, but each at least ~10 ms, so a good part of the queue is still waiting when
        # the random edits stop and the order check below has something to check.
        params = {"steps": 2, "step_delay": 0.005}
        streams = {j: client.submit(Generate(j, "chat", j, params=params)) for j in ids}
        readers = {j: asyncio.ensure_future(collect(s)) for j, s in streams.items()}
        asked_to_cancel: set[str] = set()
        for _ in range(150):
            queued = client.queued()
            op = rng.random()
            if op < 0.35 and queued:
                client.reorder(rng.sample(queued, len(queued)))
            elif op < 0.65 and queued:
                client.move(rng.choice(queued), rng.randrange(len(queued) + 1))
            elif op < 0.85:
                victim = rng.choice(ids)
                if client.cancel(victim):
                    asked_to_cancel.add(victim)
            elif queued and client.remove(rng.choice(queued)):
                pass
            await asyncio.sleep(rng.random() * 0.004)
        snapshot = client.queued()  # no changes after this: these must run in this order
        results = {j: await r for j, r in readers.items()}
        return streams, results, asked_to_cancel, snapshot

    streams, results, asked, snapshot = run(loop, scenario(), timeout=120)
    for job_id, events in results.items():
        terminal = [e for _, e in events if is_terminal(e)]
        assert len(terminal) == 1 and terminal[0] is events[-1][1], job_id
        assert streams[job_id].duplicate_terminals == 0
        if isinstance(terminal[0], Failed):
            assert terminal[0].kind == "cancelled", terminal[0]
    cancelled = {j for j, ev in results.items() if isinstance(ev[-1][1], Failed)}
    assert cancelled and len(cancelled) < 100
    assert not any(isinstance(e, Started) for j in cancelled - asked for _, e in results[j])
    assert len(snapshot) >= 5
    first_step_at = {j: next(e.sent_at for _, e in results[j] if isinstance(e, Step))
                     for j in snapshot}
    assert sorted(snapshot, key=first_step_at.get) == snapshot
    assert client.queued() == [] and client.running() is None


# ---- crashes, timeouts, lifetime --------------------------------------------------------------
def test_killed_worker_fails_its_job_restarts_and_runs_the_queue(loop, client, model_dir):
    if client.model is None:
        run(loop, client.load(str(model_dir), timeout=120), timeout=130)
    old_pid, restarts = client.worker_pid, client.stats["restarts"]

    async def scenario():
        victim = client.submit(Generate("crash-victim", "generate", "x",
                                        params={"steps": 40, "step_delay": 0.1}))
        queued = client.submit(Generate("crash-next", "generate", "y", params={"steps": 4}))
        async for event in victim:
            if isinstance(event, Step):
                os.kill(old_pid, signal.SIGKILL)
                break
        return await victim.wait(), await queued.wait()

    crashed, after = run(loop, scenario(), timeout=120)
    assert isinstance(crashed, Failed) and crashed.kind == "crashed"
    assert "SIGKILL" in crashed.message and "restarted" in crashed.message
    assert isinstance(after, Done)  # the queue went on, on a new worker with the model reloaded
    assert client.worker_pid != old_pid and not alive(old_pid)
    assert client.stats["restarts"] == restarts + 1 and client.model is not None
    assert isinstance(run(loop, client.submit(Generate("crash-later", "chat", "z")).wait()), Done)


def test_start_and_load_time_out_instead_of_hanging(loop, tmp_path):
    silent = WorkerClient(target="tests.worker_fixtures:silent_worker_main", prewarm=False)
    began = time.monotonic()
    with pytest.raises(WorkerError, match="did not start within"):
        run(loop, silent.start(timeout=1.0))
    assert time.monotonic() - began < 5

    slow = WorkerClient(engine="tests.worker_fixtures:SlowLoadPipeline", prewarm=False)
    run(loop, slow.start(30))
    pid = slow.worker_pid
    began = time.monotonic()
    with pytest.raises(WorkerError, match="took longer than"):
        run(loop, slow.load(str(tmp_path), timeout=1.5))
    assert time.monotonic() - began < 5
    assert wait_gone(pid, 5) is not None
    assert slow.state == "restarting"
    run(loop, until(lambda: slow.state == "ready"), timeout=30)  # restarted, without the model
    assert slow.model is None and slow.worker_pid not in (None, pid)
    run(loop, slow.shutdown())


def test_client_refuses_a_worker_speaking_another_protocol_version(loop):
    stale = WorkerClient(target="tests.worker_fixtures:stale_worker_main", prewarm=False)
    with pytest.raises(WorkerError, match="protocol version 0"):
        run(loop, stale.start(30))


def test_shutdown_ends_running_and_queued_jobs_and_the_process(loop, model_dir):
    async def scenario():
        client = WorkerClient(engine=ENGINE, prewarm=False)
        await client.start(30)
        pid = client.worker_pid
        running = client.submit(Generate("sd-1", "chat", "a"))
        queued = client.submit(Generate("sd-2", "chat", "b"))
        await client.shutdown(timeout=5)
        return pid, await running.wait(), await queued.wait(), client

    pid, running, queued, client = run(loop, scenario())
    assert isinstance(running, Failed) and isinstance(queued, Failed)  # no model: "model" kind
    assert queued.kind == "cancelled"
    assert wait_gone(pid, 5) is not None and client.state == "closed"
    after = client.submit(Generate("sd-3", "chat", "c"))
    assert isinstance(after.final, Failed)


PARENT_SCRIPT = """
import asyncio, sys
from app.protocol import Generate, Step
from app.worker.client import WorkerClient

async def main():
    client = WorkerClient(engine=sys.argv[1])
    await client.start(60)
    await client.load(sys.argv[2], timeout=120)
    stream = client.submit(Generate("long", "generate", "x", params={"steps": 500, "step_delay": 0.05}))
    async for event in stream:
        if isinstance(event, Step):
            print(client.worker_pid, flush=True)  # the worker is mid-job now
            break
    await asyncio.sleep(120)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_worker_exits_when_the_gui_process_is_killed(tmp_path, model_dir):
    script = tmp_path / "gui.py"
    script.write_text(PARENT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    gui = subprocess.Popen([sys.executable, str(script), ENGINE, str(model_dir)], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, text=True)
    worker_pid = None
    try:
        line = gui.stdout.readline()  # blocks until the worker is mid-job (or the script dies)
        assert line.strip().isdigit(), f"intermediate process said {line!r}"
        worker_pid = int(line)
        assert alive(worker_pid)
        gui.send_signal(signal.SIGKILL)
        gui.wait(5)
        took = wait_gone(worker_pid, 5.0)
        assert took is not None, "the worker outlived its GUI process"
    finally:
        gui.kill()
        if worker_pid is not None and alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


# ---- event plumbing without processes ---------------------------------------------------------
def _step(job: str, index: int, preview: bool = True) -> Step:
    empty = np.zeros(0, np.int64)
    return Step(job, index, 10, empty, empty, np.zeros(4, np.float32), empty,
                preview=np.full((2, 2, 3), index, np.uint8) if preview else None)


def test_event_buffer_drops_only_older_unseen_previews_per_job():
    buffer = EventBuffer()
    for i in range(5):
        buffer.push(_step("a", i))
        buffer.push(_step("b", i))
        buffer.push(ExpertActivity("a", np.full((1, 2), i)))
    events = buffer.drain()
    steps_a = [e for e in events if isinstance(e, Step) and e.job_id == "a"]
    assert [s.index for s in steps_a] == [0, 1, 2, 3, 4]
    assert [s.preview is not None for s in steps_a] == [False] * 4 + [True]
    activity = [e for e in events if isinstance(e, ExpertActivity)]
    assert len(activity) == 1 and activity[0].counts[0, 0] == 4
    assert buffer.dropped_previews == 8

    buffer.push(_step("a", 0))
    assert buffer.pop().preview is not None  # delivered: never touched again
    buffer.push(_step("a", 1))
    assert buffer.pop().preview is not None


def test_event_buffer_keeps_each_drawings_last_preview_across_self_check_redraws():
    buffer = EventBuffer()
    for attempt in (0, 1):
        for i in range(3):
            step = _step("a", i)
            step.attempt = attempt
            buffer.push(step)
    kept = [(s.attempt, s.index) for s in buffer.drain() if s.preview is not None]
    assert kept == [(0, 2), (1, 2)] and buffer.dropped_previews == 4


def test_job_stream_ends_exactly_once_and_iterates_after_the_fact():
    async def scenario():
        stream = JobStream(Generate("j", "chat", "x"), cancel=lambda job_id: False)
        stream._push(Started("j"))
        stream._push(_step("j", 0, preview=False))
        stream._push(Done("j", text="ok"))
        stream._push(Failed("j", "internal", "late"))
        return stream, [e async for e in stream], await stream.wait()

    stream, events, final = asyncio.run(scenario())
    assert [type(e) for e in events] == [Started, Step, Done]
    assert final.text == "ok" and stream.state == "done" and stream.duplicate_terminals == 1


def test_png_round_trip_with_text_chunks():
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    data = encode_png(pixels, {"prompt": "un chat bleu — 青い猫", "seed": "42"})
    assert np.array_equal(decode_image(data), pixels)
    assert read_png_text(data) == {"prompt": "un chat bleu — 青い猫", "seed": "42"}
    assert Image.open(io.BytesIO(data)).format == "PNG"
