"""Autotuning for every kernel of this package: config tables, pruning, keys, switches.

forward.py, fused_backward.py and fused_gradgrad.py decorate their kernels with
``tuned(CONFIGS, KEY, prune)`` from here and nothing else, so the tuning rules live
in one place:

- ``autotune_configs``: the interpreter gets ONE small config; ``KERNELS_AUTOTUNE=0``
  keeps the first candidate of each table (the measured-good default); otherwise all.
- Config tables, one per kernel: ``FORWARD_CONFIGS``, ``DKDV_CONFIGS``, ``DQ_CONFIGS``,
  ``GRADGRAD_ROWS_CONFIGS``, ``GRADGRAD_COLS_CONFIGS``.
- Pruning: ``prune_forward_configs`` (shared memory, warps), ``prune_by_head_dim``
  (the largest BLOCK_D each backward / grad-grad tile is timed at).
- Compilation: every candidate of a new tuning key compiles in parallel threads before
  the autotuner times them (``tuned``, kernels/_compile_ahead.py).
- Keys: ``TUNING_KEY`` (head dim, bucketed lengths, mask flags) plus BLOCK_DT, the
  head-dim tail (``head_dim_split``): ``FORWARD_KEY``, ``DQ_KEY``, ``DKDV_KEY``,
  ``GRADGRAD_KEY``; ``length_bucket`` makes the bucketed lengths.

The tables come from timings on the H200 (docs/probes.md); scripts/sm90_resources.py
prints registers and spills per tile (compiled for sm_90 without a GPU), which is how
the earlier tables were chosen.
"""

from __future__ import annotations

import inspect
import os

import triton

from ._compile_ahead import compile_ahead
from ._triton_common import (
    block_d,
    head_dim_split,
    head_dim_tiles,
    interpreter_active,
    next_power_of_2,
)

__all__ = [
    "AUTOTUNE_DISK_CACHE",
    "DKDV_CONFIGS",
    "DKDV_KEY",
    "DQ_CONFIGS",
    "DQ_KEY",
    "FORWARD_CONFIGS",
    "FORWARD_KEY",
    "GRADGRAD_COLS_CONFIGS",
    "GRADGRAD_KEY",
    "GRADGRAD_ROWS_CONFIGS",
    "TUNING_KEY",
    "autotune_configs",
    "block_d",
    "configs_from_table",
    "head_dim_split",
    "head_dim_tiles",
    "length_bucket",
    "prune_by_head_dim",
    "prune_forward_configs",
    "tile_width",
    "tuned",
]


def autotune_configs(candidates, interpreter_config):
    """The config list every kernel's ``triton.autotune`` gets.

    - Under the interpreter: ``interpreter_config`` alone (several configs fail
      there with "0 active drivers", docs/design.md trap 3).
    - With ``KERNELS_AUTOTUNE=0``: the first candidate alone, the measured-good
      default. GPU test runs set it: every new (D, T bucket, mask) key would
      otherwise compile and time every candidate; on the H100 that made the
      kernel test suite spend minutes in autotuning.
    - Otherwise all candidates (benchmarks, users).
    """
    if interpreter_active():
        return [interpreter_config]
    if os.environ.get("KERNELS_AUTOTUNE", "1") == "0":
        return list(candidates[:1])
    return list(candidates)


# Autotune results kept on disk (triton >= 3.2; keyed by kernel source, tuning key and
# configs): asv measures each preset in its own process, and without this every process
# re-timed every candidate of every kernel for every shape key it met.
AUTOTUNE_DISK_CACHE = (
    {"cache_results": True}
    if "cache_results" in inspect.signature(triton.autotune).parameters
    else {}
)


def length_bucket(t: int) -> int:
    """Autotune key for a sequence length: the next power of two (>= 16).

    T=1000 and T=1024 then share one tuning; a new bucket re-tunes.
    """
    return next_power_of_2(max(int(t), 16))


# Every kernel keys on the head dim, the bucketed lengths, the mask flags and BLOCK_DT:
# it follows from HEAD_DIM (``head_dim_split``) except in the A/B probes that run D=80
# padded (each kernel module's _SPLIT_HEAD_DIM), which must not share the split tiles'
# tuning. The backward's dK/dV kernel also keys on DV_ONLY, the grad-grad kernels on which
# cotangents exist.
TUNING_KEY = ["HEAD_DIM", "T_Q_BUCKET", "T_K_BUCKET", "IS_CAUSAL", "HAS_WINDOW"]
FORWARD_KEY = TUNING_KEY + ["BLOCK_DT"]
DQ_KEY = TUNING_KEY + ["BLOCK_DT"]
DKDV_KEY = TUNING_KEY + ["DV_ONLY", "BLOCK_DT"]
GRADGRAD_KEY = TUNING_KEY + ["HAS_GDQ", "HAS_GDK", "HAS_GDV", "BLOCK_DT"]


