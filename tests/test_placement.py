"""Expert placement: results never change with the plan, the planner keeps to its budget, heat and
eviction bookkeeping, int8 CPU experts. The accelerator is a parameter: on CPU the slot pool,
copies, copy-vs-compute decisions and the CPU thread pool all run on the CPU device; with a GPU the
same tests also run on CUDA."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.model import KVCache
from app.engine.placement import (
    GIB,
    MIB,
    ExpertHeat,
    HeatStore,
    PlacementError,
    PlacementOptions,
    apply_placement,
    config_hash,
    describe_for_folder,
    model_sizes,
    parse_budget,
    plan_for_config,
    remove_placement,
)
from app.engine.placement_exec import CostModel, LayerPlacement, quantize_int8
from app.engine.presets import config_for, random_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
COPY_WINS = CostModel(copy_bytes_per_s=1e18, cpu_fixed_s=1.0, cpu_per_row_s=1.0)
CPU_WINS = CostModel(copy_bytes_per_s=1.0, cpu_fixed_s=0.0, cpu_per_row_s=0.0)


@pytest.fixture(scope="module")
def config():
    return config_for("tiny")


@pytest.fixture(scope="module")
def model(config):
    return random_model(config, seed=1, std=0.3)


@pytest.fixture(scope="module")
def inputs(config):
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(0, config.vocab_size, shape, generator=gen) for shape in
            [(2, 24), (1, 5), (1, 1), (2, 3), (1, 1), (1, 2), (1, 1), (2, 1)]]


@pytest.fixture(scope="module")
def reference(model, inputs):
    with torch.no_grad():
        return [model(ids) for ids in inputs]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The CI box has 2 shared cores: one intra-op thread keeps these tests fast and steady."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextmanager
def placed(model, plan_or_options, device, **options):
    if isinstance(plan_or_options, PlacementOptions) and plan_or_options.cpu_threads is None:
        plan_or_options.cpu_threads = 1
    plain = isinstance(plan_or_options, PlacementOptions)
    opts = None if plain else PlacementOptions(**{"cpu_threads": 1, **options})
    runtime = apply_placement(model, plan_or_options, device, options=opts)
    try:
        yield runtime
    finally:
        remove_placement(model)


def _plan(config, resident, **kw):
    plan = plan_for_config(config, None, torch.float32, device="cpu", workspace_bytes=0, **kw)
    plan.resident = [sorted(r) for r in resident]
    return plan


def _random_split(config, seed):
    gen = torch.Generator().manual_seed(seed)
    e = config.num_experts
    return [torch.randperm(e, generator=gen)[: int(torch.randint(1, e, (1,), generator=gen))].tolist()
            for _ in range(config.num_hidden_layers - config.first_k_dense_replace)]


PLANS = {
    "all resident": lambda c: ([list(range(c.num_experts))] * 2, "auto", None),
    "none resident": lambda c: ([[], []], "auto", None),
    "random split": lambda c: (_random_split(c, 3), "auto", None),  # calibrated cost model
    "tiny pool, copy always": lambda c: ([[0], [5]], "copy", COPY_WINS),
    "split, CPU wins": lambda c: (_random_split(c, 4), "auto", CPU_WINS),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(PLANS))
@torch.no_grad()
def test_placement_never_changes_logits(model, config, inputs, reference, device, name):
    resident, policy, cost = PLANS[name](config)
    with placed(model, _plan(config, resident), device, policy=policy, cost=cost) as rt:
        assert model.lm_head.weight.device.type == device
        assert model.moe_blocks()[0].experts.gate_proj.device.type == "cpu"  # masters
        for ids, ref in zip(inputs, reference, strict=True):
            torch.testing.assert_close(model(ids.to(device)).cpu(), ref, rtol=1e-4, atol=1e-4)
        stats = rt.stats()
        json.dumps(stats)  # plain data
        if name == "none resident":
            assert stats["cpu_flop_share"] == 1.0 and stats["slot_hit_rate"] == 0.0
        if name == "all resident":
            assert stats["slot_hit_rate"] == 1.0 and stats["cpu_experts"] == 0
        if name == "tiny pool, copy always":
            assert stats["evictions"] >= len(inputs) and stats["bytes_copied"] > 0
        if name == "split, CPU wins":
            assert stats["copies"] == 0 and stats["cpu_experts"] > 0
    for block in model.moe_blocks():
        assert block.executor is None
    torch.testing.assert_close(model(inputs[0]), reference[0], rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_evicts_every_call_and_stays_exact(model, config, device):
    """Two slots, routing alternating between disjoint expert pairs: both slots turn over on
    every call, and the layer's output equals the plain grouped computation each time."""
    masters = model.moe_blocks()[0].experts
    gen = torch.Generator().manual_seed(0)
    with placed(model, _plan(config, [[0, 1], [0, 1]]), device, policy="copy", cost=COPY_WINS) as rt:
        layer = rt.layers[0]
        for call, pair in enumerate([(2, 3), (0, 1), (4, 5), (6, 7), (2, 3)]):
            counts = torch.zeros(config.num_experts, dtype=torch.long)
            counts[list(pair)] = torch.tensor([3, 2])
            x = torch.randn(5, config.hidden_size, generator=gen)
            out = layer(masters, x.to(device), counts.to(device))
            torch.testing.assert_close(out.cpu(), masters.compute_sorted(x, counts), rtol=1e-5, atol=1e-5)
            assert sorted(layer.slot_expert) == list(pair)
            assert rt.counters.evictions == 2 * (call + 1) and rt.counters.copies == 2 * (call + 1)
        assert rt.stats()["bytes_copied"] == 10 * layer.expert_bytes


