"""Forward kernel on the GPU: timings against SDPA flash / cuDNN in one run.

Usage (on a CUDA machine): python3 scripts/gpu_forward_check.py [--out DIR]
Prints a table (ms, TFLOP/s, ratio to SDPA flash) and writes JSON to --out.
FLOPs: 4 * B * H * Tq * Tk * D times the visible fraction (about 1/2 causal).
"""

import argparse
import json
import os

import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

import kernels
from kernels.forward import _attention_forward_kernel

SHAPES = [
    # B, H, T, D, dtype, causal
    (2, 4, 2048, 128, torch.float16, False),
    (2, 4, 2048, 128, torch.bfloat16, True),
    (1, 8, 8192, 128, torch.bfloat16, True),
    (4, 16, 4096, 64, torch.bfloat16, True),
    (8, 16, 1024, 64, torch.bfloat16, False),
    (2, 8, 4096, 128, torch.bfloat16, False),
    (2, 8, 4096, 64, torch.bfloat16, False),
]


def visible_fraction(t, causal):
    return (t + 1) / (2 * t) if causal else 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    rows = [measure(*shape) for shape in SHAPES]
    with open(os.path.join(args.out, "forward.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print_table(rows)


def measure(b, h, t, d, dtype, causal):
    q, k, v = (torch.randn(b, h, t, d, device="cuda", dtype=dtype) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = kernels.attention(q, k, v, causal=causal)
    err = (out.float() - ref.float()).abs().max().item()
    flops = 4 * b * h * t * t * d * visible_fraction(t, causal)
    row = dict(B=b, H=h, T=t, D=d, dtype=str(dtype), causal=causal, max_diff_vs_sdpa=err)
    impls = {"triton": lambda: kernels.attention(q, k, v, causal=causal)}
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
        f"{'shape':34s} {'triton ms':>9s} {'TF/s':>6s} {'flash ms':>9s} {'cudnn ms':>9s} "
        f"{'vs flash':>8s}"
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
