"""The `unmask` command. Sub-commands import their heavy modules lazily so `--help` is instant."""

from __future__ import annotations

import argparse
import sys

from app.cli_jobs import add_job_commands, cmd_batch, cmd_eval, cmd_job


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (ratios measured in one run)")
    which = bench.add_subparsers(dest="bench", required=True)
    engine = which.add_parser("engine", help="our decoding loop vs the reference loop")
    engine.add_argument("--scale", choices=["tiny", "small", "mini"], default="small")
    engine.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    engine.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    engine.add_argument("--image-tokens", type=int, default=1024)
    engine.add_argument("--repeats", type=int, default=1)
    engine.add_argument("--skip-reference", action="store_true")


def cmd_bench(args) -> int:
    import torch

    from app.engine.bench import format_table, run_engine_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if device == "cpu":
        torch.set_num_threads(torch.get_num_threads())
    results = run_engine_bench(args.scale, device, getattr(torch, dtype_name), args.image_tokens,
                               args.repeats, args.skip_reference)
    header = (f"bench engine: scale {args.scale}, {device} ({_device_name(device)}), {dtype_name}, "
              f"{args.image_tokens} image tokens, prompt 64, block 32, 8 steps/block, CFG; "
              f"median of {args.repeats}")
    print(format_table(results, header))
    return 0


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{torch.get_num_threads()} threads"


def cmd_info(args) -> int:
    from app.engine.config import LLaDA2MoeConfig

    config = LLaDA2MoeConfig.from_file(args.model)
    for key, value in config.to_dict().items():
        print(f"{key:28} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmask", description="Unmask Studio")
    sub = parser.add_subparsers(dest="command")
    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model")
    _add_bench(sub)
    add_job_commands(sub)
    return parser


COMMANDS = {
    "bench": cmd_bench, "info": cmd_info, "generate": cmd_job, "ask": cmd_job, "edit": cmd_job,
    "inpaint": cmd_job, "chat": cmd_job, "batch": cmd_batch, "eval": cmd_eval,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"unmask: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
