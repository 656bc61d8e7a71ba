"""Training options that change what a saved demo folder holds: the tokenizer's text rewrites
and the text batches' mask schedule (app/demo/train.py)."""

import json

from tokenizers import Tokenizer

from app.demo.train import train

BG_EDIT = "change the background to red"


def _train(out, **options):
    return train(out, steps=1, batch_size=1, seed=0, lr=1e-3, threads=1, checkpoint_every=0,
                 task_mix={"think": 1.0}, image_layout="canvas", **options)


def test_a_fresh_tokenizer_gets_the_rewrites_unless_told_not_to(tmp_path):
    summary = _train(tmp_path / "with", mask_schedule="cosine")
    tok = Tokenizer.from_file(str(tmp_path / "with" / "tokenizer.json"))
    assert tok.encode(BG_EDIT).tokens[-1] == "red background"
    assert summary["text_rewrites"] is True
    assert summary["text_mask_schedule"] == "cosine"  # follows --mask-schedule by default

    summary = _train(tmp_path / "without", text_rewrites=False, text_mask_schedule="uniform")
    plain = Tokenizer.from_file(str(tmp_path / "without" / "tokenizer.json"))
    assert plain.encode(BG_EDIT).tokens[-1] == "red"
    assert plain.get_vocab() == tok.get_vocab()  # same ids: rewrites can be added later
    logged = json.loads((tmp_path / "without" / "training_log.json").read_text())
    assert logged["text_rewrites"] is False and logged["text_mask_schedule"] == "uniform"


def test_init_keeps_or_extends_the_folders_tokenizer(tmp_path):
    _train(tmp_path / "plain", text_rewrites=False)
    _train(tmp_path / "kept", init=tmp_path / "plain", text_rewrites=False)
    kept = Tokenizer.from_file(str(tmp_path / "kept" / "tokenizer.json"))
    assert kept.encode(BG_EDIT).tokens[-1] == "red"
    _train(tmp_path / "extended", init=tmp_path / "plain")
    extended = Tokenizer.from_file(str(tmp_path / "extended" / "tokenizer.json"))
    assert extended.encode(BG_EDIT).tokens[-1] == "red background"
    assert extended.get_vocab() == kept.get_vocab()


def test_text_batch_size_sizes_only_the_image_free_batches(tmp_path, monkeypatch):
    """--text-batch-size: thinking batches (no image in or out) take their own batch size;
    a batch with a canvas keeps --batch-size."""
    from app.demo import train as train_module

    sizes = []
    real = train_module.collate

    def recording(examples, *args, **kwargs):
        sizes.append(len(examples))
        return real(examples, *args, **kwargs)

    monkeypatch.setattr(train_module, "collate", recording)
    summary = _train(tmp_path / "think", text_batch_size=3)
    assert sizes == [3] and summary["text_batch_size"] == 3
    train(tmp_path / "draw", steps=1, batch_size=1, seed=0, lr=1e-3, threads=1,
          checkpoint_every=0, task_mix={"generate": 1.0}, image_layout="canvas",
          text_batch_size=3)
    assert sizes == [3, 1]