def _call(layer, masters, config, device, counts_by_expert: dict[int, int]):
    counts = torch.zeros(config.num_experts, dtype=torch.long)
    for e, n in counts_by_expert.items():
        counts[e] = n
    x = torch.randn(int(counts.sum()), config.hidden_size)
    out = layer(masters, x.to(device), counts.to(device))
    torch.testing.assert_close(out.cpu(), masters.compute_sorted(x, counts), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_eviction_takes_the_coldest_and_never_a_hotter_expert(model, config):
    masters = model.moe_blocks()[0].experts
    with placed(model, _plan(config, [[0, 1], []]), "cpu", policy="copy", cost=COPY_WINS) as rt:
        layer = rt.layers[0]
        _call(layer, masters, config, "cpu", {0: 5, 1: 1})  # both hits; 1 is colder
        assert rt.counters.hits == 2 and rt.counters.copies == 0
        _call(layer, masters, config, "cpu", {2: 1})
        assert layer.slot_expert == [0, 2] and layer.slot_of[1] == -1 and layer.slot_of[2] == 1
    with placed(model, _plan(config, [[0, 1], []]), "cpu", policy="auto", cost=COPY_WINS) as rt:
        layer = rt.layers[0]
        _call(layer, masters, config, "cpu", {0: 40, 1: 40})
        _call(layer, masters, config, "cpu", {2: 1})  # copying is cheap, but both victims are hotter
        assert rt.counters.copies == 0 and rt.counters.cpu_experts == 1
        assert layer.slot_expert == [0, 1]


@torch.no_grad()
def test_cpu_path_runs_in_the_thread_pool(model, config, inputs, reference, monkeypatch):
    names = []
    original = LayerPlacement._cpu_work

    def spy(self, x, y, items):
        names.append(threading.current_thread().name)
        return original(self, x, y, items)

    monkeypatch.setattr(LayerPlacement, "_cpu_work", spy)
    with placed(model, _plan(config, [[], []]), "cpu", policy="cpu", cost=CPU_WINS, cpu_threads=2):
        torch.testing.assert_close(model(inputs[0]), reference[0], rtol=1e-4, atol=1e-4)
    assert names and all(n.startswith("unmask-experts") for n in names)
    assert len(names) >= 2 * 2  # two MoE layers, work split over two workers


@torch.no_grad()
def test_reuse_credit_follows_the_block(model, config):
    """A KV-cache write marks the first step of a block; the copy credit counts down from there."""
    with placed(model, _plan(config, [[0], [0]]), "cpu", cost=CPU_WINS, steps_per_block=4) as rt:
        cache = KVCache.allocate(config, 1, 16, torch.float32, "cpu")
        ids = torch.randint(0, config.vocab_size, (1, 4))
        seen = []
        for step in range(6):
            write = 4 if step in (0, 3) else 0
            model(ids, cache=cache, cache_write=write, position_ids=torch.arange(4) + cache.length)
            seen.append(rt.uses_left())
        assert seen == [4, 3, 2, 4, 3, 2]
        assert rt.stats()["steps"] == 6


# ---- planner ---------------------------------------------------------------------------------


def test_parse_budget():
    assert parse_budget("12GiB") == 12 * GIB
    assert parse_budget("12 GB") == 12 * 10**9
    assert parse_budget("512MiB") == 512 * MIB
    assert parse_budget("12") == 12 * GIB
    assert parse_budget(1234) == 1234
    assert parse_budget("auto") == "auto" and parse_budget(None) is None
    with pytest.raises(PlacementError):
        parse_budget("lots")


@settings(max_examples=40, deadline=None)
@given(extra=st.integers(min_value=0, max_value=200_000), workspace=st.integers(0, 50_000))
def test_planner_respects_the_budget(extra, workspace):
    config = config_for("tiny")
    low = plan_for_config(config, 10**12, torch.float32, workspace_bytes=workspace, kv_tokens=64)
    fixed = low.dense_bytes + low.kv_bytes + workspace
    budget = fixed + extra
    plan = plan_for_config(config, budget, torch.float32, workspace_bytes=workspace, kv_tokens=64)
    assert plan.gpu_bytes <= budget
    assert plan.resident_total == plan.experts_total or plan.gpu_bytes + plan.expert_bytes > budget
    per_layer = [len(r) for r in plan.resident]
    assert max(per_layer) - min(per_layer) <= 1  # uniform heat: an even share per layer
    with pytest.raises(PlacementError, match="below what must stay"):
        plan_for_config(config, fixed - 1, torch.float32, workspace_bytes=workspace, kv_tokens=64)


def test_plan_follows_heat_and_cpu_count(config):
    heat = ExpertHeat.uniform(2, config.num_experts)
    heat.counts[0, 5] = 100
    heat.counts[1, 6] = 50
    heat.counts[1, 2] = 10
    sizes = model_sizes(config, torch.float32)
    plan = plan_for_config(config, sizes.dense_bytes + 3 * sizes.expert_bytes, torch.float32,
                           heat=heat, workspace_bytes=0, kv_tokens=0)
    assert plan.resident == [[5], [2, 6]] and plan.heat_measured
    plan = plan_for_config(config, "1GiB", torch.float32, experts_on_cpu=5)
    assert plan.resident_total == plan.experts_total - 5


def test_plan_of_the_16b_model_needs_no_weights():
    plan = plan_for_config(config_for("mini"), "12GiB", torch.bfloat16)
    total = plan.dense_bytes + plan.experts_total * plan.expert_bytes
    assert abs(total / 2 - 16.3e9) < 0.3e9  # 16.3B params in bf16
    assert plan.gpu_bytes <= 12 * GIB and 0 < plan.resident_total < plan.experts_total
    summary = plan.summary()
    json.dumps(summary)
    assert summary["budget_bytes"] == 12 * GIB and summary["int8_cpu"] is False
    assert len(summary["resident_per_layer"]) == 19
    text = plan.describe()
    assert "12.00 GiB" in text and "slots per MoE layer" in text


def test_describe_for_folder_reads_config_and_heat(tmp_path):
    config = config_for("mini")
    folder = tmp_path / "LLaDA2.0-Uni"
    folder.mkdir()
    config.save(folder)
    store = HeatStore(tmp_path / "heat")
    text = describe_for_folder(folder, "12GiB", store=store)
    assert "uniform" in text and "12.00 GiB" in text
    heat = ExpertHeat.uniform(19, 256)
    heat.counts[:, :8] = 1
    store.save("LLaDA2.0-Uni", config, heat)
    assert "measured heat" in describe_for_folder(folder, "12GiB", store=store)


# ---- heat --------------------------------------------------------------------------------------


def test_heat_store_round_trip(tmp_path, config):
    store = HeatStore(tmp_path)
    path = store.path("My Model/v2", config)
    assert path.parent == tmp_path and config_hash(config) in path.name and "My_Model_v2" in path.name
    assert store.load("My Model/v2", config) is None
    heat = ExpertHeat.uniform(2, config.num_experts)
    heat.update(1, torch.arange(config.num_experts))
    store.save("My Model/v2", config, heat)
    loaded = store.load("My Model/v2", config)
    assert torch.equal(loaded.counts, heat.counts) and loaded.measured
    other = config_for("tiny", num_experts=16, n_group=4)
    assert store.path("My Model/v2", other) != path  # keyed by the config hash too
    path.write_text("{not json")
    assert store.load("My Model/v2", config) is None


@torch.no_grad()
def test_runtime_measures_and_persists_heat(tmp_path, model, config, inputs):
    store = HeatStore(tmp_path)
    with placed(model, PlacementOptions(budget=None, heat_key="tiny-model", heat_store=store),
                "cpu") as rt:
        assert not rt.plan.heat_measured
        for ids in inputs:
            model(ids)
        routed = sum(ids.numel() for ids in inputs) * config.num_experts_per_tok
        assert rt.heat.counts.sum(1).tolist() == [routed, routed]
        heat = rt.heat.counts.clone()
    saved = store.load("tiny-model", config)
    assert torch.equal(saved.counts, heat)
    sizes = model_sizes(config, torch.float32)
    options = PlacementOptions(budget=sizes.dense_bytes + 2 * sizes.expert_bytes, heat_key="tiny-model",
                               heat_store=store, workspace_bytes=0, kv_tokens=0, cost=CPU_WINS)
    with placed(model, options, "cpu") as rt:
        assert rt.plan.heat_measured
        hottest = max(((layer, e) for layer in range(2) for e in range(config.num_experts)),
                      key=lambda le: (heat[le].item(), -le[1], -le[0]))
        assert hottest[1] in rt.plan.resident[hottest[0]]


# ---- int8 --------------------------------------------------------------------------------------


def test_quantize_int8_error_is_within_half_a_step():
    w = torch.randn(16, 32) * torch.linspace(0.1, 3, 16)[:, None]
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (16,)
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-6).all()


