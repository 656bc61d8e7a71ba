"""Give a demo model folder's tokenizer the world's text rewrites (`world.text_rewrites`), in place.

Ids stay as they are, so the weights need no retraining: "change the background to orange" then
reads the "orange background" token the model learned backgrounds from. For folders trained
with `--no-text-rewrites` (session 5's weights were); training writes them by default.

    .venv/bin/python -m app.demo.retokenize MODEL_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers import Tokenizer

from app.demo import world
from app.demo.text_tokenizer import set_rewrites


def add_text_rewrites(folder: Path) -> None:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json in the model folder")
    tok = Tokenizer.from_file(str(path))
    set_rewrites(tok, world.text_rewrites())
    tok.save(str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    add_text_rewrites(parser.parse_args(argv).model)


if __name__ == "__main__":
    main()
