"""Forward kernel on the GPU: timings against SDPA flash / cuDNN in one run.

Usage (on a CUDA machine): python3 scripts/gpu_forward_check.py [--out DIR]
Prints a table (ms, TFLOP/s, ratio to SDPA flash) and writes JSON to --out.
FLOPs: 4 * B * H * Tq * Tk * D times the visible fraction (about 1/2 causal).
A/B against an earlier forward: put its file at kernels/forward_baseline.py, e.g.
``git show <commit>:kernels/forward.py > kernels/forward_baseline.py``; it is timed
as "base" (through its own launcher).
"""

import argparse
import json
import os

import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

import kernels
from kernels.forward import _attention_forward_kernel

try:
    from kernels import forward_baseline
except ImportError:
    forward_baseline = None

SHAPES = [
    # B, H, T, D, dtype, causal
    (2, 4, 2048, 128, torch.float16, False),
    (2, 4, 2048, 128, torch.bfloat16, True),
    (1, 8, 8192, 128, torch.bfloat16, True),
    (4, 16, 4096, 64, torch.bfloat16, True),
    (8, 16, 1024, 64, torch.bfloat16, False),
    (2, 8, 4096, 128, torch.bfloat16, False),
    (2, 8, 4096, 64, torch.bfloat16, False),
    (4, 16, 4096, 64, torch.bfloat16, False),
    (4, 16, 4096, 128, torch.bfloat16, False),
    (4, 16, 4096, 128, torch.bfloat16, True),
    (2, 8, 2048, 64, torch.bfloat16, True),
]


def visible_fraction(t, causal):
    return (t + 1) / (2 * t) if causal else 1.0


# (BLOCK_M, BLOCK_N, num_warps, num_stages) tried one by one by --sweep, beyond the
# autotuner's candidates: which tiles win where the grid is small (B2 H4 T2048).
SWEEP_CONFIGS = [
    (64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 8, 3), (64, 32, 4, 3), (64, 32, 4, 4),
    (64, 128, 4, 2), (64, 128, 8, 2), (128, 64, 8, 2), (128, 64, 8, 3), (128, 64, 4, 3),
    (128, 128, 8, 2), (128, 32, 4, 3), (128, 32, 8, 3),
]  # fmt: skip
SWEEP_SHAPES = [
    (2, 4, 2048, 128, torch.float16, False),
    (2, 4, 2048, 128, torch.bfloat16, True),
    (2, 8, 2048, 64, torch.bfloat16, False),
    (4, 16, 4096, 64, torch.bfloat16, True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sweep", action="store_true", help="time SWEEP_CONFIGS one by one instead")
    args = ap.parse_args()
    if args.sweep:
        sweep_rows = [sweep(*shape) for shape in SWEEP_SHAPES]
        with open(os.path.join(args.out, "forward_sweep.json"), "w") as f:
            json.dump(sweep_rows, f, indent=1)
        return
    rows = [measure(*shape) for shape in SHAPES]
    with open(os.path.join(args.out, "forward.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print_table(rows)


def sweep(b, h, t, d, dtype, causal):
    """ms of every SWEEP_CONFIGS entry on one shape, through the kernel under the autotuner."""
    q, k, v = (torch.randn(b, h, t, d, device="cuda", dtype=dtype) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    o = torch.empty_like(q)
    lse = torch.empty((b, h, t), device="cuda", dtype=torch.float32)
    jit_fn = _attention_forward_kernel.fn
    result = dict(B=b, H=h, T=t, D=d, dtype=str(dtype), causal=causal, ms={})
    for bm, bn, w, st in SWEEP_CONFIGS:

        def run(bm=bm, bn=bn, w=w, st=st):
            jit_fn[(triton.cdiv(t, bm), b * h)](
                q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
                h, t, t, 0, d**-0.5 * 1.4426950408889634, t, t,
                HEAD_DIM=d, BLOCK_D=d, IS_CAUSAL=causal, HAS_WINDOW=False, DOT_FP32=False,
                BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=st,
            )  # fmt: skip

        name = f"{bm}x{bn} w{w} s{st}"
        try:
            run()
            err = (o.float() - ref.float()).abs().max().item()
            ms = triton.testing.do_bench(run, warmup=25, rep=100, return_mode="median")
            result["ms"][name] = ms if err < 0.05 else f"wrong: max diff {err:.3g}"
        except Exception as exc:  # noqa: BLE001 - out of resources etc.: record, keep going
            result["ms"][name] = f"error: {type(exc).__name__}"
    ranked = sorted((v, n) for n, v in result["ms"].items() if isinstance(v, float))
    print(
        f"sweep B{b}H{h}T{t}D{d} {str(dtype)[6:]} {'c' if causal else 'n'}: "
        + ", ".join(f"{n} {v:.4f}" for v, n in ranked[:6]),
        flush=True,
    )
    return result


def measure(b, h, t, d, dtype, causal):
    q, k, v = (torch.randn(b, h, t, d, device="cuda", dtype=dtype) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = kernels.attention(q, k, v, causal=causal)
    err = (out.float() - ref.float()).abs().max().item()
    flops = 4 * b * h * t * t * d * visible_fraction(t, causal)
    row = dict(B=b, H=h, T=t, D=d, dtype=str(dtype), causal=causal, max_diff_vs_sdpa=err)
    impls = {"triton": lambda: kernels.attention(q, k, v, causal=causal)}
    if forward_baseline is not None:
        scale = d**-0.5

        def base():
            return forward_baseline.attention_forward(
                q, k, v, causal=causal, window=None, scale=scale
            )

        base_out, _ = base()
        row["base_max_diff_vs_new"] = (base_out.float() - out.float()).abs().max().item()
        impls["base"] = base
    for name, backend in (
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
    ):

        def run(backend=backend):
            with sdpa_kernel(backend):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

        impls[name] = run
    for name, fn in impls.items():
        try:
            ms = triton.testing.do_bench(fn, warmup=50, rep=200, return_mode="median")
            row[f"{name}_ms"] = ms
            row[f"{name}_tflops"] = flops / ms / 1e9
        except Exception as exc:  # noqa: BLE001 - report, keep going
            row[f"{name}_err"] = repr(exc)[:200]
    best = _attention_forward_kernel.best_config
    row["triton_config"] = str(best)
    print(json.dumps(row), flush=True)
    return row


def print_table(rows):
    print(
        f"{'shape':34s} {'triton ms':>9s} {'TF/s':>6s} {'base ms':>8s} {'flash ms':>9s} "
        f"{'cudnn ms':>9s} {'vs flash':>8s} {'vs cudnn':>8s}"
    )
    for r in rows:
        shape = (
            f"B{r['B']}H{r['H']}T{r['T']}D{r['D']} {r['dtype'][6:]} {'c' if r['causal'] else 'n'}"
        )
        print(
            f"{shape:34s} {r.get('triton_ms', float('nan')):9.3f} {r.get('triton_tflops', 0):6.0f} "
            f"{r.get('flash_ms', float('nan')):9.3f} {r.get('cudnn_ms', float('nan')):9.3f} "
            f"{r.get('flash_ms', float('nan')) / r.get('triton_ms', float('nan')):8.2f}"
        )


if __name__ == "__main__":
    main()
