"""What the kernels accept: the input checks, the dtype sets and the head-dim limits.

Two entry points, built from the same pieces so a rule lives in one place:

- ``check_inputs``: what ``kernels.attention`` takes (any float dtype; fp16/bf16 go to
  Triton, fp32/fp64 to the math path).
- ``check_launch_inputs``: what the Triton launchers take (fp16/bf16 only, the saved
  logsumexp, cotangents shaped like their primal, CUDA or the interpreter).

Bad input raises ValueError (values, shapes, devices) or TypeError (types, dtypes)
naming the argument, never a Triton error.
"""

from __future__ import annotations

import math
import numbers
import os
import resource

import torch

from ._triton_common import interpreter_active

__all__ = [
    "BWD_MODES",
    "MATH_DTYPES",
    "MAX_HEAD_DIM",
    "MIN_HEAD_DIM",
    "TRITON_DTYPES",
    "check_head_dim",
    "check_inputs",
    "check_launch_inputs",
    "check_math_path_memory",
    "check_triton_sizes",
    "head_dim_supported",
    "math_path_bytes",
    "normalise_window",
]

BWD_MODES = ("recompute", "save_p", "dv_only", "fused")
TRITON_DTYPES = (torch.float16, torch.bfloat16)
MATH_DTYPES = (torch.float32, torch.float64)
# Head dims the Triton kernels take: tiles are powers of two (D=80: 64 + 16 and D=96:
# 64 + 32, _triton_common.head_dim_split; a padded power of two elsewhere), rows must
# be 16-byte aligned for fp16/bf16 loads (D % 8 == 0).
MAX_HEAD_DIM = 128
MIN_HEAD_DIM = 16
HEAD_DIM_MULTIPLE = 8
# The Triton grids put B * H on grid axis 1, which CUDA caps at 65535 programs.
MAX_BATCH_HEADS = 65535
# Offsets inside one (batch, head) slice are int32 in the kernels: (T-1)*stride_t +
# (D-1)*stride_d must stay below this (strides >= 2**31 arrive as int64 and are fine).
INT32_LIMIT = 2**31
# fp32 is what the kernels take the scale in.
_FP32_MAX = torch.finfo(torch.float32).max


def head_dim_supported(head_dim: int) -> bool:
    """True when the Triton kernels take this head dim (fp16/bf16)."""
    return MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM and head_dim % HEAD_DIM_MULTIPLE == 0


def check_head_dim(head_dim: int, dtype) -> None:
    """ValueError unless the Triton kernels take head dim ``head_dim``."""
    if not head_dim_supported(head_dim):
        raise ValueError(
            f"head dim D={head_dim} is not supported for {dtype}: the Triton kernels take "
            f"D in {MIN_HEAD_DIM}..{MAX_HEAD_DIM} with D % {HEAD_DIM_MULTIPLE} == 0 "
            f"(64, 80, 96, 128 ...); use float32 for the math path"
        )


def _check_tensors(named):
    """Each (name, t) is a tensor; q, k, v also of rank 4."""
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if name in ("q", "k", "v") and t.dim() != 4:
            raise ValueError(
                f"{name} must have rank 4 (B, H, T, D), got rank {t.dim()} with shape "
                f"{tuple(t.shape)}"
            )


def _check_window(window) -> None:
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, numbers.Integral):
            raise TypeError(f"window must be an int or None, got {type(window).__name__}")
        if window < 1:
            raise ValueError(f"window must be >= 1 (keys at distance 0..window-1), got {window}")


def normalise_window(window, t_k: int):
    """``window`` as a plain int clamped to Tk (None stays None).

    A query sees at most Tk keys, at distances 0..Tk-1, so any window >= Tk is the causal
    mask: clamping keeps the mask and lets windows of any size (2**64, 10**30) reach the
    int32 kernel arguments and torch's int64 mask arithmetic.
    """
    return None if window is None else min(int(window), max(int(t_k), 1))


def _check_scale(scale) -> None:
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    value = float(scale)
    if not math.isfinite(value) or abs(value) > _FP32_MAX:
        raise ValueError(
            f"scale must be a finite float (the kernels take it in float32, |scale| <= "
            f"{_FP32_MAX:.3e}), got {scale!r}"
        )


