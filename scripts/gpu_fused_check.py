"""Check and time the fused Triton backward and double backward on one CUDA GPU.

Run from the repository root on the H100 (torch 2.11, triton 3.6, no network):

    python3 scripts/gpu_fused_check.py            # about 3 minutes, autotuning included

1. Correctness against fp64 math (kernels.reference) by the project rule
   (tests/numerics.py): B1 H8 T2048 D128 causal bf16, and the TTT chunk
   B1 H12 Tq1024 Tk9216 window 8192 D64 bf16; every output of both launchers.
2. Timings, ``triton.testing.do_bench`` median (CUDA events):
   - fused backward vs PyTorch SDPA backward (flash and cuDNN), square shapes;
   - fused double backward vs the same-dtype math double backward
     (``reference.attention_double_backward``, upcast=False), and T=32768 fused only.
   TFLOP/s: backward = 2.5 x forward FLOPs (4 B H Tq Tk D x visible fraction),
   the convention of DESIGN.md; double backward = its matmul count
   (``gradgrad_matmul_count``, 21) x 2 B H Tq Tk D x visible fraction.
Prints a compact table last; writes everything to $OUT/gpu_fused_check.json if $OUT is set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402
from numerics import error_ratio  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from kernels import fused_backward as fb  # noqa: E402
from kernels import fused_gradgrad as fg  # noqa: E402
from kernels import reference  # noqa: E402

START = time.time()
DEV = "cuda"


def visible_fraction(t_q, t_k, causal, window):
    """Visible (query, key) pairs over Tq * Tk, bottom-right aligned (kernels.reference)."""
    if not causal and window is None:
        return 1.0
    pos = torch.arange(t_q, dtype=torch.float64) + (t_k - t_q)
    seen = pos + 1 if window is None else torch.clamp(pos + 1, max=window)
    return float(seen.sum()) / (t_q * t_k)


def forward_stats(q, k, v, *, causal, window, scale, dtype=torch.float32, chunk=2048):
    """(o in q's dtype, lse fp32) by chunked math in ``dtype``: no (Tq, Tk) tensor per (B, H)."""
    b_, h_, t_q, _ = q.shape
    t_k = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty((b_, h_, t_q), device=q.device, dtype=torch.float32)
    is_causal = causal or window is not None
    for b in range(b_):
        for h in range(h_):
            kk, vv = k[b, h].to(dtype), v[b, h].to(dtype)
            for r0 in range(0, t_q, chunk):
                r1 = min(t_q, r0 + chunk)
                s = (q[b, h, r0:r1].to(dtype) @ kk.T) * scale
                if is_causal:
                    pos = torch.arange(r0, r1, device=q.device)[:, None] + (t_k - t_q)
                    dist = pos - torch.arange(t_k, device=q.device)[None, :]
                    ok = dist >= 0
                    if window is not None:
                        ok &= dist < window
                    s = s.masked_fill(~ok, float("-inf"))
                row_lse = torch.logsumexp(s, dim=-1)
                o[b, h, r0:r1] = (torch.exp(s - row_lse[:, None]) @ vv).to(q.dtype)
                lse[b, h, r0:r1] = row_lse.float()
    return o, lse


def make_case(b, h, t_q, t_k, d, dtype, causal, window, *, stats_dtype=torch.float32):
    gen = torch.Generator(device=DEV).manual_seed(1234)
    q, k, v, do = (
        torch.randn(b, h, t, d, device=DEV, dtype=dtype, generator=gen)
        for t in (t_q, t_k, t_k, t_q)
    )
    cot = [torch.randn(t.shape, device=DEV, dtype=dtype, generator=gen) for t in (q, k, v)]
    opts = dict(causal=causal, window=window, scale=d**-0.5)
    o, lse = forward_stats(q, k, v, dtype=stats_dtype, **opts)
    return q, k, v, o, lse, do, cot, opts


def check(name, b, h, t_q, t_k, d, dtype, causal, window):
    """Rule check of both launchers against fp64 math; returns rows of the report."""
    q, k, v, o, lse, do, cot, opts = make_case(
        b, h, t_q, t_k, d, dtype, causal, window, stats_dtype=torch.float64
    )
    up = [t.double() for t in (q, k, v, do)]
    rows = []

    def judge(kind, outs, names, want, base):
        for n, a, w, m in zip(names, outs, want, base):
            err, math_err, floor = error_ratio(a, w, m)
            ok = bool(torch.isfinite(a).all()) and err <= 2 * math_err + floor
            rows.append(
                dict(
                    case=name,
                    what=f"{kind}/{n}",
                    err=err,
                    math_err=math_err,
                    floor=floor,
                    ratio=err / max(math_err, floor),
                    ok=ok,
                )
            )

    got = fb.fused_attention_backward(q, k, v, o, lse, do, **opts)
    dv_only = fb.attention_backward_dv(q, k, v, lse, do, **opts)
    want = reference.attention_backward(*up, **opts)
    base = reference.attention_backward(q, k, v, do, upcast=False, **opts)
    judge("bwd", (*got, dv_only), ("dq", "dk", "dv", "dv_only"), (*want, want[2]), (*base, base[2]))
    del want, base
    got = fg.fused_attention_double_backward(q, k, v, o, lse, do, *cot, **opts)
    want = reference.attention_double_backward(*up, *(c.double() for c in cot), **opts)
    base = reference.attention_double_backward(q, k, v, do, *cot, upcast=False, **opts)
    judge("gg", got, ("q", "k", "v", "do"), want, base)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return rows


def bench(fn):
    """Median ms (CUDA events) and peak memory of one call above what was allocated before."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak_mib = (torch.cuda.max_memory_allocated() - before) / 2**20
    ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    return ms, peak_mib


def try_bench(fn):
    try:
        ms, mib = bench(fn)
        return dict(ms=ms, peak_mib=mib)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return dict(error="out of memory")
    except RuntimeError as exc:  # e.g. an SDPA backend that refuses the shape
        torch.cuda.empty_cache()
        return dict(error=str(exc).splitlines()[0][:80])


def time_backward(label, b, h, t, d, dtype, causal):
    q, k, v, o, lse, do, _, opts = make_case(b, h, t, t, d, dtype, causal, None)
    vis = visible_fraction(t, t, causal, None)
    flops = 2.5 * 4 * b * h * t * t * d * vis
    out = {}
    out["fused"] = try_bench(lambda: fb.fused_attention_backward(q, k, v, o, lse, do, **opts))
    for backend_name, backend in (
        ("sdpa_flash", SDPBackend.FLASH_ATTENTION),
        ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
    ):
        qr, kr, vr = (x.detach().clone().requires_grad_() for x in (q, k, v))
        try:
            with sdpa_kernel([backend]):
                o_sdpa = F.scaled_dot_product_attention(qr, kr, vr, is_causal=causal)
            out[backend_name] = try_bench(
                lambda o_sdpa=o_sdpa, qr=qr, kr=kr, vr=vr: torch.autograd.grad(
                    o_sdpa, (qr, kr, vr), do, retain_graph=True
                )
            )
        except RuntimeError as exc:
            out[backend_name] = dict(error=str(exc).splitlines()[0][:80])
    for r in out.values():
        if "ms" in r:
            r["tflops"] = flops / (r["ms"] * 1e-3) / 1e12
    return dict(family="backward", shape=label, results=out)


def time_gradgrad(label, b, h, t_q, t_k, d, dtype, causal, window, with_math=True):
    q, k, v, o, lse, do, cot, opts = make_case(b, h, t_q, t_k, d, dtype, causal, window)
    vis = visible_fraction(t_q, t_k, causal, window)
    flops = fg.gradgrad_matmul_count() * 2 * b * h * t_q * t_k * d * vis
    out = {}
    out["fused"] = try_bench(
        lambda: fg.fused_attention_double_backward(q, k, v, o, lse, do, *cot, **opts)
    )
    if with_math:
        out["math"] = try_bench(
            lambda: reference.attention_double_backward(q, k, v, do, *cot, upcast=False, **opts)
        )
    for r in out.values():
        if "ms" in r:
            r["tflops"] = flops / (r["ms"] * 1e-3) / 1e12
    return dict(family="gradgrad", shape=label, results=out)


def tuned_configs():
    """The autotuner's pick per key, for every fused kernel (what the timings ran)."""
    kernels = {
        "dkdv": fb._dkdv_kernel,
        "dq": fb._dq_kernel,
        "gg_rows": fg._gradgrad_rows_kernel,
        "gg_cols": fg._gradgrad_cols_kernel,
    }
    return {name: {str(k): str(c) for k, c in kern.cache.items()} for name, kern in kernels.items()}


def main():
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    checks = []
    checks += check(
        "B1H8 T2048 D128 causal bf16", 1, 8, 2048, 2048, 128, torch.bfloat16, True, None
    )
    checks += check(
        "TTT B1H12 1024/9216 w8192 D64 bf16", 1, 12, 1024, 9216, 64, torch.bfloat16, True, 8192
    )
    print(f"[{time.time() - START:.0f}s] correctness done", flush=True)

    bf16, fp16 = torch.bfloat16, torch.float16
    backward_cases = [  # label, B, H, T, D, dtype, causal
        ("B2H4 T2048 D128 fp16", 2, 4, 2048, 128, fp16, False),
        ("B1H8 T8192 D128 bf16 causal", 1, 8, 8192, 128, bf16, True),
        ("B4H16 T4096 D64 bf16 causal", 4, 16, 4096, 64, bf16, True),
    ]
    gradgrad_cases = [  # label, B, H, Tq, Tk, D, dtype, causal, window, with_math
        ("B1H8 T8192 D128 bf16 causal", 1, 8, 8192, 8192, 128, bf16, True, None, True),
        ("TTT B1H12 1024/9216 w8192 D64 bf16", 1, 12, 1024, 9216, 64, bf16, True, 8192, True),
        ("B1H8 T32768 D128 bf16 causal", 1, 8, 32768, 32768, 128, bf16, True, None, False),
    ]
    timings = []
    for case in backward_cases:
        timings.append(time_backward(*case))
        torch.cuda.empty_cache()
    print(f"[{time.time() - START:.0f}s] backward timings done", flush=True)
    for *case, with_math in gradgrad_cases:
        timings.append(time_gradgrad(*case, with_math=with_math))
        torch.cuda.empty_cache()
    elapsed = time.time() - START

    report = dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        elapsed_s=elapsed,
        checks=checks,
        timings=timings,
        tuned_configs=tuned_configs(),
    )
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "gpu_fused_check.json"
        path.write_text(json.dumps(report, indent=1))
        print(f"wrote {path}")

    print(json.dumps(report["tuned_configs"], indent=1))
    print(f"\n== correctness (rule: err <= 2 x math err + floor), {elapsed:.0f}s total ==")
    for r in checks:
        print(
            f"{'ok ' if r['ok'] else 'BAD'} {r['case']:36s} {r['what']:12s} err {r['err']:.2e} "
            f"math {r['math_err']:.2e} ratio {r['ratio']:.2f}"
        )
    print("\n== timings: median ms (TFLOP/s) [peak MiB] ==")
    for t in timings:
        cells = []
        for impl, r in t["results"].items():
            if "ms" in r:
                cells.append(f"{impl} {r['ms']:.3f} ({r['tflops']:.0f}) [{r['peak_mib']:.0f}]")
            else:
                cells.append(f"{impl} {r['error']}")
        print(f"{t['family']:8s} {t['shape']:36s} " + " | ".join(cells))
    if not all(r["ok"] for r in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