@torch.no_grad()
def test_int8_cpu_experts_error_is_small_and_reported(model, config, inputs, reference):
    with placed(model, _plan(config, [[], []], int8_cpu=True), "cpu", int8_cpu=True,
                cost=CPU_WINS) as rt:
        report = rt.stats()["int8_logit_error"]
        assert report["tokens"] == 64 and report["rel_rms"] < 0.03 and report["top1_agreement"] > 0.9
        assert rt.stats()["steps"] == 0  # the measurement leaves the stats alone
        got = model(inputs[0])
        rel = (got - reference[0]).pow(2).mean().sqrt() / reference[0].pow(2).mean().sqrt()
        assert 0 < rel < 0.03
        assert rt.plan.summary()["int8_cpu"] is True


def test_apply_twice_and_remove_without_placement_fail(model):
    with placed(model, PlacementOptions(budget=None), "cpu"), pytest.raises(PlacementError):
        apply_placement(model, PlacementOptions(budget=None), "cpu")
    with pytest.raises(PlacementError):
        remove_placement(model)


@torch.no_grad()
def test_failed_apply_leaves_the_model_as_it_was(model, inputs, reference, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(LayerPlacement, "__init__", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        apply_placement(model, PlacementOptions(budget=None), "cpu")
    assert getattr(model, "_placement_runtime", None) is None
    assert all(block.executor is None for block in model.moe_blocks())
    torch.testing.assert_close(model(inputs[0]), reference[0], rtol=0, atol=0)


def test_cpu_bench_runs_and_says_so():
    from app.engine.placement_bench import run_placement_bench

    table = run_placement_bench("tiny", "cpu", image_tokens=32, threads=1)
    assert "CPU-SCALE RUN" in table
    for variant in ("all on device", "expert placement", "accelerate dispatch_model"):
        assert variant in table


def test_bench_can_time_accelerate_on_the_first_forwards_and_scales_to_the_loop():
    from app.engine.bench import image_loop
    from app.engine.placement_bench import run_placement_bench

    model = random_model(config_for("tiny"), seed=0)
    assert image_loop(model, prompt_len=64, image_tokens=64, use_cache=True, cfg=True) == 16
    assert image_loop(model, prompt_len=64, image_tokens=64, use_cache=True, cfg=True, max_forwards=3) == 3
    table = run_placement_bench("tiny", "cpu", image_tokens=64, threads=1, accelerate_forwards=3)
    row = next(line for line in table.splitlines() if line.startswith("accelerate dispatch_model"))
    assert row.split()[3] == "16"  # forwards column: the whole loop's, 8 steps x 2 blocks
    assert "timed over the loop's first 3 forwards, loop time = ms/forward x 16" in row


def test_bench_counts_must_be_at_least_one(capsys):
    from app.cli import build_parser
    from app.engine.placement_bench import run_placement_bench

    with pytest.raises(ValueError, match="at least 1, not 0"):
        run_placement_bench("tiny", "cpu", image_tokens=64, accelerate_forwards=0)
    for bad, says in (("0", "must be at least 1, not 0"), ("-2", "at least 1, not -2"),
                      ("many", "expected a whole number, not 'many'")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "placement", "--accelerate-forwards", bad])
        assert says in capsys.readouterr().err
    args = build_parser().parse_args(["bench", "placement", "--accelerate-forwards", "8"])
    assert args.accelerate_forwards == 8
    for bench in ("engine", "placement"):  # a median over no repeats is no timing
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", bench, "--repeats", "0"])
        assert "must be at least 1, not 0" in capsys.readouterr().err


def test_accelerate_baseline_streams_the_experts_it_offloads(tmp_path):
    """The bench's accelerate row must compute the same model: offloaded MoE layers load their
    experts (which run outside any submodule's forward) with the preload the bench passes."""
    from accelerate import dispatch_model

    from app.engine.placement_bench import ACCELERATE_PRELOAD

    config = config_for("tiny")
    ids = torch.randint(0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    reference = random_model(config, seed=0, std=0.3)(ids)
    device_map = {"model.word_embeddings": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                  "model.layers.2": "disk", "model.norm": "cpu", "lm_head": "cpu"}
    for preload, same in ((None, False), (ACCELERATE_PRELOAD, True)):
        model = random_model(config, seed=0, std=0.3)
        dispatch_model(model, device_map, main_device="cpu", offload_dir=str(tmp_path / str(same)),
                       preload_module_classes=preload)
        assert torch.equal(model(ids), reference) is same