def _check_shapes(q, k, v) -> None:
    """(B, H) shared, Tk shared by k and v, D shared by all three."""
    bq, hq, _, dq = q.shape
    bk, hk, tk, dk = k.shape
    bv, hv, tv, dv = v.shape
    if (bq, hq) != (bk, hk) or (bq, hq) != (bv, hv):
        raise ValueError(
            f"q, k, v must share batch and heads (B, H): got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if tk != tv:
        raise ValueError(f"k and v must have the same length T: got k Tk={tk}, v Tk={tv}")
    if not (dq == dk == dv):
        raise ValueError(f"q, k, v must share the head dim D: got q D={dq}, k D={dk}, v D={dv}")


def _check_masked_lengths(is_masked: bool, tq: int, tk: int) -> None:
    if is_masked and tq > tk:
        raise ValueError(
            f"causal/window attention needs Tq <= Tk (queries are the last Tq of the Tk keys): "
            f"got Tq={tq} > Tk={tk}"
        )


def _check_same_dtype(q, k, v) -> None:
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype: got q {q.dtype}, k {k.dtype}, v {v.dtype}")


def check_inputs(q, k, v, *, causal=False, window=None, scale=None, bwd_mode="fused"):
    """Validate the arguments of ``kernels.attention``; returns None."""
    _check_tensors((("q", q), ("k", k), ("v", v)))
    if bwd_mode not in BWD_MODES:
        raise ValueError(f"bwd_mode must be one of {BWD_MODES}, got {bwd_mode!r}")
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    _check_window(window)
    _check_scale(scale)

    _check_shapes(q, k, v)
    tq, tk = q.shape[2], k.shape[2]
    if tq == 0 or tk == 0:
        raise ValueError(f"q and k must have at least one position: got Tq={tq}, Tk={tk}")
    if q.shape[3] == 0:
        raise ValueError(f"q, k, v must have a head dim D >= 1, got D=0 (q {tuple(q.shape)})")
    _check_masked_lengths(causal or window is not None, tq, tk)
    _check_same_dtype(q, k, v)
    if q.dtype not in TRITON_DTYPES + MATH_DTYPES:
        raise TypeError(
            f"q dtype must be one of float16, bfloat16 (Triton) or float32, float64 (math path), "
            f"got {q.dtype}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k, v must be on one device: got q {q.device}, k {k.device}, v {v.device}"
        )
    if q.dtype in TRITON_DTYPES:
        check_head_dim(q.shape[3], q.dtype)


def check_launch_inputs(q, k, v, lse, *, causal, window, scale, extra=()):
    """Validate the tensors every Triton launcher takes; returns (is_causal, window_int, scale).

    ``extra``: (name, tensor, like) pairs that must have ``like``'s shape, dtype and
    device (o, dO, cotangents). Empty sequences pass (the launchers return zeros).
    ``window`` (an int >= 1) implies causal; ``window_int`` is 0 for none; ``scale``
    None means 1/sqrt(D).
    """
    _check_tensors((("q", q), ("k", k), ("v", v), ("lse", lse)))
    if q.dtype not in TRITON_DTYPES:
        raise TypeError(f"q must be float16 or bfloat16 for the Triton kernels, got {q.dtype}")
    _check_same_dtype(q, k, v)
    _check_shapes(q, k, v)
    batch, heads, t_q, head_dim = q.shape
    check_head_dim(head_dim, q.dtype)
    t_k = k.shape[2]
    if lse.shape != (batch, heads, t_q) or lse.dtype != torch.float32 or not lse.is_contiguous():
        raise ValueError(
            f"lse must be a contiguous float32 ({batch}, {heads}, {t_q}) tensor; got "
            f"{lse.dtype} {tuple(lse.shape)} contiguous={lse.is_contiguous()}"
        )
    for name, t, like in extra:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape != like.shape or t.dtype != like.dtype:
            raise ValueError(
                f"{name} must match shape {tuple(like.shape)} and dtype {like.dtype}; "
                f"got {tuple(t.shape)} {t.dtype}"
            )
    devices = {t.device for t in (q, k, v, lse)} | {t.device for _, t, _ in extra}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if q.device.type != "cuda" and not interpreter_active():
        raise ValueError(
            f"the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1), got {q.device}"
        )
    _check_window(window)
    _check_scale(scale)
    is_causal = bool(causal) or window is not None
    _check_masked_lengths(is_causal, t_q, t_k)
    check_triton_sizes((("q", q), ("k", k), ("v", v)) + tuple((n, t) for n, t, _ in extra))
    if scale is None:
        scale = head_dim**-0.5
    scale = float(scale)
    window = normalise_window(window, t_k)
    return is_causal, (window if window is not None else 0), scale


def check_triton_sizes(named) -> None:
    """ValueError unless the Triton kernels can index these (name, tensor) pairs.

    B * H is grid axis 1 (at most 65535 on CUDA); offsets inside one (batch, head) slice
    are int32 in the kernels, so (T-1) * stride_t + (D-1) * stride_d must fit (a stride of
    2**31 or more reaches the kernel as int64 and is fine). Cheap: integer arithmetic only.
    """
    for name, t in named:
        batch, heads, length, dim = t.shape
        if batch * heads > MAX_BATCH_HEADS:
            raise ValueError(
                f"{name}: B * H = {batch} * {heads} = {batch * heads} exceeds {MAX_BATCH_HEADS}, "
                f"the CUDA grid limit of the Triton kernels (one program row per (batch, head)); "
                f"split the batch"
            )
        _, _, stride_t, stride_d = t.stride()
        small = [(n, s) for n, s in ((length, stride_t), (dim, stride_d)) if s < INT32_LIMIT]
        last = sum((n - 1) * s for n, s in small if n > 0)
        if last >= INT32_LIMIT:
            raise ValueError(
                f"{name}: shape {tuple(t.shape)} with strides {tuple(t.stride())} puts elements "
                f"{last} past the start of a (batch, head) slice, beyond the int32 offsets of "
                f"the Triton kernels (< 2**31); make {name} contiguous or split the sequence"
            )


# Score-sized (Tq x Tk per (batch, head)) tensors the math path holds at its peak: the
# scores and the probabilities in a forward; with autograd also dP and dS in the backward
# while P stays saved. A lower bound: a create_graph backward and the grad-grad hold more,
# which a forward cannot know about.
_MATH_SCORE_TENSORS = {False: 2, True: 4}
# The (Tq, Tk) mask of kernels.reference.visible_mask: int64 distances and two bool masks.
_MASK_BYTES_PER_ENTRY = 8 + 1 + 1
# Below this estimate the check does not read /proc or ask the CUDA driver.
_MEMORY_CHECK_FLOOR = 64 << 20


def math_path_bytes(q, k, *, masked: bool, needs_grad: bool) -> int:
    """Lower bound on the bytes the math path (kernels.reference) allocates at its peak."""
    batch, heads, t_q, _ = q.shape
    t_k = k.shape[2]
    scores = batch * heads * t_q * t_k
    total = _MATH_SCORE_TENSORS[bool(needs_grad)] * scores * q.element_size()
    if masked:
        total += _MASK_BYTES_PER_ENTRY * t_q * t_k
    return total


def _cpu_available_bytes():
    """(bytes, source): MemAvailable, or less under an address-space limit (RLIMIT_AS)."""
    available, source = None, None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available, source = int(line.split()[1]) * 1024, "MemAvailable"
                    break
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = 0
        try:
            with open(f"/proc/{os.getpid()}/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        left = max(soft - used, 0)
        if available is None or left < available:
            available, source = left, "RLIMIT_AS minus this process's address space"
    return available, source


def _cuda_available_bytes(device):
    free, _ = torch.cuda.mem_get_info(device)
    # Memory PyTorch's caching allocator holds but does not use is free to this process.
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free + cached, "torch.cuda.mem_get_info + PyTorch's unused cache"


def check_math_path_memory(q, k, *, masked: bool, needs_grad: bool) -> None:
    """ValueError when the math path's score matrices cannot fit in free memory.

    Integer arithmetic and, for estimates over 64 MiB, one read of /proc (CPU) or one
    driver query (CUDA); nothing is allocated. Other devices (meta, mps, ...) pass.
    """
    need = math_path_bytes(q, k, masked=masked, needs_grad=needs_grad)
    if need < _MEMORY_CHECK_FLOOR:
        return
    if q.device.type == "cpu":
        available, source = _cpu_available_bytes()
    elif q.device.type == "cuda":
        available, source = _cuda_available_bytes(q.device)
    else:
        return
    if available is None or need <= available:
        return
    batch, heads, t_q, _ = q.shape
    what = "scores, probabilities and their gradients" if needs_grad else "scores and probabilities"
    raise ValueError(
        f"q {tuple(q.shape)} and k {tuple(k.shape)} ({q.dtype} on {q.device}) are too large for "
        f"the math path: its B*H x Tq x Tk = {batch * heads} x {t_q} x {k.shape[2]} {what} need "
        f"at least {need / 2**30:.1f} GiB, but {available / 2**30:.1f} GiB is free ({source}). "
        f'Use float16 or bfloat16 inputs on CUDA, where the Triton kernels with bwd_mode="fused" '
        f"keep O(T) memory, or split the batch, heads or sequence"
    )
