"""A quick look at one shape without asv (the seed's CLI), on the suite's own helpers.

    python -m harness.quick [--b 2 --h 4 --t 2048 --d 128 --dtype fp16 --iters 50] \\
        [--device cpu] [--mode fwd|bwd|gradgrad|all] [--bwd-mode fused] [--compile] \\
        [--sdpa] [--causal] [--window N] [--tk N] [--interpret] [--no-parity]

Defaults: the seed's shape (B2 H4 T2048 D128 fp16, 50 iterations) on a GPU; on a CPU
a shape that answers in seconds (B1 H2 T256 D64 fp32, 10 iterations), because the
seed's shape there takes 7.7 s per math forward call (500 s for the defaults).
Any shape flag given is used as given. ``--bwd-mode`` defaults to ``fused``, the
kernels' fast mode (and ``kernels.attention``'s default).

Prints one line per path and implementation, e.g. ``math forward:   0.392 ms``, with the
speedup over math, peak memory (GPU) and the parity ratio (harness.parity) after it.
GPU times are CUDA-event medians; CPU times are CPU wall-clock (perf_counter) medians.
Triton runs on CPU only with --interpret (the Triton interpreter: a check, not a speed).
torch is imported in main(), after --interpret has set TRITON_INTERPRET; the harness
modules imported at the top import only the standard library until they are called.
"""

from __future__ import annotations

import argparse
import os
import sys

from harness import grid, impls, measure, parity, timing
from harness.flops import config_flops