def tuned(configs, key, prune):
    """``triton.autotune`` with ``prune`` as early_config_prune and the disk cache, whose
    candidates compile in parallel before they are timed (kernels/_compile_ahead.py)."""
    autotune = triton.autotune(
        configs=configs,
        key=key,
        prune_configs_by={"early_config_prune": prune},
        **AUTOTUNE_DISK_CACHE,
    )
    return lambda fn: compile_ahead(autotune(fn))


# ---------------------------------------------------------------------------
# forward

# Candidates measured on the H100 (docs/probes.md, gpu_forward_check, 2026-11-25): (64, 64,
# 4 warps, 3 stages) won at D=128 T=4096-8192 and D=64 causal; (128, 64, 4, 4) at D=64
# T=4096. (128, 128, 8, 3) added from the H200 sweep (docs/probes.md, forward variants,
# 2026-12-01): the fastest at D=128, e.g. 1.180 ms vs 1.250 ms at B1 H8 T16384 causal.
# The first is the default when autotuning is off.
_FORWARD_CANDIDATES = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
    for bm, bn, w, st in [
        (64, 64, 4, 3),
        (128, 64, 4, 4),
        (128, 64, 4, 3),
        (128, 64, 8, 3),
        (128, 128, 8, 2),
        (128, 128, 8, 3),
        (64, 128, 4, 2),
        (64, 32, 4, 4),
    ]
]


def _forward_configs():
    # The interpreter's single config uses small tiles so CPU tests stay quick.
    interp = triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)
    return autotune_configs(_FORWARD_CANDIDATES, interp)


FORWARD_CONFIGS = _forward_configs()


def prune_forward_configs(configs, named_args, **kwargs):
    """Drop forward tiles that cannot be fast or do not fit.

    Shared memory ~ Q tile + stages * (BLOCK_N * BLOCK_D) * 2 tensors * 2 bytes; a
    128x128 K/V tile pair at D=128 is 64 KiB a stage: 3 stages and the Q tile are
    224 KiB, inside Hopper's 227 KiB a block (and the fastest D=128 tile on the H200),
    4 stages are not. 8 warps only pay off on 128-row tiles.
    """
    bd = tile_width(named_args, kwargs)
    kept = []
    for c in configs:
        bm, bn = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]
        smem = (bm * bd + c.num_stages * 2 * bn * bd) * 2
        if smem > 227 * 1024:
            continue
        if c.num_warps == 8 and bm < 128:
            continue
        kept.append(c)
    return kept or configs[:1]


# ---------------------------------------------------------------------------
# backward and grad-grad

# id(triton.Config) -> the largest BLOCK_D its tiles fit (the configs live as long as the module)
_MAX_BLOCK_D: dict[int, int] = {}


def configs_from_table(shapes):
    """triton.Configs from (BLOCK_M, BLOCK_N, num_warps, num_stages, max BLOCK_D) tuples.

    Through ``autotune_configs``: under the interpreter ONE config of 16x16 tiles; with
    KERNELS_AUTOTUNE=0 the first tuple, which fits every D. ``max BLOCK_D``: the largest
    BLOCK_D the tile is timed at (``prune_by_head_dim``).
    """
    candidates = []
    for m, n, w, s, max_bd in shapes:
        config = triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        _MAX_BLOCK_D[id(config)] = max_bd
        candidates.append(config)
    interp = triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)
    return autotune_configs(candidates, interp)


def tile_width(named_args, kwargs) -> int:
    """Head-dim columns a launch's tiles hold: BLOCK_D, plus the tail BLOCK_DT of a split
    head dim (``head_dim_split``: D=80 is 64 + 16 = 80, D=96 64 + 32 = 96)."""

    def arg(name, default):
        return kwargs.get(name, named_args.get(name, default))

    return arg("BLOCK_D", 128) + arg("BLOCK_DT", 0)


def prune_by_head_dim(configs, named_args, **kwargs):
    """early_config_prune: keep the configs whose max BLOCK_D covers this tile width.

    A table entry's max BLOCK_D is the largest head-dim tile it is worth timing at: on
    the H200 the 64 x 64 grad-grad tiles win at D=64 and lose by 1.4-2x at BLOCK_D=128
    (docs/probes.md), and every candidate costs a compile (~11 s for a grad-grad kernel)
    per tuning key on a cold machine, so a loser is not tried where it loses. The width
    is main + tail (``tile_width``): a split D=80 holds 80 columns of registers per row,
    more than the 64-only tiles were timed at, so it keeps the tiles that fit 128.
    """
    width = tile_width(named_args, kwargs)
    kept = [c for c in configs if _MAX_BLOCK_D.get(id(c), 128) >= width]
    return kept or configs[:1]


