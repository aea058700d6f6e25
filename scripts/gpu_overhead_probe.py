"""Where does a small-shape training step spend its time? (host launch cost vs GPU work)

Usage: python3 scripts/gpu_overhead_probe.py [--t 2048] [--d 128] [--out DIR]
For B2 H4 T D fp16 (the seed shape), with the launch cache on and off
(KERNELS_LAUNCH_CACHE, kernels/_launch.py): the CUDA-event median of the forward,
the fused backward launcher alone and forward+backward through autograd (the
suite's method: cold L2 before each call), SDPA flash and cuDNN fwd+bwd beside
them, the host time per call when the host only enqueues (one sync per 200 calls),
and a cProfile of the backward launcher (written to --out/overhead_profile.txt).
"""

import argparse
import cProfile
import io
import json
import os
import pstats

import torch
import triton
from gpu_step_probe import host_ms  # scripts/ is on sys.path when run as a script
from torch.nn.attention import SDPBackend, sdpa_kernel

import kernels
from kernels.forward import attention_forward
from kernels.fused_backward import fused_attention_backward


def gpu_ms(fn):
    fn()
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t", type=int, default=2048)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    t, d = args.t, args.d
    q, k, v, do = (torch.randn(2, 4, t, d, device="cuda", dtype=torch.float16) for _ in range(4))
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

    def sdpa_step(backend):
        def run():
            with sdpa_kernel(backend):
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return torch.autograd.grad(out, (q, k, v), do)

        return run

    class Identity(torch.autograd.Function):
        """Python autograd Function doing no work: the cost of a Python node in the graph."""

        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return g

    def python_node_step():
        return torch.autograd.grad(Identity.apply(q), (q,), do)

    def cpp_node_step():
        return torch.autograd.grad(q * 1.0, (q,), do)

    fns = {
        "autograd c++ node": cpp_node_step,
        "autograd python node": python_node_step,
        "forward": fwd,
        "bwd launcher": bwd_launcher,
        "fwd+bwd fused": step,
        "fwd+bwd sdpa flash": sdpa_step(SDPBackend.FLASH_ATTENTION),
        "fwd+bwd sdpa cudnn": sdpa_step(SDPBackend.CUDNN_ATTENTION),
    }
    rows = []
    profiles = io.StringIO()
    for cache in ("1", "0"):
        os.environ["KERNELS_LAUNCH_CACHE"] = cache
        for name, fn in fns.items():
            if name.startswith("fwd+bwd sdpa") and cache == "0":
                continue
            rows.append(dict(name=name, cache=cache, gpu_ms=gpu_ms(fn), host_ms=host_ms(fn)))
            print(json.dumps(rows[-1]), flush=True)
        # The backward runs on autograd's device thread, out of cProfile's sight, unless
        # multithreading is off: then the whole step runs here.
        with torch.autograd.set_multithreading_enabled(False):
            single = host_ms(step)
            rows.append(dict(name="fwd+bwd, 1 thread", cache=cache, gpu_ms=0.0, host_ms=single))
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(200):
                step()
            prof.disable()
        torch.cuda.synchronize()
        profiles.write(f"\n=== fused fwd+bwd step x200, KERNELS_LAUNCH_CACHE={cache}\n")
        stats = pstats.Stats(prof, stream=profiles)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
    with open(os.path.join(args.out, "overhead_profile.txt"), "w") as f:
        f.write(profiles.getvalue())
    with open(os.path.join(args.out, "overhead.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\nB2 H4 T{t} D{d} fp16, {torch.cuda.get_device_name()}")
    print(f"{'what':22s} {'cache':>5s} {'gpu ms':>8s} {'host ms':>8s}")
    for r in rows:
        print(f"{r['name']:22s} {r['cache']:>5s} {r['gpu_ms']:8.3f} {r['host_ms']:8.3f}")


if __name__ == "__main__":
    main()
