"""Where does a small-shape fused training step spend its time? (CPU launch cost vs GPU work)

Usage: python3 scripts/gpu_overhead_probe.py [--device cuda] [--t 2048] [--d 128]
Prints, for B2 H4 T D fp16: GPU median ms (CUDA events) of the forward, the launcher-only
fused backward, and forward+backward through autograd; the host time per step when the
host only enqueues (one sync per 50 steps); and the profiler's top host-side ops.
"""

import argparse
import time

import torch

import kernels
from kernels.forward import attention_forward
from kernels.fused_backward import fused_attention_backward


def median_ms(fn, device, n=50):
    fn()
    if device == "cuda":
        import triton

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    t = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        t.append(time.perf_counter() - s)
    return sorted(t)[len(t) // 2] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--t", type=int, default=2048)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    dev, t, d = args.device, args.t, args.d
    q, k, v, do = (torch.randn(2, 4, t, d, device=dev, dtype=torch.float16) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    scale = d**-0.5
    o, lse = attention_forward(q, k, v, causal=False, window=None, scale=scale)

    def fwd():
        return kernels.attention(q, k, v, bwd_mode="fused")

    def bwd_launcher():
        return fused_attention_backward(q, k, v, o, lse, do, causal=False, window=None, scale=scale)

    def step():
        out = kernels.attention(q, k, v, bwd_mode="fused")
        return torch.autograd.grad(out, (q, k, v), do)

    def step_math():
        out = kernels.reference.attention(q, k, v)
        return torch.autograd.grad(out, (q, k, v), do)

    rows = {}
    for name, fn in [("forward", fwd), ("bwd launcher", bwd_launcher), ("fwd+bwd fused", step),
                     ("fwd+bwd math", step_math)]:  # fmt: skip
        rows[name] = median_ms(fn, dev)
    # host-only cost: enqueue 50 steps, one sync; if this ~= the GPU median, the step is host-bound
    for name, fn in [("fwd+bwd fused", step), ("bwd launcher", bwd_launcher)]:
        if dev == "cuda":
            torch.cuda.synchronize()
        s = time.perf_counter()
        for _ in range(50):
            fn()
        host = (time.perf_counter() - s) / 50 * 1e3
        if dev == "cuda":
            torch.cuda.synchronize()
        rows[f"{name} host enqueue"] = host
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(10):
            step()
        if dev == "cuda":
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
    if dev == "cuda":
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10))
    for name, ms in rows.items():
        print(f"{name:28s} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
