"""The `unmask` command. Sub-commands import their heavy modules lazily so `--help` is instant."""

from __future__ import annotations

import argparse
import multiprocessing
import sys

from app.cli_jobs import add_job_commands, cmd_batch, cmd_eval, cmd_job


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (ratios measured in one run)")
    which = bench.add_subparsers(dest="bench", required=True)
    engine = which.add_parser("engine", help="our decoding loop vs the reference loop")
    engine.add_argument("--scale", choices=["tiny", "small", "mini"], default="small")
    engine.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    engine.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    engine.add_argument("--image-tokens", type=int, default=1024)
    engine.add_argument("--repeats", type=_at_least_one, default=1)
    engine.add_argument("--skip-reference", action="store_true")
    which.add_parser("worker", help="step-event latency and throughput of the worker process")
    placement = which.add_parser("placement", help="experts on GPU/CPU vs all-on-GPU vs accelerate")
    placement.add_argument("--scale", choices=["tiny", "small", "mini"], default="small")
    placement.add_argument("--budget", type=float, default=None, help="GPU budget in GiB")
    placement.add_argument("--device", default=None)
    placement.add_argument("--image-tokens", type=int, default=1024)
    placement.add_argument("--repeats", type=_at_least_one, default=1)
    placement.add_argument("--int8", action="store_true", help="int8 weight-only CPU experts")
    placement.add_argument("--threads", type=int, default=None)
    placement.add_argument("--accelerate-forwards", type=_at_least_one, default=None, metavar="N",
                           help="time accelerate over the loop's first N forwards and scale to the "
                                "whole loop (its full loop takes many minutes on a GPU)")


def cmd_bench(args) -> int:
    if args.bench == "worker":
        from app.worker.bench import run_worker_bench

        print(run_worker_bench())
        return 0
    if args.bench == "placement":
        return cmd_bench_placement(args)
    import torch

    from app.engine.bench import format_table, run_engine_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if device == "cpu":
        torch.set_num_threads(torch.get_num_threads())
    results = run_engine_bench(args.scale, device, getattr(torch, dtype_name), args.image_tokens,
                               args.repeats, args.skip_reference)
    from app.engine.moe import expert_kernel

    header = (f"bench engine: scale {args.scale}, {device} ({_device_name(device)}), {dtype_name}, "
              f"{args.image_tokens} image tokens, prompt 64, block 32, 8 steps/block, CFG; "
              f"median of {args.repeats}; routed experts: {expert_kernel(device)}")
    print(format_table(results, header))
    return 0


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{torch.get_num_threads()} threads"


def cmd_bench_placement(args) -> int:
    from app.engine.placement_bench import run_placement_bench

    print(run_placement_bench(args.scale, args.device, args.budget, image_tokens=args.image_tokens,
                              repeats=args.repeats, int8=args.int8, threads=args.threads,
                              accelerate_forwards=args.accelerate_forwards))
    return 0


def cmd_info(args) -> int:
    from app.engine.config import LLaDA2MoeConfig

    config = LLaDA2MoeConfig.from_file(args.model)
    for key, value in config.to_dict().items():
        print(f"{key:28} {value}")
    if args.budget is not None or args.experts_on_cpu is not None:
        from app.engine.placement import describe_for_folder

        print()
        print(describe_for_folder(args.model, args.budget or "auto",
                                  experts_on_cpu=args.experts_on_cpu, int8_cpu=args.int8))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmask", description="Unmask Studio")
    sub = parser.add_subparsers(dest="command")
    gui = sub.add_parser("gui", help="the desktop app (the default command)")
    gui.add_argument("gui_args", nargs=argparse.REMAINDER, help="options of the app (see --help)")
    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model")
    info.add_argument("--budget", default=None, help="show the expert placement for a GPU budget "
                      "(e.g. 12GiB, or auto)")
    info.add_argument("--experts-on-cpu", type=int, default=None)
    info.add_argument("--int8", action="store_true", help="int8 CPU experts in the plan")
    _add_bench(sub)
    add_job_commands(sub)
    return parser


COMMANDS = {
    "bench": cmd_bench, "info": cmd_info, "generate": cmd_job, "ask": cmd_job, "edit": cmd_job,
    "inpaint": cmd_job, "chat": cmd_job, "batch": cmd_batch, "eval": cmd_eval,
}


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a frozen app must not re-run main in the spawned worker
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help", "-h"):
        argv = ["gui", *argv]  # `unmask` alone (or with app options) opens the desktop app
    if argv[0] == "gui":
        # The app parses its own options: argparse's REMAINDER drops a leading `--option`.
        from app.ui.app import main as gui_main

        return gui_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"unmask: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
