"""Where the host time of a fused training step goes (default: the seed shape, B2 H4 T2048 D128).

Usage: python3 scripts/gpu_host_profile.py [--out DIR] [--shape B,H,T,D] [--steps N]

A step at a small shape is bound by host time, not GPU time (docs/probes.md), so this
measures the host side only, through public names (``kernels.attention``, the launchers
``attention_forward`` / ``backward_of_validated`` and the modules' ``LAUNCHERS``):

0. Host time per step (forward + torch.autograd.grad, perf_counter over ``--steps``
   steps, one sync at the end) with each launch mode of kernels/_launch.py
   (``KERNELS_LAUNCH_CACHE``: 1 direct, runner, 0 no cache), autograd's device thread
   on and off.
1. cProfile of ``--profile-steps`` steps with autograd's device thread off, so the
   backward runs on the profiled thread. The top functions by own and cumulative time
   go to ``--out/host_profile.txt``, after the rows as JSON.
2. Host time per call of the pieces: the forward launcher, the backward launcher
   (``backward_of_validated``), the forward through ``kernels.attention`` with no grad,
   and the backward's allocations. These call loops issue launches back to back without
   a sync, so they may time the GPU's launch queue rather than the host: trust 0. for A/Bs.
3. How many launches each kernel's cached launcher sent directly (``direct_launches``).

``--device cpu`` runs the same on CPU under TRITON_INTERPRET=1 (a smoke test of the
tool; the times mean nothing there).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time

import torch

import kernels
from kernels import forward, fused_backward, fused_gradgrad
from kernels.forward import attention_forward
from kernels.fused_backward import backward_of_validated

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
LAUNCH_MODES = ("1", "runner", "0")  # kernels/_launch.py: direct, Triton's runner, no cache


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for the profile")
    ap.add_argument("--shape", default="2,4,2048,128", help="B,H,T,D (default: the seed)")
    ap.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--steps", type=int, default=300, help="steps per host-time row")
    ap.add_argument("--reps", type=int, default=3, help="host-time rows keep the best of these")
    ap.add_argument("--profile-steps", type=int, default=500, help="steps under cProfile")
    ap.add_argument(
        "--modes", default=",".join(LAUNCH_MODES), help="KERNELS_LAUNCH_CACHE values to time"
    )
    args = ap.parse_args(argv)
    try:
        args.shape = tuple(int(x) for x in args.shape.split(","))
    except ValueError:
        ap.error(f"--shape must be four ints B,H,T,D, got {args.shape!r}")
    if len(args.shape) != 4:
        ap.error(f"--shape must be four ints B,H,T,D, got {args.shape}")
    args.modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in args.modes if m not in LAUNCH_MODES]
    if bad:
        ap.error(f"--modes takes {', '.join(LAUNCH_MODES)}; got {bad}")
    return args


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def host_ms(fn, n, device, warmup=10):
    """Host ms per call: ``n`` calls timed with perf_counter, one sync after them."""
    for _ in range(min(warmup, n)):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - start) / n * 1e3
    _sync(device)
    return host


def make_inputs(shape, dtype, device):
    """q, k, v (requiring grad) and dO, seed 0."""
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v, do = (torch.randn(*shape, device=device, dtype=dtype, generator=gen) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    return q, k, v, do


def profile(args):
    """The rows (name -> value) and the cProfile text."""
    q, k, v, do = make_inputs(args.shape, DTYPES[args.dtype], args.device)
    batch, heads, t, d = args.shape

    def step():
        out = kernels.attention(q, k, v, bwd_mode="fused")
        return torch.autograd.grad(out, (q, k, v), do)

    def best_us(fn, n):
        return round(min(host_ms(fn, n, args.device) for _ in range(args.reps)) * 1e3, 1)

    rows = {}
    previous = os.environ.get("KERNELS_LAUNCH_CACHE")
    try:
        for mode in args.modes:
            os.environ["KERNELS_LAUNCH_CACHE"] = mode
            for threaded in (False, True):
                with torch.autograd.set_multithreading_enabled(threaded):
                    thread = "threaded" if threaded else "single-thread"
                    rows[f"step us, cache={mode}, {thread}"] = best_us(step, args.steps)
    finally:
        if previous is None:
            os.environ.pop("KERNELS_LAUNCH_CACHE", None)
        else:
            os.environ["KERNELS_LAUNCH_CACHE"] = previous

    with torch.autograd.set_multithreading_enabled(False):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.profile_steps):
            step()
        prof.disable()
        _sync(args.device)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(35)
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(35)

    scale = d**-0.5
    qd, kd, vd = q.detach(), k.detach(), v.detach()
    with torch.no_grad():
        o, lse = attention_forward(qd, kd, vd, causal=False, window=None, scale=scale)
    n = args.steps
    rows["forward launcher us"] = best_us(
        lambda: attention_forward(qd, kd, vd, causal=False, window=None, scale=scale), n
    )
    rows["backward launcher us"] = best_us(
        lambda: backward_of_validated(
            qd, kd, vd, o, lse, do, is_causal=False, window=0, scale=scale
        ),
        n,
    )
    with torch.autograd.set_multithreading_enabled(False):
        rows["forward only (no grad graph) us"] = best_us(
            lambda: kernels.attention(qd, kd, vd, bwd_mode="fused"), n
        )
    rows["3 x torch.empty_like(q) + delta us"] = best_us(
        lambda: ([torch.empty_like(q) for _ in range(3)], torch.empty_like(lse)), n
    )
    launchers = {**forward.LAUNCHERS, **fused_backward.LAUNCHERS, **fused_gradgrad.LAUNCHERS}
    rows["direct launches"] = {name: x.direct_launches for name, x in launchers.items()}
    return rows, text.getvalue()


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu with TRITON_INTERPRET=1")
    rows, text = profile(args)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (interpreter)"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "host_profile.txt"), "w") as f:
        f.write(json.dumps(dict(device=name, shape=args.shape, rows=rows), indent=1) + "\n\n")
        f.write(text)
    print(f"host time per call on {name}, shape {args.shape} {args.dtype}")
    for row, value in rows.items():
        print(f"{row:48s} {value}")


if __name__ == "__main__":
    main()
