"""Host time against GPU time of a training step (forward + autograd.grad): fused vs flash.

Usage: python3 scripts/gpu_step_probe.py [--tag NAME] [--out DIR]

Shapes: the seed (B2 H4 T2048 D128 fp16, no mask) and B4 H16 T2048 D64/D128 bf16,
no mask and causal (the issue-6 targets at T=2048). Per shape, for bwd_mode="fused"
and SDPA pinned to FlashAttention-2:

- ``gpu_ms``: the suite's timer (bench_suite.common.median_ms: CUDA events around each
  call, cold L2 before it). When the host is slower than the GPU this is host time.
- ``host_ms``: host time per step, perf_counter over 200 steps with one sync at the end.

At the seed shape also:

- ``floor``: a Python autograd.Function whose forward and backward only allocate their
  outputs: the host cost of any Python-level attention op, hand-offs included.
- the fused backward launcher alone (``backward_of_validated``): GPU ms and host ms.
- the host ms of four ``torch.empty`` of the seed's tensors.

``--breakdown``: only the seed shape's step with the backward's launches replaced by
no-ops (host time only: what one launch costs on autograd's device thread), the
forward alone, flash and the floor, each with autograd multithreading on and off.

Run it twice to A/B two commits: once here, once with PYTHONPATH at a worktree of the
other commit and another ``--tag``. Rows go to --out/step_probe_<tag>.jsonl.
"""

import argparse
import importlib
import inspect
import json
import os
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import kernels
from bench_suite.common import median_ms

SHAPES = [  # name, B, H, T, D, dtype, causal
    ("seed", 2, 4, 2048, 128, torch.float16, False),
    ("short-d64", 4, 16, 2048, 64, torch.bfloat16, False),
    ("short-d64-causal", 4, 16, 2048, 64, torch.bfloat16, True),
    ("short-d128", 4, 16, 2048, 128, torch.bfloat16, False),
    ("short-d128-causal", 4, 16, 2048, 128, torch.bfloat16, True),
]


def host_ms(fn, n=200):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - start) / n * 1e3
    torch.cuda.synchronize()
    return host


def seed_inputs():
    """q, k, v (requiring grad) and dO at the seed shape, B2 H4 T2048 D128 fp16, seed 0."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(2, 4, 2048, 128, device="cuda", dtype=torch.float16, generator=gen)
        for _ in range(4)
    )
    for x in (q, k, v):
        x.requires_grad_()
    return q, k, v, do


class AllocOnly(torch.autograd.Function):
    """No GPU work: the host floor of a Python autograd.Function step."""

    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save_for_backward(q, k, v)
        return torch.empty_like(q)

    @staticmethod
    def backward(ctx, do):
        q, k, v = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def steps(q, k, v, do, causal):
    def fused():
        out = kernels.attention(q, k, v, causal=causal, bwd_mode="fused")
        return torch.autograd.grad(out, (q, k, v), do)

    def flash():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return torch.autograd.grad(out, (q, k, v), do)

    def floor():
        return torch.autograd.grad(AllocOnly.apply(q, k, v), (q, k, v), do)

    return {"fused": fused, "flash": flash, "floor": floor}


def seed_extras(q, k, v, do, fns, emit):
    """Single-threaded autograd, the backward launcher alone, allocations."""
    name, d = "seed", q.shape[-1]
    with torch.autograd.set_multithreading_enabled(False):
        fn = fns["fused"]
        emit(shape=name, what="fused single-thread", gpu_ms=median_ms(fn, "cuda"),
             host_ms=host_ms(fn))  # fmt: skip
    fb = importlib.import_module("kernels.fused_backward")
    with torch.no_grad():
        o, lse = importlib.import_module("kernels.forward").attention_forward(
            q, k, v, causal=False, window=None, scale=d**-0.5
        )

    def bwd():
        return fb.backward_of_validated(
            q, k, v, o, lse, do, is_causal=False, window=0, scale=d**-0.5
        )

    emit(shape=name, what="bwd launcher", gpu_ms=median_ms(bwd, "cuda"), host_ms=host_ms(bwd))

    def allocs():
        return [torch.empty(q.shape, device=q.device, dtype=q.dtype) for _ in range(4)]

    emit(shape=name, what="4 x torch.empty", host_ms=host_ms(allocs))


def breakdown(emit):
    """Seed shape: what the fused step's host time is made of, with autograd threaded or not.

    The backward's launches are replaced by no-ops (results are wrong there: host time
    only): all launches, the dK/dV launch alone, none. Flash and the floor beside them.
    """
    fb = importlib.import_module("kernels.fused_backward")
    q, k, v, do = seed_inputs()
    fns = steps(q, k, v, do, False)
    real = {"dq": fb._launch_dq, "dkdv": fb._launch_dkdv_kernel}

    def noop(*args, **kwargs):
        return None

    def forward_only():
        return kernels.attention(q, k, v, bwd_mode="fused")

    variants = [
        ("fused", fns["fused"], ()),
        ("fused, no dK/dV launch", fns["fused"], ("dkdv",)),
        ("fused, no bwd launch", fns["fused"], ("dkdv", "dq")),
        ("fused forward only", forward_only, ()),
        ("flash", fns["flash"], ()),
        ("floor", fns["floor"], ()),
    ]
    for threaded in (True, False):
        with torch.autograd.set_multithreading_enabled(threaded):
            for what, fn, skipped in variants:
                fn()  # compile / autotune with the real launchers
                fb._launch_dq = noop if "dq" in skipped else real["dq"]
                fb._launch_dkdv_kernel = noop if "dkdv" in skipped else real["dkdv"]
                try:
                    host = min(host_ms(fn) for _ in range(3))
                finally:
                    fb._launch_dq, fb._launch_dkdv_kernel = real["dq"], real["dkdv"]
                label = what + ("" if threaded else ", single-thread")
                emit(shape="seed", what=label, host_ms=host)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="head")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--breakdown", action="store_true", help="only the seed host breakdown")
    args = ap.parse_args()
    rows = []

    def emit(**row):
        row["tag"] = args.tag
        rows.append(row)
        print(json.dumps(row), flush=True)

    from triton.compiler import CompiledKernel

    src = inspect.getsource(CompiledKernel.__getitem__)
    print("CompiledKernel.__getitem__ of this Triton:\n" + src, flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for name, b, h, t, d, dtype, causal in [] if args.breakdown else SHAPES:
        q, k, v, do = (
            torch.randn(b, h, t, d, device="cuda", dtype=dtype, generator=gen) for _ in range(4)
        )
        for x in (q, k, v):
            x.requires_grad_()
        fns = steps(q, k, v, do, causal)
        what = ("fused", "flash", "floor") if name == "seed" else ("fused", "flash")
        for mode in what:
            fn = fns[mode]
            emit(shape=name, what=mode, gpu_ms=median_ms(fn, "cuda"), host_ms=host_ms(fn))
        if name == "seed":
            seed_extras(q, k, v, do, fns, emit)

    if args.breakdown:
        breakdown(emit)
    path = os.path.join(args.out, f"step_probe_{args.tag}.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"\n{args.tag}: ms per step on {torch.cuda.get_device_name()}")
    print(f"{'shape':18s} {'what':24s} {'gpu_ms':>8s} {'host_ms':>8s}")
    for r in rows:
        gpu = f"{r['gpu_ms']:8.4f}" if "gpu_ms" in r else " " * 8
        print(f"{r['shape']:18s} {r['what']:24s} {gpu} {r['host_ms']:8.4f}")


if __name__ == "__main__":
    main()