# dK/dV: a program holds K, V and the fp32 dK, dV for BLOCK_N keys and streams Q, dO
# tiles of BLOCK_M rows; score tiles are (BLOCK_N, BLOCK_M), so BLOCK_N >= 64 keeps wgmma.
# Timed on the H200 (docs/probes.md, backward tiles, 2026-12-01), dK/dV kernel ms at B1 H8
# T16384 D128 causal / B4 H16 T4096 D64 causal / TTT D64: 32 x 64 / 4 warps / 3 stages
# 2.20 / 0.68 / 0.14; 64 x 64 / 4 / 2 1.97 / 0.70 / 0.14; 64 x 128 / 8 / 3 2.06 / 0.83 /
# 0.17. Dropped: 32 x 128 / 8 / 2 (2.46 / 1.06 / 0.21), 64 x 64 / 8 warps (5.32 at D128).
# Split D80 / D96 (80 / 96 columns, tile_width) keep every backward tile (all fit 128);
# the backward / forward split is not yet timed on a GPU (docs/probes.md).
DKDV_CONFIGS = configs_from_table([(32, 64, 4, 3, 128), (64, 64, 4, 2, 128), (64, 128, 8, 3, 128)])
# dQ: holds Q, dO and the fp32 dQ for BLOCK_M rows, streams K, V; BLOCK_M >= 64 for wgmma.
# dQ kernel ms, same shapes: 128 x 64 / 8 / 3 1.59 / 0.43 / 0.13 (the fastest or within 13%
# everywhere, so the default); 64 x 64 / 4 / 2 1.67 / 0.44 / 0.16; 64 x 64 / 4 / 3 1.87 /
# 0.43 / 0.11; 64 x 32 / 4 / 3 1.72 / 0.45 / 0.14. Dropped: 128 x 32 / 8 / 2 (2.42 / 0.63
# / 0.28), 128 x 64 / 8 / 2 (1.74 / 0.48 / 0.20).
DQ_CONFIGS = configs_from_table(
    [(128, 64, 8, 3, 128), (64, 64, 4, 2, 128), (64, 64, 4, 3, 128), (64, 32, 4, 3, 128)]
)
# Grad-grad tables: timed on the H200 (docs/probes.md, grad-grad tiles, 2026-12-01) at B1 H8
# T8192 D128 causal and the TTT chunk (1024 queries over 9216 keys, window 8192) at D64/80/96,
# eight tiles per kernel; the four kept each win or place second somewhere. The first of each
# fits every D (the default with KERNELS_AUTOTUNE=0). The D80 / D96 timings were taken with
# BLOCK_D=128 (padded); split, D80 / D96 hold 80 / 96 columns (tile_width), still above the
# 64-only tiles' limit, so they tune over the same three tiles a table as before: those fit
# 128 columns, so they fit 80 and 96. Whether a 64-only tile now wins at 80 is unmeasured.
# Register spills (scripts/sm90_resources.py) did not predict the order: 64 x 32 / 4 warps
# spills at D=128 and is still the fastest rows tile there.
# Grad-grad rows: holds Q, dO, u and the fp32 grad Q, grad dO for BLOCK_M rows, streams
# K, V, w, z; up to seven (BLOCK_M, BLOCK_N) fp32 tiles live in loop 2. Rows kernel ms
# (D128 / TTT D64 / TTT D80): 128 x 32 / 8 warps / 3 stages 2.39 / 0.56 / 0.92;
# 64 x 32 / 4 / 2 2.13 / 0.62 / 0.96; 128 x 64 / 8 / 2 2.24 / 0.56 / 0.94; 64 x 64 / 4 / 2
# 2.97 / 0.46 / 1.38 (kept for D<=64 only). Dropped: 64 x 32 / 8 warps (7.96 ms at D128),
# 32 x 64 / 8 (5.78), 128 x 32 / 8 / 2 stages (2.46, the old default).
GRADGRAD_ROWS_CONFIGS = configs_from_table(
    [(128, 32, 8, 3, 128), (64, 32, 4, 2, 128), (128, 64, 8, 2, 128), (64, 64, 4, 2, 64)]
)
# Grad-grad columns: holds K, V, w, z and the fp32 grad K, grad V for BLOCK_N keys, streams
# Q, dO, u. Cols kernel ms (D128 / TTT D64 / TTT D80): 32 x 128 / 8 / 3 1.38 / 0.32 / 0.50;
# 64 x 64 / 4 / 2 2.79 / 0.25 / 1.15; 64 x 128 / 8 / 2 1.87 / 0.28 / 0.64; 32 x 64 / 4 / 2
# 1.54 / 0.29 / 0.57. Dropped: 64 x 32 / 8 warps (3.16 at D128), 32 x 64 / 8 (4.77).
GRADGRAD_COLS_CONFIGS = configs_from_table(
    [(32, 128, 8, 3, 128), (64, 64, 4, 2, 64), (64, 128, 8, 2, 64), (32, 64, 4, 2, 128)]
)
