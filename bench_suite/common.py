"""One source of truth for the asv suite: presets, inputs, FLOPs, parity, timers, memory.

How a preset is measured (why it looks like this)
--------------------------------------------------
asv runs every benchmark *and every parameter combination* in a fresh process.
Measuring in those processes would pay torch/CUDA start-up and Triton compilation
hundreds of times (DESIGN.md trap 10). So each asv class (one preset x one path)
measures all of its combinations once, in its ``setup_cache`` process
(:func:`measure_preset`): inputs, fp64 reference, parity gate, first call
(compile / autotune), memory, timing. It returns a dict keyed by the asv
parameter tuple. ``setup`` then raises ``NotImplementedError`` for skipped
combinations (asv records "skipped") and the ``track_*`` methods are one-line
lookups run in cheap forks (``--launch-method forkserver``; this module imports
only the standard library at import time, torch is imported inside functions).

Rules every measurement follows
-------------------------------
- Parity gate first: for each output of the path, the implementation's max
  error against a float64 reference is divided by the same-dtype math path's
  error (plus a small floor). Above :data:`PARITY_LIMIT` the combination is
  recorded as FAILED: ``track_ms``/``track_tflops``/``track_peak_mib`` raise,
  ``track_parity`` returns the ratio (the evidence). It is never timed.
- The references are computed in query-row chunks (:func:`reference_outputs`):
  exact for the whole timed problem, in O(chunk x Tk) memory, so a fp64
  reference exists even at T = 32768 where the plain math path needs > 80 GB.
- GPU time: median over CUDA-event-timed iterations with an L2 flush before each
  (the method of ``triton.testing.do_bench``). CPU time: ``time.perf_counter``
  median, which is CPU wall-clock and labelled so.
- Host time (GPU only, ``track_host_ms``): ``time.perf_counter`` around each of the
  first timed calls, no sync (:func:`step_timing`). A row whose host ms reaches its
  ms is bound by Python and launches, and moves with the host.
- Peak memory: ``torch.cuda.max_memory_allocated`` during one call, minus what
  was allocated before it (the inputs). CPU has no such counter: skipped there.
- Combinations that cannot run (mode not landed, out of memory, no CUDA) are
  skipped, never failed; any other exception is a failure.
"""

from __future__ import annotations

import abc
import dataclasses
import gc
import itertools
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: see the module docstring
    import torch

# --------------------------------------------------------------------------------------
# Parameters, presets, grids
# --------------------------------------------------------------------------------------

PARAM_NAMES = ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]
PATHS = ("forward", "backward", "gradgrad")
KERNEL_MODES = ("recompute", "save_p", "dv_only", "fused")
# "sdpa": PyTorch's fastest fused backend that passes parity, per combination (cuDNN on
# the H100 where it takes the problem): what a user gets at best. "flash": SDPA pinned to
# its FlashAttention-2 backend, the fixed yardstick the fused-backward targets are set
# against (issue 6); it refuses explicit masks (the TTT window), which skips.
BASELINE_MODES = ("math", "sdpa", "flash", "compiled")
ALL_MODES = BASELINE_MODES + KERNEL_MODES
GPU_MODES = ("math", "sdpa", "flash") + KERNEL_MODES
DTYPES = ("float16", "bfloat16", "float32")

