"""Where the host time of a fused training step goes, at the seed shape (B2 H4 T2048 D128).

Usage: python3 scripts/gpu_host_profile.py [--out DIR]

A step at the seed shape is bound by host time (scripts/gpu_step_probe.py), so this
measures the host side only:

0. The step's host time with each launch mode of kernels/_launch.py (direct, Triton's
   compiled runner, no cache), autograd's device thread on and off.
1. cProfile of 500 steps (forward + autograd.grad) with autograd's device thread off,
   so the backward runs on the profiled thread. Top functions by own time go to
   ``--out/host_profile.txt``.
2. perf_counter micro-timings (microseconds per call, best of 5 x 2000 calls) of the
   pieces of one cached launch: the whole ``CachedLauncher`` call (runner and direct),
   its key alone, the compiled-kernel runner alone, Triton's current-stream lookup; and
   the backward's allocations, four separate or dQ/dK/dV in one. The launch rows issue
   2000 launches back to back with no sync, so they may measure the GPU's launch queue
   rather than the host (direct and runner both came out at ~26 us on the H100 while
   the step rows differ by 56-170 us): trust the step rows for the A/B.
3. What Triton 3.x's generated C launcher does per pointer argument (the lines of the
   nvidia driver that mention ``cuPointerGetAttribute``), for the record.
"""

import argparse
import cProfile
import inspect
import io
import json
import os
import pstats

import torch
from gpu_step_probe import host_ms, seed_inputs  # scripts/ is on sys.path when run as a script

import kernels
import kernels.forward
from kernels import fused_backward as fb
from kernels._triton_common import block_d, ceil_div, length_bucket
from kernels.forward import attention_forward


def us_per_call(fn, n=2000, reps=5):
    """Best of ``reps`` runs of gpu_step_probe.host_ms, in microseconds."""
    return min(host_ms(fn, n) for _ in range(reps)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    q, k, v, do = seed_inputs()

    def step():
        out = kernels.attention(q, k, v, bwd_mode="fused")
        return torch.autograd.grad(out, (q, k, v), do)

    rows = {}
    for mode in ("1", "runner", "0"):  # kernels/_launch.py: direct, Triton's runner, no cache
        os.environ["KERNELS_LAUNCH_CACHE"] = mode
        for threaded in (False, True):
            with torch.autograd.set_multithreading_enabled(threaded):
                for _ in range(20):
                    step()
                torch.cuda.synchronize()
                label = f"step, cache={mode}, " + ("threaded" if threaded else "single-thread")
                rows[label] = us_per_call(step, n=300, reps=3)
    os.environ["KERNELS_LAUNCH_CACHE"] = "1"
    with torch.autograd.set_multithreading_enabled(False):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(500):
            step()
        prof.disable()
        torch.cuda.synchronize()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(35)
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(35)

    # The dQ launch of the backward, with the arguments the backward passes.
    scale = 128**-0.5
    with torch.no_grad():
        o, lse = attention_forward(q, k, v, causal=False, window=None, scale=scale)
    delta = torch.empty((2, 4, 2048), device="cuda", dtype=torch.float32)
    dq = torch.empty_like(q)
    tensors = (q, k, v, do, o, lse, delta, dq)
    scalars = (
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *o.stride(), *dq.stride(),
        4, 2048, 2048, 0, scale, length_bucket(2048), length_bucket(2048),
    )  # fmt: skip
    constexprs = dict(
        HEAD_DIM=128, BLOCK_D=block_d(128), IS_CAUSAL=False, HAS_WINDOW=False, DOT_FP32=False
    )

    def grid(meta):
        return (ceil_div(2048, meta["BLOCK_M"]), 8)

    launcher = fb._launch_dq

    def launch():
        launcher(grid, *tensors, *scalars, **constexprs)

    for mode in ("runner", "1"):
        os.environ["KERNELS_LAUNCH_CACHE"] = mode
        launch()
        rows[f"dq launch, cache={mode}"] = us_per_call(launch)
    rows["dq direct launches"] = launcher.direct_launches

    def key():
        return (
            tuple([(t.dtype, t.data_ptr() % 16 == 0, t.shape) for t in tensors]),
            scalars,
            tuple(constexprs.items()),
            q.device.index,
        )

    rows["cache key alone"] = us_per_call(key)
    runner, tail, _direct = launcher._entries[key()]
    args_all = (*tensors, *scalars, *tail)
    rows["compiled runner alone"] = us_per_call(lambda: runner(*args_all))
    from triton.runtime import driver

    dev = driver.active.get_current_device()
    rows["triton current device+stream"] = us_per_call(
        lambda: driver.active.get_current_stream(driver.active.get_current_device())
    )
    rows["torch.empty (seed q)"] = us_per_call(
        lambda: torch.empty(q.shape, device=q.device, dtype=q.dtype)
    )
    rows["4 x torch.empty (dq, dk, dv, delta)"] = us_per_call(
        lambda: (
            [torch.empty(q.shape, device=q.device, dtype=q.dtype) for _ in range(3)],
            torch.empty((2, 4, 2048), device=q.device, dtype=torch.float32),
        )
    )
    rows["1 x torch.empty (3, *q.shape) + unbind, + delta"] = us_per_call(
        lambda: (
            torch.empty((3, *q.shape), device=q.device, dtype=q.dtype).unbind(0),
            torch.empty((2, 4, 2048), device=q.device, dtype=torch.float32),
        )
    )
    rows["3 x torch.empty_like(q)"] = us_per_call(lambda: [torch.empty_like(q) for _ in range(3)])
    rows["8 x t.data_ptr()"] = us_per_call(lambda: [t.data_ptr() for t in tensors])
    with torch.autograd.set_multithreading_enabled(False):
        rows["forward only (no grad graph)"] = us_per_call(
            lambda: kernels.attention(q.detach(), k.detach(), v.detach(), bwd_mode="fused"),
            n=500,
        )
    rows["direct launches: forward, dQ, dK/dV"] = [
        x.direct_launches
        for x in (kernels.forward._launch_forward, fb._launch_dq, fb._launch_dkdv_kernel)
    ]
    print(f"device {dev}: {torch.cuda.get_device_name()}")

    try:
        from triton.backends.nvidia import driver as nv_driver

        src = inspect.getsource(nv_driver)
        lines = src.splitlines()
        hits = [i for i, line in enumerate(lines) if "cuPointerGetAttribute" in line]
        ctx = "\n".join("\n".join(lines[max(0, i - 6) : i + 6]) + "\n---" for i in hits[:3])
    except Exception as exc:  # noqa: BLE001 - a record, not a check
        ctx = f"(no nvidia driver source: {exc})"
    try:
        import cuda.bindings.driver  # noqa: F401

        has_cuda_bindings = True
    except ImportError:
        has_cuda_bindings = False

    with open(os.path.join(args.out, "host_profile.txt"), "w") as f:
        f.write(json.dumps(rows, indent=1) + "\n\n")
        f.write(f"cuda.bindings importable: {has_cuda_bindings}\n\n")
        f.write("nvidia launcher, per-pointer lines:\n" + ctx + "\n\n")
        f.write(text.getvalue())
    print(f"\nhost microseconds per call on {torch.cuda.get_device_name()}")
    for name, us in rows.items():
        print(f"{name:48s} {us}")


if __name__ == "__main__":
    main()