DTYPE_ALIASES = {
    "fp16": "float16",
    "half": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp32": "float32",
    "float": "float32",
    "float32": "float32",
}
PATH_ALIASES = {"fwd": "forward", "bwd": "backward", "gradgrad": "gradgrad"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.quick", description=__doc__.split("\n")[0])
    p.add_argument("--b", type=int, help="batch (default 2 on GPU, 1 on CPU)")
    p.add_argument("--h", type=int, help="heads (default 4 on GPU, 2 on CPU)")
    p.add_argument("--t", type=int, help="queries, and keys unless --tk (2048 GPU, 256 CPU)")
    p.add_argument("--tk", type=int, help="keys, when more than queries (bottom-right aligned)")
    p.add_argument("--d", type=int, help="head dim (default 128 on GPU, 64 on CPU)")
    p.add_argument("--dtype", choices=sorted(DTYPE_ALIASES), help="default fp16 GPU, fp32 CPU")
    p.add_argument("--iters", type=int, help="timed iterations, median (50 GPU, 10 CPU)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--mode", default="all", choices=["fwd", "bwd", "gradgrad", "all"])
    p.add_argument("--bwd-mode", default="fused", help="kernels.attention bwd_mode")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--window", type=int, help="sliding window (implies causal)")
    p.add_argument("--compile", action="store_true", help="also torch.compile'd math")
    p.add_argument("--sdpa", action="store_true", help="also PyTorch SDPA (fwd, bwd)")
    p.add_argument("--interpret", action="store_true", help="Triton interpreter on CPU")
    p.add_argument("--no-parity", action="store_true", help="skip the fp64 parity check")
    args = p.parse_args(argv)
    for name in ("b", "h", "t", "d", "iters"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.tk is not None and args.t is not None and args.tk < args.t:
        p.error(f"--tk must be >= --t ({args.t}), got {args.tk}")
    if args.window is not None and args.window < 1:
        p.error(f"--window must be >= 1, got {args.window}")
    return args


# (b, h, t, d, dtype, iters) when not given: the seed's shape on a GPU, and on a CPU one
# whose every line (math, fp64 parity reference, three paths) comes back in seconds.
GPU_DEFAULTS = {"b": 2, "h": 4, "t": 2048, "d": 128, "dtype": "fp16", "iters": 50}
CPU_DEFAULTS = {"b": 1, "h": 2, "t": 256, "d": 64, "dtype": "fp32", "iters": 10}


def _fill_defaults(args: argparse.Namespace, on_cpu: bool) -> list[str]:
    """Fill the shape flags left out; returns the names filled (to say so)."""
    defaults = CPU_DEFAULTS if on_cpu else GPU_DEFAULTS
    filled = [name for name, value in defaults.items() if getattr(args, name) is None]
    for name in filled:
        setattr(args, name, defaults[name])
    return filled


def main(argv=None) -> int:
    args = parse_args(argv)
    # Each line as it is measured: a pipe or a log file would otherwise hold them all
    # back until the end (a whole default run on a GPU is ~30 s of compile and tuning).
    sys.stdout.reconfigure(line_buffering=True)
    if args.interpret:  # before anything imports triton.jit functions (docs/design.md trap 2)
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu", file=sys.stderr)
        return 2
    if args.bwd_mode not in grid.KERNEL_MODES:
        print(f"--bwd-mode must be one of {grid.KERNEL_MODES}", file=sys.stderr)
        return 2
    on_cpu = device.type != "cuda"
    filled = _fill_defaults(args, on_cpu)
    if args.tk is not None and args.tk < args.t:
        print(f"--tk must be >= --t ({args.t}), got {args.tk}", file=sys.stderr)
        return 2
    tk = args.tk or args.t
    masked = args.causal or args.window is not None
    mask = grid.mask_name(masked, args.window)
    dtype = DTYPE_ALIASES[args.dtype]
    cfg = grid.Config(args.b, args.h, grid.t_name(args.t, tk), args.d, dtype, mask)
    paths = grid.PATHS if args.mode == "all" else (PATH_ALIASES[args.mode],)
    where = torch.cuda.get_device_name(device) if not on_cpu else "CPU (wall-clock, perf_counter)"
    print(f"{cfg.label()} on {where}, median of {args.iters} iterations, bwd_mode {args.bwd_mode}")
    if filled:
        kind = "CPU" if on_cpu else "GPU"
        print(f"({kind} defaults for {', '.join('--' + n for n in filled)}: pass them to change)")

    compared = [("math", "math")]
    if args.compile:
        compared.append(("compiled", "compiled"))
    if args.sdpa:
        compared.append(("sdpa", "sdpa"))
    triton_note = ""
    if not on_cpu:
        compared.append(("triton", args.bwd_mode))
    elif args.interpret:
        compared.append(("triton", args.bwd_mode))
        triton_note = " (interpreter, not a speed)"
    else:
        print("triton: skipped on CPU (pass --interpret to run the Triton interpreter)")
    if dtype == "float32" and any(name == "triton" for name, _ in compared):
        print("note: kernels.attention computes float32 with the math path, not Triton")

    inp = impls.make_inputs(cfg, device)
    width = max(len(f"{n} {p}:") for n, _ in compared for p in paths) + 1
    for path in paths:
        ref64 = math_same = None
        if not args.no_parity:
            ref64 = parity.parity_reference(path, cfg, inp)
            math_same, _ = parity.math_denominators(path, cfg, inp, ref64)
        math_ms = None
        for name, mode in compared:
            if path == "gradgrad" and mode in grid.NO_DOUBLE_BACKWARD:
                print(f"{f'{name} {path}:':<{width}} n/a ({grid.NO_DOUBLE_BACKWARD[mode]})")
                continue
            rec = _measure(path, cfg, mode, inp, ref64, math_same, device, args.iters)
            label = f"{name} {path}:"
            if rec.status != "ok":
                print(f"{label:<{width}} {rec.line()}")
                continue
            if mode == "math":
                math_ms = rec.ms
            note = triton_note if name == "triton" else ""
            extra = []
            if math_ms and mode != "math" and not note:
                extra.append(f"{math_ms / rec.ms:.2f}x vs math")
            if rec.peak_mib is not None:
                extra.append(f"{rec.peak_mib:.1f} MiB")
            if rec.parity is not None:
                extra.append(f"parity {rec.parity:.2f}")
            if rec.impl:
                extra.append(rec.impl)
            print(f"{label:<{width}} {rec.ms:.3f} ms{note}  ({', '.join(extra)})")
    return 0


def _measure(path, cfg, mode, inp, ref64, math_same, device, iters):
    """measure.measure_mode, or without the parity gate when --no-parity."""
    if ref64 is not None:
        return measure.measure_mode(path, cfg, mode, inp, ref64, math_same, device, iters=iters)
    try:
        (label, attn), *_ = impls.implementations(mode, cfg, device)
        ms = timing.median_ms(lambda: impls.run_path(path, attn, inp), device, iters=iters)
        mib = timing.peak_mib(lambda: impls.run_path(path, attn, inp), device)
    except NotImplementedError as exc:
        return measure.Record("skip", str(exc))
    return measure.Record("ok", ms=ms, peak_mib=mib, tflops=config_flops(path, cfg) / ms / 1e9)


if __name__ == "__main__":
    sys.exit(main())