# Modes left out of the grad-grad path, with the reason (measured on the lent H100,
# ../shared/anchors/README.md): asking for them costs a process and says nothing new.
NO_DOUBLE_BACKWARD = {
    "sdpa": "SDPA flash/efficient/cuDNN: derivative of *_attention_backward is not implemented",
    "flash": "SDPA flash: derivative of _scaled_dot_product_flash_attention_backward missing",
    "compiled": "torch.compile'd math: double backward through compiled autograd is refused",
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A grid of configurations: the Cartesian product of the axes (asv params are a product)."""

    name: str
    class_name: str  # the asv class in every bench_*.py file
    device: str  # "cuda" or "cpu"
    B: tuple[int, ...]
    H: tuple[int, ...]
    T: tuple[str, ...]  # "2048" (square) or "1024/9216" (Tq/Tk)
    D: tuple[int, ...]
    dtype: tuple[str, ...]
    mask: tuple[str, ...]  # "none", "causal", "window<N>"
    modes: tuple[str, ...]

    def modes_for(self, path: str) -> tuple[str, ...]:
        _check_path(path)
        if path == "gradgrad":
            return tuple(m for m in self.modes if m not in NO_DOUBLE_BACKWARD)
        return self.modes

    def configs(self) -> list[Config]:
        return [
            Config(*values)
            for values in itertools.product(self.B, self.H, self.T, self.D, self.dtype, self.mask)
        ]


PRESETS: dict[str, Preset] = {
    # The seed's headline shape (anchors: math fwd 0.392 ms, cuDNN 0.036 ms on the H100).
    "seed": Preset(
        "seed", "Seed", "cuda", B=(2,), H=(4,), T=("2048",), D=(128,),
        dtype=("float16",), mask=("none",), modes=GPU_MODES,
    ),
    # TTT-E2E inner step: a 1024-query chunk over 9216 keys, window 8192, head dims of
    # the 125M..3B models (arXiv 2512.23675).
    "ttt": Preset(
        "ttt", "TTT", "cuda", B=(1,), H=(12,), T=("1024/9216",), D=(64, 80, 96),
        dtype=("bfloat16",), mask=("window8192",), modes=GPU_MODES,
    ),
    # Long context: math grad-grad needs > 80 GB from T = 16384 and fwd+bwd from 32768
    # (anchors); those combinations skip on out-of-memory, the kernels are what is left.
    "long": Preset(
        "long", "Long", "cuda", B=(1,), H=(8,), T=("8192", "16384", "32768"), D=(128,),
        dtype=("bfloat16",), mask=("causal",), modes=GPU_MODES,
    ),
    # A modest general grid; B4 H16 T4096 D64 causal is an anchor shape (math grad-grad
    # 128 ms, 47 GB), the largest here. T=2048 was dropped: with it the preset took over
    # 180 s of a cold H100 run (fp64 parity references and compiles); Short measures the
    # T=2048 shapes of this grid, for the fused mode and its yardsticks only.
    "grid": Preset(
        "grid", "Grid", "cuda", B=(4,), H=(16,), T=("4096",), D=(64, 128),
        dtype=("bfloat16",), mask=("none", "causal"), modes=GPU_MODES,
    ),
    # Issue 6's target, fused forward+backward >= 1.0x SDPA flash for T >= 2048, D 64/128,
    # causal and not, bf16, at its smallest T (Grid covers T=4096, Long causal D128 from
    # 8192; the Seed preset is fp16 B2 H4 D128 unmasked and does not cover it). Only the
    # fused mode and its two SDPA yardsticks, so the preset stays cheap; grad-grad keeps
    # only fused (SDPA has no double backward: NO_DOUBLE_BACKWARD).
    "short": Preset(
        "short", "Short", "cuda", B=(4,), H=(16,), T=("2048",), D=(64, 128),
        dtype=("bfloat16",), mask=("none", "causal"), modes=("sdpa", "flash", "fused"),
    ),
    # Runs anywhere in well under a minute; Triton is excluded from timing on CPU (the
    # interpreter is no speed), so the baselines are eager and torch.compile'd math.
    "cpu": Preset(
        "cpu", "CPU", "cpu", B=(1,), H=(2,), T=("128", "256"), D=(64,),
        dtype=("float32",), mask=("none", "causal"), modes=("math", "compiled"),
    ),
}  # fmt: skip

# Which presets `make bench` runs on which hardware (runner/asv_run.py selects classes).
GRIDS: dict[str, tuple[str, ...]] = {
    "gpu": ("seed", "ttt", "long", "grid", "short"),
    "cpu": ("cpu",),
}


def preset_configs(preset: str) -> list[Config]:
    """The configurations of a preset (without the bwd_mode axis)."""
    return get_preset(preset).configs()


def get_preset(preset: str) -> Preset:
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}") from None


def asv_params(preset: str, path: str) -> list[list]:
    """asv ``params`` for one preset and path, in the order of :data:`PARAM_NAMES`."""
    p = get_preset(preset)
    axes = (p.B, p.H, p.T, p.D, p.dtype, p.mask, p.modes_for(path))
    return [list(axis) for axis in axes]


def _check_path(path: str) -> None:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")


def parse_t(t: str) -> tuple[int, int]:
    """``"2048"`` -> (2048, 2048); ``"1024/9216"`` -> (1024, 9216)."""
    parts = str(t).split("/")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"T must look like '2048' or '1024/9216', got {t!r}")
    tq, tk = int(parts[0]), int(parts[-1])
    if tq < 1 or tk < 1:
        raise ValueError(f"T must be positive, got {t!r}")
    return tq, tk


def parse_mask(mask: str) -> tuple[bool, int | None]:
    """``"none"``: (False, None); ``"causal"``: (True, None); ``"window8192"``: (True, 8192)."""
    if mask == "none":
        return False, None
    if mask == "causal":
        return True, None
    if mask.startswith("window") and mask[len("window") :].isdigit():
        window = int(mask[len("window") :])
        if window >= 1:
            return True, window  # a window only ever looks back: always causal
    raise ValueError(f"mask must be 'none', 'causal' or 'window<N>' (N >= 1), got {mask!r}")


def mask_name(causal: bool, window: int | None) -> str:
    if window is not None:
        return f"window{window}"
    return "causal" if causal else "none"


def t_name(tq: int, tk: int) -> str:
    return str(tq) if tq == tk else f"{tq}/{tk}"


@dataclasses.dataclass(frozen=True)
class Config:
    """One attention problem; field order and values are those of the asv params."""

    B: int
    H: int
    T: str
    D: int
    dtype: str
    mask: str

    def __post_init__(self):
        tq, tk = parse_t(self.T)
        causal, _ = parse_mask(self.mask)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if causal and tq > tk:
            raise ValueError(f"masked attention needs Tq <= Tk, got T={self.T!r}")

    @property
    def tq(self) -> int:
        return parse_t(self.T)[0]

    @property
    def tk(self) -> int:
        return parse_t(self.T)[1]

    @property
    def causal(self) -> bool:
        return parse_mask(self.mask)[0]

    @property
    def window(self) -> int | None:
        return parse_mask(self.mask)[1]

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    def label(self) -> str:
        return f"B{self.B} H{self.H} T{self.T} D{self.D} {self.dtype} {self.mask}"


# --------------------------------------------------------------------------------------
# FLOP model
# --------------------------------------------------------------------------------------

# Matmuls of 2*Tq*Tk*D FLOPs each (per batch and head, on visible pairs), per stage: the
# convention of kernels/GRADGRAD.md ("FLOP model"). Forward: S = QK^T, O = PV. Backward:
# 5, the FA2 count (S, dP = dO V^T, dV, dQ, dK), i.e. 2.5x the forward (FA3 paper 4.1;
# the fused kernel executes 7, paying 2 for determinism). Double backward: 21,
# what the fused kernel executes with all three cotangents (gradgrad_matmul_count(): rows
# pass 5, rows pass 8, columns pass 8; ../shared/notes/gradgrad_math.md estimated ~19).
# Every mode is credited the same FLOPs, so TFLOP/s ranks like 1/ms within a config.
MATMULS_FORWARD = 2
MATMULS_BACKWARD = 5
MATMULS_DOUBLE_BACKWARD = 21
MATMULS_PER_PATH = {
    "forward": MATMULS_FORWARD,
    "backward": MATMULS_FORWARD + MATMULS_BACKWARD,  # 7 = 3.5x forward
    "gradgrad": MATMULS_FORWARD + MATMULS_BACKWARD + MATMULS_DOUBLE_BACKWARD,  # 28 = 14x
}


def _sum_range(lo: int, hi: int) -> int:
    """lo + (lo+1) + ... + hi, 0 when hi < lo."""
    return (lo + hi) * (hi - lo + 1) // 2 if hi >= lo else 0


def visible_pairs(tq: int, tk: int, mask: str) -> int:
    """Number of (query, key) pairs the mask lets through, in closed form.

    Queries are the last Tq of Tk positions (bottom-right): query i sits at position
    p = i + Tk - Tq and sees m = p + 1 keys when causal, min(window, m) with a window.
    m runs over Tk - Tq + 1 .. Tk.
    """
    causal, window = parse_mask(mask)
    if not causal:
        return tq * tk
    first, last = tk - tq + 1, tk
    if window is None or window >= last:
        return _sum_range(first, last)
    # rows with m < window see m keys, the rest see window keys
    return _sum_range(first, min(last, window - 1)) + window * (last - max(first, window) + 1)


def flops(path: str, B: int, H: int, Tq: int, Tk: int, D: int, mask: str) -> float:
    """FLOPs of one call of ``path``, counting only visible (query, key) pairs.

    forward = 4*B*H*Tq*Tk*D * visible fraction (square causal: (T+1)/(2T));
    backward path = forward + backward = 3.5x forward; grad-grad path = 14x forward.
    """
    _check_path(path)
    return 2.0 * MATMULS_PER_PATH[path] * B * H * visible_pairs(Tq, Tk, mask) * D


def config_flops(path: str, cfg: Config) -> float:
    return flops(path, cfg.B, cfg.H, cfg.tq, cfg.tk, cfg.D, cfg.mask)


# --------------------------------------------------------------------------------------
# Inputs and paths
# --------------------------------------------------------------------------------------

OUTPUT_NAMES = {
    "forward": ("o",),
    "backward": ("dq", "dk", "dv"),
    "gradgrad": ("grad_q", "grad_k", "grad_v"),
}


@dataclasses.dataclass
class Inputs:
    """q, k, v (leaves that require grad), the output cotangent dO, and the fixed
    random r = (r_q, r_k, r_v) of the grad-grad loss L = sum_i <g_i, r_i>."""

    q: Any
    k: Any
    v: Any
    do: Any
    r: tuple


def make_inputs(cfg: Config, device, *, seed: int = 0) -> Inputs:
    """Seeded standard-normal inputs (never zeros: a zero dO or r hides whole terms)."""
    import torch

    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    B, H, D, tq, tk, dt = cfg.B, cfg.H, cfg.D, cfg.tq, cfg.tk, cfg.torch_dtype

    def normal(t, requires_grad=False):
        x = torch.randn(B, H, t, D, generator=gen, device=device, dtype=torch.float32)
        return x.to(dt).requires_grad_(requires_grad)

    q, k, v = normal(tq, True), normal(tk, True), normal(tk, True)
    do = normal(tq)
    r = (normal(tq), normal(tk), normal(tk))
    return Inputs(q, k, v, do, r)


def run_path(path: str, attn: Callable, inp: Inputs) -> tuple:
    """Run one path and return its outputs (:data:`OUTPUT_NAMES`).

    forward: o = attn(q, k, v), inputs requiring grad as in training (so what a mode
    saves for backward counts in its memory). backward: a training step, forward +
    grad(o, (q, k, v), dO). gradgrad: forward, g = grad(..., create_graph=True),
    L = sum_i <g_i, r_i>, grad(L, (q, k, v)) (DESIGN.md).
    """
    import torch

    _check_path(path)
    q, k, v = inp.q, inp.k, inp.v
    o = attn(q, k, v)
    if path == "forward":
        return (o,)
    if path == "backward":
        return torch.autograd.grad(o, (q, k, v), inp.do)
    g = torch.autograd.grad(o, (q, k, v), inp.do, create_graph=True)
    loss = sum((gi * ri).sum() for gi, ri in zip(g, inp.r))
    return torch.autograd.grad(loss, (q, k, v))


# --------------------------------------------------------------------------------------
# Implementations (one per bwd_mode)
# --------------------------------------------------------------------------------------

SDPA_BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")


def kernels_attention() -> Callable:
    """``kernels.attention``; NotImplementedError (a skip) while it has not landed."""
    import importlib

    try:
        module = importlib.import_module("kernels.attention")
    except ModuleNotFoundError as exc:
        if exc.name in ("kernels.attention", "kernels"):
            raise NotImplementedError("kernels.attention has not landed") from exc
        raise  # a real import error inside the kernels is a failure, not a skip
    import kernels

    attn = getattr(kernels, "attention", None)
    if not callable(attn):  # the package does not re-export it: take the module's function
        attn = getattr(module, "attention", None)
    if not callable(attn):
        raise NotImplementedError("kernels.attention has no callable 'attention'")
    return attn


def math_attention(cfg: Config) -> Callable:
    from kernels import reference

    causal, window = cfg.causal, cfg.window
    return lambda q, k, v: reference.attention(q, k, v, causal=causal, window=window)


def implementations(mode: str, cfg: Config, device) -> list[tuple[str, Callable]]:
    """Candidate implementations of ``mode``: (label, attn(q, k, v) -> o).

    One candidate for every mode except ``sdpa``, which offers each fused backend
    (cuDNN, flash, memory-efficient); the fastest that passes parity is kept.
    Raises NotImplementedError when the mode cannot run here (a skip).
    """
    import torch

    device = torch.device(device)
    causal, window = cfg.causal, cfg.window
    if mode == "math":
        return [("math", math_attention(cfg))]
    if mode == "compiled":
        torch._dynamo.reset()  # a fresh compile per configuration, no recompile limit
        return [("compiled", torch.compile(math_attention(cfg), dynamic=False))]
    if mode == "sdpa":
        return _sdpa_candidates(cfg, device)
    if mode == "flash":
        if device.type != "cuda":
            raise NotImplementedError("SDPA's flash backend needs CUDA")
        return [c for c in _sdpa_candidates(cfg, device) if c[0] == "sdpa(flash)"]
    if mode in KERNEL_MODES:
        attn = kernels_attention()
        return [
            (
                f"kernels.attention({mode})",
                lambda q, k, v: attn(q, k, v, causal=causal, window=window, bwd_mode=mode),
            )
        ]
    raise ValueError(f"bwd_mode must be one of {ALL_MODES}, got {mode!r}")


def _sdpa_candidates(cfg: Config, device) -> list[tuple[str, Callable]]:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels import reference

    # SDPA's is_causal is top-left aligned: right only for square causal. A window or a
    # bottom-right causal Tq < Tk goes in as an explicit boolean mask (as the anchors did).
    is_causal = cfg.causal and cfg.window is None and cfg.tq == cfg.tk
    mask = None
    if cfg.causal and not is_causal:
        mask = reference.visible_mask(cfg.tq, cfg.tk, causal=True, window=cfg.window, device=device)

    def make(backend):
        def attn(q, k, v):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

        return attn

    if device.type != "cuda":  # only reachable from the quick CLI: PyTorch's own choice

        def default(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

        return [("sdpa(default)", default)]
    names = [b for b in SDPA_BACKENDS if hasattr(SDPBackend, b)]
    return [(f"sdpa({b.split('_')[0].lower()})", make(getattr(SDPBackend, b))) for b in names]


# --------------------------------------------------------------------------------------
# References and the parity gate
# --------------------------------------------------------------------------------------

PARITY_LIMIT = 2.0  # flash-attention's rule: at most 2x the same-dtype math error
# The floor: one ulp of the reference's largest value, or of 1.0 if that is smaller. With
# ratio = err / (math_err + floor / 2), "ratio <= 2" is exactly tests/numerics.py's
# "err <= 2 * math_err + floor": the benchmarks gate with the rule the kernel tests use.

# Score entries (B*H*rows*keys) per reference chunk: fp64 512 MiB per T x T-shaped
# tensor; a grad-grad graph holds ~15 of them, ~8 GiB.
REFERENCE_CHUNK_SCORES = 2**26


def _chunk_key_range(cfg_tq: int, cfg_tk: int, causal: bool, window, s: int, e: int):
    """Keys rows s..e-1 can see, as a slice: exact to drop the rest (they carry P = 0).

    The rows stay bottom-right aligned in the slice: the last row sits on its last key.
    """
    if not causal:
        return 0, cfg_tk
    end = e + cfg_tk - cfg_tq
    start = max(0, s + cfg_tk - cfg_tq - window + 1) if window is not None else 0
    return start, end


def reference_outputs(
    path: str, cfg: Config, inp: Inputs, dtype, *, chunk_scores: int = REFERENCE_CHUNK_SCORES
) -> tuple:
    """Outputs of ``path`` from the math reference computed in ``dtype``, in row chunks.

    Every output decomposes over query rows: o, dq and the grad-grad grad_q rows are
    row-local; dk, dv, grad_k, grad_v are sums of per-row-chunk terms (the grad-grad
    loss L = sum <g, r> splits the same way). Each chunk is the math path on the
    chunk's queries and the keys they can see, so the result is that of the whole
    problem, in O(chunk x Tk) memory; key-side sums accumulate in fp32 (fp64 for fp64).
    In fp64 this is the reference of the parity gate. In fp16/bf16 each chunk's
    key-side partial is rounded before the sum, so its error is not quite one math
    pass's (0.8x..1.6x on dk/dv/grad_k at 16 chunks, bf16, CPU): it stands in for the
    math path only where that does not fit (:func:`same_dtype_math_outputs`).
    """
    import torch

    ref_attn = math_attention(cfg)
    q, k, v, do = (t.detach().to(dtype) for t in (inp.q, inp.k, inp.v, inp.do))
    r = tuple(t.to(dtype) for t in inp.r)
    B, H, tq, _ = q.shape
    tk = k.shape[2]
    acc_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    rows = max(1, chunk_scores // (B * H * tk))
    row_out = torch.empty_like(q)  # o, dq or grad_q
    key_outs = [] if path == "forward" else [torch.zeros_like(k, dtype=acc_dtype) for _ in "kv"]
    for s in range(0, tq, rows):
        e = min(tq, s + rows)
        ks, ke = _chunk_key_range(tq, tk, cfg.causal, cfg.window, s, e)
        chunk = Inputs(
            q[:, :, s:e].clone().requires_grad_(),
            k[:, :, ks:ke].clone().requires_grad_(),
            v[:, :, ks:ke].clone().requires_grad_(),
            do[:, :, s:e],
            (r[0][:, :, s:e], r[1][:, :, ks:ke], r[2][:, :, ks:ke]),
        )
        with torch.enable_grad():
            res = run_path(path, ref_attn, chunk)
        row_out[:, :, s:e] = res[0]
        for acc, part in zip(key_outs, res[1:]):
            acc[:, :, ks:ke] += part.to(acc_dtype)
        del res, chunk
    return (row_out, *(t.to(dtype) for t in key_outs))


def same_dtype_math_outputs(path: str, cfg: Config, inp: Inputs) -> tuple[tuple, str]:
    """The denominator of the parity ratio: the math path's own outputs on the whole problem.

    Where it runs out of memory (math grad-grad from T = 16384 on 80 GB), the chunked
    math path stands in (:func:`reference_outputs`). Returns (outputs, which).
    """
    import torch

    try:
        with torch.enable_grad():
            outs = tuple(t.detach() for t in run_path(path, math_attention(cfg), inp))
        return outs, "math"
    except torch.cuda.OutOfMemoryError:
        pass
    _free_memory()
    return reference_outputs(path, cfg, inp, cfg.torch_dtype), "chunked math (math is OOM)"


@dataclasses.dataclass
class Parity:
    ratio: float  # worst output's impl error / (math error + floor)
    worst: str  # which output
    detail: str  # per output: impl error vs math error

    @property
    def passed(self) -> bool:
        return self.ratio <= PARITY_LIMIT


def parity(path: str, impl: Sequence, ref64: Sequence, math_same: Sequence, dtype) -> Parity:
    """Judge ``impl`` outputs against the fp64 reference, relative to the math path's error."""
    import torch

    worst, worst_name, parts = 0.0, "", []
    for name, a, ref, m in zip(OUTPUT_NAMES[path], impl, ref64, math_same):
        if a is None or tuple(a.shape) != tuple(ref.shape):
            shape = None if a is None else tuple(a.shape)
            return Parity(math.inf, name, f"{name}: shape {shape}, expected {tuple(ref.shape)}")
        a64 = a.detach().to(torch.float64)
        if not torch.isfinite(a64).all():
            return Parity(math.inf, name, f"{name}: non-finite values")
        err_impl = (a64 - ref).abs().max().item()
        err_math = (m.detach().to(torch.float64) - ref).abs().max().item()
        floor = torch.finfo(dtype).eps * max(ref.abs().max().item(), 1.0)
        denom = err_math + floor / 2
        ratio = err_impl / denom
        parts.append(f"{name} {err_impl:.2e} vs math {err_math:.2e}")
        if ratio >= worst:
            worst, worst_name = ratio, name
    return Parity(worst, worst_name, "; ".join(parts))


# --------------------------------------------------------------------------------------
# Timers and memory
# --------------------------------------------------------------------------------------

# asv runs: ~100 ms of timed iterations after ~25 ms of warm-up (do_bench's defaults);
# BENCH_SUITE_REP_MS lowers it for smoke runs.
DEFAULT_REP_MS = float(os.environ.get("BENCH_SUITE_REP_MS", "100"))
DEFAULT_WARMUP_MS = 25.0
MIN_ITERS = 5  # a median of fewer is noise; a 150 ms call still costs < 1 s
MAX_ITERS = 1000
L2_FLUSH_BYTES = 256 * 2**20  # > H100's 50 MB L2, as do_bench


# Host time of a call: perf_counter around the call alone (no sync), median of the first
# HOST_SAMPLES timed calls, which start on an idle GPU. Later calls of a GPU-bound step
# can block once the launch queue is full, which would count GPU time as host time:
# 20 calls of a grad-grad step are ~500 launches, under the ~1000 a queue holds.
HOST_SAMPLES = 20


def median_ms(
    fn: Callable,
    device,
    *,
    iters: int | None = None,
    rep_ms: float | None = None,
    warmup_ms: float = DEFAULT_WARMUP_MS,
) -> float:
    """Median milliseconds per call: CUDA events on a GPU, perf_counter (CPU wall-clock) else.

    (Not named time_*: asv takes any module-level time_* function here for a benchmark.)

    ``iters`` fixes the number of timed calls; by default it follows from ``rep_ms``.
    """
    return step_timing(fn, device, iters=iters, rep_ms=rep_ms, warmup_ms=warmup_ms)[0]


def step_timing(
    fn: Callable,
    device,
    *,
    iters: int | None = None,
    rep_ms: float | None = None,
    warmup_ms: float = DEFAULT_WARMUP_MS,
) -> tuple[float, float | None]:
    """(median ms per call, median host ms per call): :func:`median_ms` and, on a GPU, the
    host time of the same timed calls (``HOST_SAMPLES``); None on CPU, where the wall
    clock already is the host's.

    Where the host ms reaches the GPU ms, the step waits on Python and launches, not on
    kernels, and its ms moves with the host (README, "Results on one H100").
    """
    import torch

    rep_ms = DEFAULT_REP_MS if rep_ms is None else rep_ms
    if torch.device(device).type == "cuda":
        return _cuda_timing(fn, iters, rep_ms, warmup_ms)
    return _cpu_median_ms(fn, iters, rep_ms, warmup_ms), None


def _n_iters(iters, rep_ms, estimate_ms):
    if iters is not None:
        return max(1, int(iters))
    return min(MAX_ITERS, max(MIN_ITERS, int(rep_ms / max(estimate_ms, 1e-6))))


def _cuda_timing(fn, iters, rep_ms, warmup_ms):
    import torch

    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        flush.zero_()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = start.elapsed_time(end) / 3
    for _ in range(max(1, int(warmup_ms / max(estimate, 1e-6)))):
        fn()
    torch.cuda.synchronize()  # an empty launch queue for the host samples
    n = _n_iters(iters, rep_ms, estimate)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    host = []
    for i in range(n):
        flush.zero_()  # cold L2 for every call, as triton.testing.do_bench
        starts[i].record()
        t0 = time.perf_counter()
        fn()
        if i < HOST_SAMPLES:
            host.append((time.perf_counter() - t0) * 1e3)
        ends[i].record()
    torch.cuda.synchronize()
    ms = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))
    return ms, statistics.median(host)


