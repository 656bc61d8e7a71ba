"""Model folders: both expert layouts, shards, strict loading and clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.engine import CheckpointError, ConfigError, load_model, save_model


@pytest.fixture
def saved(tmp_path, tiny_model):
    folder = tmp_path / "m"
    save_model(tiny_model, folder)
    return folder


def test_per_expert_and_fused_checkpoints_give_identical_logits(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "fused", layout="fused")
    save_model(tiny_model, tmp_path / "split", layout="per_expert", max_shard_bytes=20_000)
    assert (tmp_path / "split" / "model.safetensors.index.json").is_file()
    assert any(".experts.3.up_proj.weight" in k for k in load_file(
        next((tmp_path / "split").glob("model-00001-*.safetensors"))).keys() | set(
        json.loads((tmp_path / "split" / "model.safetensors.index.json").read_text())["weight_map"]))
    ids = torch.randint(0, 90, (1, 9))
    a = load_model(tmp_path / "fused")(ids)
    b = load_model(tmp_path / "split")(ids)
    assert torch.equal(a, b)
    assert torch.equal(a, tiny_model(ids))


def test_uni_style_language_model_prefix_loads(tmp_path, tiny_model, saved):
    tensors = load_file(saved / "model.safetensors")
    renamed = {("model.lm_head.weight" if k == "lm_head.weight"
                else k.replace("model.", "model.language_model.", 1)): v
               for k, v in tensors.items()}
    (tmp_path / "uni").mkdir()
    save_file(renamed, tmp_path / "uni" / "model.safetensors")
    (tmp_path / "uni" / "config.json").write_text((saved / "config.json").read_text())
    ids = torch.randint(0, 90, (1, 6))
    assert torch.equal(load_model(tmp_path / "uni")(ids), tiny_model(ids))


def test_bf16_load(saved):
    model = load_model(saved, dtype=torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.moe_blocks()[0].gate.weight.dtype == torch.float32  # router stays fp32


def test_missing_tensor_is_named(saved):
    tensors = load_file(saved / "model.safetensors")
    del tensors["model.layers.2.attention.dense.weight"]
    save_file(tensors, saved / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensors: model\.layers\.2\.attention\.dense"):
        load_model(saved)


def test_missing_expert_is_named(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "s", layout="per_expert")
    tensors = load_file(tmp_path / "s" / "model.safetensors")
    del tensors["model.layers.1.mlp.experts.5.down_proj.weight"]
    save_file(tensors, tmp_path / "s" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"experts\.5\.down_proj\.weight"):
        load_model(tmp_path / "s")


def test_wrong_shape_and_unexpected_are_named(saved):
    tensors = load_file(saved / "model.safetensors")
    tensors["model.norm.weight"] = torch.ones(7)
    tensors["model.extra.weight"] = torch.ones(2)
    save_file(tensors, saved / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_model(saved)
    text = str(err.value)
    assert "model.norm.weight" in text and "[7]" in text and "model.extra.weight" in text
    assert "model.safetensors" in text


def test_truncated_file_is_named(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(saved)


def test_pickle_file_is_refused(saved):
    (saved / "model.safetensors").unlink()
    (saved / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*pickle.*[Cc]onvert"):
        load_model(saved)


def test_missing_config_field_is_named(saved):
    cfg = json.loads((saved / "config.json").read_text())
    del cfg["num_key_value_heads"]
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config\.json.*num_key_value_heads"):
        load_model(saved)


def test_unknown_config_fields_are_kept(saved):
    from app.engine.config import LLaDA2MoeConfig

    cfg = json.loads((saved / "config.json").read_text())
    cfg["codec"] = "patch_vq"
    (saved / "config.json").write_text(json.dumps(cfg))
    assert LLaDA2MoeConfig.from_file(saved).extra["codec"] == "patch_vq"


def test_load_reports_byte_progress(saved):
    seen = []
    load_model(saved, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
