"""Why do some fused rows of the suite move between runs: the autotuner, or the host?

Usage: python3 scripts/gpu_tuning_stability.py [--shapes ttt-d64,short-d64-causal]
                                              [--retunes 3 | --placement N] [--out DIR]

Why: on the H100 the suite's fused rows at two shapes moved by 30-45% between runs of
commits that did not touch the kernels (TTT D64 fwd+bwd 0.373-0.431 ms in two runs,
0.566-0.618 ms in two others; Short D64 causal 0.443 against 0.614 ms), while the
neighbouring shapes moved by < 3%.

Default mode, per shape and autotuned kernel (forward, dK/dV, dQ, grad-grad rows, columns):

1. ``--retunes`` fresh tunings (in-memory cache cleared, disk cache off): the config
   the autotuner picks per tuning key, with its own isolated timings of the candidates
   where this Triton reports them, then the suite's path timing with those picks
   (bench_suite.common.median_ms: CUDA events, cold L2).
2. Every candidate forced in turn for each key the kernel met (the others keep their
   picks): the path's ms, "in situ". A (kernel, key) is timed in the first path that
   launched it: forward, forward+backward, then the double backward.

``--placement N``: the same problem N times in fresh allocations (placement_study):
the paths, the training step with autograd's device thread off, the step's host time,
and the backward's kernels launched directly.

What it found (H100 80GB HBM3, triton 3.6, 2026-11-25, three calls): the autotuner made
the same picks in 3 of 3 tunings at TTT D64/D80 and Short D64 causal; the moving rows
are host time. At TTT D64 the kernels are steady to 1% over 6-8 placements (forward
0.100-0.102 ms, dQ + dK/dV 0.275-0.278 ms) and the step with autograd's device thread
off took 0.374-0.375 ms, while the step as the suite times it took 0.52-0.82 ms in one
call and 0.376-0.491 ms in another; its host time was 0.44-0.56 ms with the thread on,
0.21-0.33 ms with it off. The grad-grad step's host time, 1.35-1.71 ms, matched its
measured 1.38-1.76 ms. At TTT D80 (0.59 ms of GPU work) the step held at 0.584-0.591 ms.
So mode 1's "in situ" ranking is host noise at these shapes: the configs it ranked
first gave dQ + dK/dV 0.448 ms against the autotuner's 0.276.

Prints a table last; the full record goes to --out/tuning_stability.json ($OUT by default).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import triton
from gpu_step_probe import host_ms  # scripts/ is on sys.path when run as a script

from bench_suite import common
from kernels import forward as fwd
from kernels import fused_backward as fb
from kernels import fused_gradgrad as fg

SHAPES = {
    "ttt-d64": common.Config(1, 12, "1024/9216", 64, "bfloat16", "window8192"),
    "ttt-d80": common.Config(1, 12, "1024/9216", 80, "bfloat16", "window8192"),
    "short-d64": common.Config(4, 16, "2048", 64, "bfloat16", "none"),
    "short-d64-causal": common.Config(4, 16, "2048", 64, "bfloat16", "causal"),
    "short-d128-causal": common.Config(4, 16, "2048", 128, "bfloat16", "causal"),
    "seed": common.Config(2, 4, "2048", 128, "float16", "none"),
}

# name, the autotuned kernel, its cached launcher
TUNED = [
    ("forward", fwd._attention_forward_kernel, fwd._launch_forward),
    ("dkdv", fb._dkdv_kernel, fb._launch_dkdv_kernel),
    ("dq", fb._dq_kernel, fb._launch_dq),
    ("rows", fg._gradgrad_rows_kernel, fg._launch_rows),
    ("cols", fg._gradgrad_cols_kernel, fg._launch_cols),
]
LAUNCHERS = [launcher for _, _, launcher in TUNED]


def short(config) -> str:
    kw = config.kwargs
    return f"{kw['BLOCK_M']}x{kw['BLOCK_N']} w{config.num_warps} s{config.num_stages}"


def reset_tuning():
    """Forget every pick and every cached launch; tune afresh, never from disk."""
    for _, tuner, launcher in TUNED:
        tuner.cache.clear()
        tuner.cache_results = False
        launcher._entries.clear()


def forget_launches():
    for launcher in LAUNCHERS:
        launcher._entries.clear()


class TimingsListener:
    """Collects (kernel, key) -> {config: isolated ms} where Triton offers the listener."""

    def __init__(self):
        self.seen: list[dict] = []
        knobs = getattr(triton, "knobs", None)
        self.autotuning = getattr(knobs, "autotuning", None)
        self.available = self.autotuning is not None and hasattr(self.autotuning, "listener")

    def __enter__(self):
        if self.available:
            self.autotuning.listener = self
        return self

    def __exit__(self, *exc):
        if self.available:
            self.autotuning.listener = None

    def __call__(self, fn=None, key=None, best_config=None, configs_timings=None, **_):
        self.seen.append(
            {
                "kernel": fn.__name__,
                "key": str(key),
                "pick": short(best_config),
                "isolated_ms": {
                    short(c): round(t[0] if isinstance(t, (list, tuple)) else t, 5)
                    for c, t in (configs_timings or {}).items()
                },
            }
        )


def study(name, cfg, retunes, device="cuda"):
    inp = common.make_inputs(cfg, device)
    (_, attn), *_ = common.implementations("fused", cfg, device)

    def path_ms(path):
        return common.median_ms(lambda: common.run_path(path, attn, inp), device)

    out = {"shape": name, "config": cfg.label(), "tunings": [], "forced": []}
    first_path = {}  # (kernel, key) -> the first path that launched it: where it is timed
    for r in range(retunes):
        reset_tuning()
        with TimingsListener() as listener:
            for path in common.PATHS:
                common.run_path(path, attn, inp)
                for kname, tuner, _ in TUNED:
                    for key in tuner.cache:
                        first_path.setdefault((kname, key), path)
        picks = {
            kname: {str(k): short(c) for k, c in tuner.cache.items()} for kname, tuner, _ in TUNED
        }
        timed = {path: round(path_ms(path), 4) for path in common.PATHS}
        out["tunings"].append({"picks": picks, "path_ms": timed, "isolated": listener.seen})
        print(f"[{name}] tuning {r + 1}/{retunes}: {timed} {picks}", flush=True)

    # in situ: each candidate forced for each key, the other kernels on their last picks
    for kname, tuner, _ in TUNED:
        for key, pick in list(tuner.cache.items()):
            path = first_path[(kname, key)]
            for config in tuner.configs:
                tuner.cache[key] = config
                forget_launches()
                try:
                    common.run_path(path, attn, inp)
                    ms = round(path_ms(path), 4)
                except Exception as exc:  # a config that does not compile or run here
                    ms = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
                out["forced"].append(
                    {
                        "kernel": kname,
                        "key": str(key),
                        "config": short(config),
                        "path": path,
                        "ms": ms,
                        "picked": config is pick,
                    }
                )
            tuner.cache[key] = pick
            forget_launches()
        print(f"[{name}] forced every {kname} config", flush=True)
    return out


def time_step_and_kernels(cfg, attn, inp, device):
    """ms of the three paths; of the training step with autograd's device thread off; the
    host ms (perf_counter, one sync at the end) of the step, thread on and off, and of the
    double backward; of the fused backward (dQ + dK/dV) and of dK/dV alone."""
    out = {}
    for path in common.PATHS:
        out[path] = common.median_ms(lambda: common.run_path(path, attn, inp), device)  # noqa: B023

    def step():
        return common.run_path("backward", attn, inp)

    out["step_host"] = host_ms(step)
    out["gradgrad_host"] = host_ms(lambda: common.run_path("gradgrad", attn, inp), n=50)
    with torch.autograd.set_multithreading_enabled(False):
        out["step_1thread"] = common.median_ms(step, device)
        out["step_host_1thread"] = host_ms(step)
    q, k, v, do = (x.detach() for x in (inp.q, inp.k, inp.v, inp.do))
    scale, window = q.shape[-1] ** -0.5, cfg.window or 0
    o, lse = fwd.attention_forward(q, k, v, causal=cfg.causal, window=cfg.window, scale=scale)
    delta = (o.float() * do.float()).sum(-1)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    mask = {"is_causal": cfg.causal or cfg.window is not None, "window": window, "scale": scale}
    out["dq+dkdv"] = common.median_ms(
        lambda: fb.backward_of_validated(q, k, v, o, lse, do, **mask), device
    )
    out["dkdv"] = common.median_ms(
        lambda: fb._launch_dkdv(q, k, v, do, lse, delta, dk, dv, dv_only=False, **mask), device
    )
    return out


def placement_study(name, cfg, trials, device="cuda"):
    """The same problem in fresh allocations, ``trials`` times: what moves, and why?

    Each trial first allocates a pad of a different size, so the inputs and every
    buffer the step allocates land at other addresses; then time_step_and_kernels.
    """
    (_, attn), *_ = common.implementations("fused", cfg, device)
    inp = common.make_inputs(cfg, device)
    for path in common.PATHS:  # tune
        common.run_path(path, attn, inp)
    rows = []
    pads = []
    for trial in range(trials):
        pads.append(torch.empty((trial * 37 + 1) * 2**16, dtype=torch.uint8, device=device))
        inp = common.make_inputs(cfg, device)
        row = {"trial": trial, "q_ptr_mod_2mb": inp.q.data_ptr() % 2**21}
        row.update(time_step_and_kernels(cfg, attn, inp, device))
        rows.append(row)
        print(f"[{name}] placement {trial + 1}/{trials}: {row}", flush=True)
    return {"shape": name, "config": cfg.label(), "placements": rows}


PLACEMENT_COLUMNS = (
    *common.PATHS,
    "step_1thread",
    "step_host",
    "step_host_1thread",
    "gradgrad_host",
    "dq+dkdv",
    "dkdv",
)


def placement_table(studies):
    lines = []
    for s in studies:
        lines.append(f"== {s['shape']}: {s['config']}")
        lines.append(f"  {'ms over placements':20s} {'min':>7s} {'median':>7s} {'max':>7s}")
        for col in PLACEMENT_COLUMNS:
            vals = sorted(r[col] for r in s["placements"])
            lines.append(f"  {col:20s} {vals[0]:7.3f} {vals[len(vals) // 2]:7.3f} {vals[-1]:7.3f}")
    return "\n".join(lines)


def table(studies):
    lines = []
    for s in studies:
        lines.append(f"== {s['shape']}: {s['config']}")
        for i, t in enumerate(s["tunings"]):
            picks = "; ".join(
                f"{k}: {', '.join(sorted(set(v.values())))}" for k, v in t["picks"].items() if v
            )
            lines.append(f"  tuning {i + 1}: {t['path_ms']}  picks {picks}")
        rows: dict = {}
        for f in s["forced"]:
            rows.setdefault((f["kernel"], f["key"], f["path"]), []).append(f)
        for (kname, key, path), forced in rows.items():
            cells = []
            for f in forced:
                ms = f["ms"] if isinstance(f["ms"], str) else f"{f['ms']:.3f}"
                cells.append(f"{f['config']}={ms}{'*' if f['picked'] else ''}")
            lines.append(f"  {kname} {path} key {key}")
            lines.append("      " + "  ".join(cells))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="ttt-d64,short-d64-causal")
    parser.add_argument("--retunes", type=int, default=3)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument(
        "--placement",
        type=int,
        default=0,
        help="instead: N trials of each shape in fresh allocations (placement_study)",
    )
    args = parser.parse_args()
    names = args.shapes.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; choose from {sorted(SHAPES)}")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    start = time.time()
    studies = []
    record = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    for name in names:
        if args.placement:
            studies.append(placement_study(name, SHAPES[name], args.placement))
        else:
            studies.append(study(name, SHAPES[name], args.retunes))
        record["studies"] = studies
        Path(args.out, "tuning_stability.json").write_text(json.dumps(record, indent=1))
        print(f"[{name}] done at {time.time() - start:.0f} s", flush=True)
    print(f"{record['device']}, triton {record['triton']}; * = the autotuner's last pick")
    print(placement_table(studies) if args.placement else table(studies))


if __name__ == "__main__":
    main()
