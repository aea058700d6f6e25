"""Why is a fused training step slower on autograd's device thread than on the caller's?

Usage: python3 scripts/gpu_autograd_thread_probe.py [--out DIR]
At B2 H4 T2048 D128 fp16, 200 steps (forward + torch.autograd.grad) per mode, with
autograd multithreading on (the default: CUDA backward runs on a device thread) and off.
Times, per step: the whole step (host, no sync), the time from calling grad to entering
our backward, the backward body itself, and from leaving it to grad returning. The body
is cProfiled on whichever thread runs it; profiles go to --out/thread_profile.txt.
"""

import argparse
import cProfile
import importlib
import io
import json
import os
import pstats
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import kernels

# The module, not the function the package exports under the same name.
attention_module = importlib.import_module("kernels.attention")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    q, k, v, do = (
        torch.randn(2, 4, 2048, 128, device="cuda", dtype=torch.float16) for _ in range(4)
    )
    for x in (q, k, v):
        x.requires_grad_()
    original = attention_module._TritonAttention.backward
    marks = {}
    prof = {"p": None}

    def timed_backward(ctx, grad_out):
        marks["in"] = time.perf_counter()
        if prof["p"] is not None:
            prof["p"].enable()
        try:
            return original(ctx, grad_out)
        finally:
            if prof["p"] is not None:
                prof["p"].disable()
            marks["out"] = time.perf_counter()

    attention_module._TritonAttention.backward = staticmethod(timed_backward)

    def fused_step():
        out = kernels.attention(q, k, v, bwd_mode="fused")
        marks["call"] = time.perf_counter()
        grads = torch.autograd.grad(out, (q, k, v), do)
        marks["ret"] = time.perf_counter()
        return grads

    def flash_step():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return torch.autograd.grad(out, (q, k, v), do)

    rows, text = [], io.StringIO()
    for threaded in (True, False):
        with torch.autograd.set_multithreading_enabled(threaded):
            for name, fn in (("fused", fused_step), ("sdpa flash", flash_step)):
                for _ in range(20):
                    fn()
                torch.cuda.synchronize()
                parts = {"step": [], "to body": [], "body": [], "from body": []}
                for _ in range(200):
                    t0 = time.perf_counter()
                    fn()
                    parts["step"].append(time.perf_counter() - t0)
                    if name == "fused":
                        parts["to body"].append(marks["in"] - marks["call"])
                        parts["body"].append(marks["out"] - marks["in"])
                        parts["from body"].append(marks["ret"] - marks["out"])
                torch.cuda.synchronize()
                row = {"what": name, "threaded": threaded}
                row.update({k: statistics.median(v) * 1e3 for k, v in parts.items() if v})
                rows.append(row)
                print(json.dumps(row), flush=True)
            prof["p"] = cProfile.Profile()
            for _ in range(200):
                fused_step()
            torch.cuda.synchronize()
            text.write(f"\n=== backward body x200, multithreading={threaded}\n")
            pstats.Stats(prof["p"], stream=text).sort_stats("tottime").print_stats(20)
            prof["p"] = None
    with open(os.path.join(args.out, "thread_profile.txt"), "w") as f:
        f.write(text.getvalue())
    print(f"\nmedian ms per step, {torch.cuda.get_device_name()}")
    print(f"{'what':12s} {'threaded':>8s} {'step':>7s} {'to body':>8s} {'body':>7s} {'from':>7s}")
    for r in rows:
        print(
            f"{r['what']:12s} {str(r['threaded']):>8s} {r['step']:7.3f} "
            + " ".join(f"{r.get(k, float('nan')):7.3f}" for k in ("to body", "body", "from body"))
        )


if __name__ == "__main__":
    main()