def _cpu_median_ms(fn, iters, rep_ms, warmup_ms):
    t0 = time.perf_counter()
    fn()
    estimate = (time.perf_counter() - t0) * 1e3
    for _ in range(max(1, int(warmup_ms / max(estimate, 1e-6)))):
        fn()
    times = []
    for _ in range(_n_iters(iters, rep_ms, estimate)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mib(fn: Callable, device) -> float | None:
    """Peak GPU memory of one call above what was allocated before it (MiB); None on CPU."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return (peak - base) / 2**20


def _free_memory():
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# Measuring a preset
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """What one (config, mode) measured. status: "ok", "skip" or "fail"."""

    status: str
    reason: str = ""
    ms: float | None = None
    tflops: float | None = None
    peak_mib: float | None = None
    parity: float | None = None
    host_ms: float | None = None  # host time per call (step_timing); None on CPU
    impl: str = ""  # which candidate (sdpa backend) was kept
    first_call_s: float = 0.0  # first call: compilation, autotuning, caches
    measure_s: float = 0.0  # parity check, memory and timing

    def line(self) -> str:
        if self.status == "skip":
            return f"skipped: {self.reason}"
        if self.status == "fail":
            par = "" if self.parity is None else f" (parity {self.parity:.3g})"
            return f"FAILED{par}: {self.reason}"
        mem = "" if self.peak_mib is None else f", {self.peak_mib:.1f} MiB"
        impl = f" [{self.impl}]" if self.impl else ""
        notes = f" (also tried: {self.reason})" if self.reason else ""
        tflops = f"{self.tflops:.4g} TFLOP/s"
        host = "" if self.host_ms is None else f" (host {self.host_ms:.3g} ms)"
        return f"{self.ms:.4g} ms{host}, {tflops}{mem}, parity {self.parity:.3g}{impl}{notes}"


def measure_mode(path, cfg, mode, inp, ref64, math_same, device, *, iters=None, rep_ms=None):
    """Parity gate, then memory and time, for every candidate of ``mode``; keep the fastest."""
    t0 = time.perf_counter()
    try:
        candidates = implementations(mode, cfg, device)
    except NotImplementedError as exc:
        return Record("skip", str(exc) or type(exc).__name__)
    setup_s = time.perf_counter() - t0  # imports (torch._dynamo for compiled), wrappers
    recs = []
    for label, attn in candidates:
        rec = _measure_candidate(
            path, cfg, label, attn, inp, ref64, math_same, device, iters, rep_ms
        )
        recs.append((label, rec))
        _free_memory()
    ok = [r for _, r in recs if r.status == "ok"]
    if len(recs) == 1:
        best = recs[0][1]
    elif ok:  # several candidates (SDPA backends): the fastest correct one, others noted
        best = min(ok, key=lambda r: r.ms)
        best.reason = "; ".join(f"{lbl}: {r.line()}" for lbl, r in recs if r is not best)
    else:  # none usable: a failure if one gave a wrong answer, else a skip
        wrong = [r for _, r in recs if r.status == "fail"]
        best = Record(
            "fail" if wrong else "skip", "; ".join(f"{lbl}: {r.reason}" for lbl, r in recs)
        )
        best.parity = min((r.parity for r in wrong if r.parity is not None), default=None)
    # time accounting covers every candidate tried
    best.first_call_s = setup_s + sum(r.first_call_s for _, r in recs)
    best.measure_s = sum(r.measure_s for _, r in recs)
    return best


def _measure_candidate(path, cfg, label, attn, inp, ref64, math_same, device, iters, rep_ms):
    import torch

    def call():
        return run_path(path, attn, inp)

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    oom = False
    try:
        t0 = time.perf_counter()
        outs = call()
        sync()
        first_call_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = parity(path, outs, ref64, math_same, cfg.torch_dtype)
        del outs
        if not par.passed:
            return Record(
                "fail",
                f"parity {par.ratio:.3g} > {PARITY_LIMIT} on {par.worst} ({par.detail})",
                parity=par.ratio,
                impl=label,
                first_call_s=first_call_s,
            )
        mib = peak_mib(call, device)
        ms, host_ms = step_timing(call, device, iters=iters, rep_ms=rep_ms)
        measure_s = time.perf_counter() - t0
    except NotImplementedError as exc:
        return Record("skip", f"{label}: {exc}" if str(exc) else f"{label}: not implemented")
    except torch.cuda.OutOfMemoryError:
        oom = True  # free outside the except block: the traceback pins the tensors
    except Exception as exc:  # noqa: BLE001 -- any other error is this kernel's failure
        if isinstance(exc, RuntimeError) and _OOM_MESSAGES.search(str(exc)):
            oom = True  # cuBLAS / cuDNN workspaces fail as RuntimeError, not OutOfMemoryError
        elif _is_sdpa_refusal(label, exc):
            return Record("skip", f"{label} refused this problem: {_short(exc)}")
        else:
            return Record("fail", f"{type(exc).__name__}: {_short(exc)}", impl=label)
    if oom:
        _free_memory()
        where = "host"
        if torch.device(device).type == "cuda":
            where = f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB card"
        return Record("skip", f"out of memory ({where})", impl=label)
    tflops = config_flops(path, cfg) / (ms * 1e-3) / 1e12
    return Record(
        "ok",
        ms=ms,
        tflops=tflops,
        peak_mib=mib,
        parity=par.ratio,
        host_ms=host_ms,
        impl=label if label.startswith("sdpa(") else "",
        first_call_s=first_call_s,
        measure_s=measure_s,
    )


_OOM_MESSAGES = re.compile(r"out of memory|ALLOC_FAILED", re.IGNORECASE)


def _is_sdpa_refusal(label: str, exc: Exception) -> bool:
    """SDPA backends raise RuntimeError('No available kernel...') for problems they do not take."""
    return label.startswith("sdpa(") and isinstance(exc, RuntimeError)


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def measure_preset(preset: str, path: str, *, iters=None, rep_ms=None, modes=None) -> dict:
    """Measure every (config, mode) of a preset for one path: the asv ``setup_cache`` body.

    Returns {asv param tuple: Record}, plus "unavailable": reason when the preset's
    device is missing. Progress goes to stderr and, as JSON lines, to the file named
    by BENCH_SUITE_PROGRESS (runner/asv_run.py prints it while asv runs): asv itself
    shows a setup_cache's output only after it ends, and only with --show-stderr.
    """
    tag = f"{path}/{preset}"
    try:
        return _measure_preset(tag, get_preset(preset), path, iters, rep_ms, modes)
    except BaseException as exc:
        _progress(
            tag,
            f"setup_cache FAILED: {type(exc).__name__}: {_short(exc, 2000)}",
            event="class_failed",
        )
        raise


def _measure_preset(tag, p, path, iters, rep_ms, modes):
    import warnings

    import torch

    _check_path(path)
    started = time.perf_counter()
    if p.device == "cuda" and not torch.cuda.is_available():
        _progress(tag, "skipped: no CUDA device", event="unavailable")
        return {"unavailable": "no CUDA device"}
    device = torch.device(p.device)
    if device.type == "cuda":
        torch.cuda.init()
    modes = p.modes_for(path) if modes is None else modes
    kernels_dir = _kernels_dir()
    startup_s = _seconds_since_process_start()
    _progress(
        tag,
        f"{len(p.configs())} configs x {len(modes)} modes, kernels from {kernels_dir}",
        event="class_start",
        kernels_dir=kernels_dir,
        startup_s=startup_s,
    )
    results: dict = {}
    totals = {"reference_s": 0.0, "first_call_s": 0.0, "measure_s": 0.0}
    warnings.filterwarnings("ignore", message=".*[Ff]lash|.*[Mm]emory [Ee]fficient|.*cuDNN")
    for cfg in p.configs():
        t0 = time.perf_counter()
        try:
            inp = make_inputs(cfg, device)
            ref64 = reference_outputs(path, cfg, inp, torch.float64)
            math_same, which = same_dtype_math_outputs(path, cfg, inp)
        except torch.cuda.OutOfMemoryError:
            # Seen on the H100 at forward T=32768 after a fragmented T=16384 config: skip
            # the config (every mode), free the tensors outside the except block, go on.
            inp = ref64 = math_same = None
            which = "oom"
        totals["reference_s"] += time.perf_counter() - t0
        if which == "oom":
            _free_memory()
            for mode in modes:
                rec = Record("skip", "out of memory computing the parity references")
                results[dataclasses.astuple(cfg) + (mode,)] = rec
                _progress(tag, f"{cfg.label()} {mode}: {rec.line()}", event="record",
                          config=dataclasses.asdict(cfg), mode=mode,
                          record=dataclasses.asdict(rec))  # fmt: skip
            continue
        if which != "math":
            _progress(tag, f"{cfg.label()}: parity denominator from {which}", event="note")
        for mode in modes:
            rec = measure_mode(
                path, cfg, mode, inp, ref64, math_same, device, iters=iters, rep_ms=rep_ms
            )
            totals["first_call_s"] += rec.first_call_s
            totals["measure_s"] += rec.measure_s
            results[dataclasses.astuple(cfg) + (mode,)] = rec
            _progress(
                tag,
                f"{cfg.label()} {mode}: {rec.line()}",
                event="record",
                config=dataclasses.asdict(cfg),
                mode=mode,
                record=dataclasses.asdict(rec),
            )
        del inp, ref64, math_same
        _free_memory()
    total_s = time.perf_counter() - started
    other_s = total_s - sum(totals.values())
    _progress(
        tag,
        f"done in {total_s:.1f} s: references {totals['reference_s']:.1f} s, "
        f"first calls {totals['first_call_s']:.1f} s, measuring "
        f"{totals['measure_s']:.1f} s, other {other_s:.1f} s",
        event="class_done",
        total_s=total_s,
        startup_s=startup_s,
        **totals,
    )
    return results


def _kernels_dir() -> str:
    import kernels

    return os.path.dirname(os.path.abspath(kernels.__file__))


def _seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux /proc), to account start-up and imports."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


PROGRESS_ENV = "BENCH_SUITE_PROGRESS"


def _progress(tag: str, msg: str, **data) -> None:
    line = f"[{tag}] {msg}"
    print(line, file=sys.stderr, flush=True)
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"tag": tag, "msg": msg, "time": time.time(), **data}) + "\n")


# --------------------------------------------------------------------------------------
# The asv classes' shared body
# --------------------------------------------------------------------------------------

try:  # raised from a benchmark body, asv records "skipped" (n/a) instead of a failure
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # asv not installed (the quick CLI, plain imports)

    class SkipNotImplemented(NotImplementedError):
        pass


class PresetBenchmark(abc.ABC):
    """Base of every asv class: one preset of one path.

    A subclass sets ``path``, ``preset``, ``params = asv_params(preset, path)`` and its
    own one-line ``setup_cache`` (asv keys the cache by the function's module and line,
    so a shared one in this module would be shared by all classes). Abstract here, so
    asv's discovery does not take this base for a benchmark.
    """

    param_names = PARAM_NAMES
    timeout = 1800  # setup_cache measures the whole preset in one process

    @property
    @abc.abstractmethod
    def path(self) -> str:  # "forward", "backward" or "gradgrad"
        ...

    def setup(self, cache, *params):
        if "unavailable" in cache:
            raise NotImplementedError(cache["unavailable"])
        record = cache.get(tuple(params))
        if record is None:
            raise NotImplementedError(f"{params} is not in this preset")
        if record.status == "skip":
            raise NotImplementedError(record.reason)
        self.record = record

    def _value(self, metric: str):
        rec = self.record
        if rec.status == "fail" and not (metric == "parity" and rec.parity is not None):
            raise RuntimeError(f"{self.path}: {rec.reason}")
        value = getattr(rec, metric)
        if value is None:
            raise SkipNotImplemented(f"no {metric} on this device")
        return value

    def track_ms(self, cache, *params):
        return self._value("ms")

    track_ms.unit = "ms"

    def track_tflops(self, cache, *params):
        return self._value("tflops")

    track_tflops.unit = "TFLOP/s"

    def track_peak_mib(self, cache, *params):
        return self._value("peak_mib")

    track_peak_mib.unit = "MiB"

    def track_parity(self, cache, *params):
        return self._value("parity")

    track_parity.unit = "ratio"

    def track_host_ms(self, cache, *params):
        return self._value("host_ms")

    track_host_ms.unit = "host ms"  # its own unit: its own noise rule (reports/metrics.py)
