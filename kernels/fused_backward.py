"""Triton backward of attention from the saved logsumexp, FlashAttention-2 style.

Layers: private ``@triton.jit`` kernels -> launchers (``fused_attention_backward``,
``attention_backward_dv``: validate, allocate, pick the grid, launch). The
autograd Functions that use them live in attention.py.

Math (one head, c = scale; kernels/GRADGRAD.md, kernels/reference.py):
P = exp(c Q K^T - lse), delta = rowsum(dO * O), dP = dO V^T, dS = P * (dP - delta),
dQ = c dS K, dK = c dS^T Q, dV = P^T dO.

Two launches, no atomics, so the result is deterministic (bit-identical run to run):

1. ``_dq_kernel``: one program per BLOCK_M queries; first delta = rowsum(dO * O) for
   its rows (fp32, stored to a (B, H, Tq) buffer), then a loop over the visible key
   blocks (``key_range``). 3 matmuls per step (S, dP, dQ += dS K).
2. ``_dkdv_kernel``: one program per BLOCK_N keys of one (batch, head); loops over
   the query blocks that can see them (``query_range``), reading delta. 4 matmuls of
   BLOCK_M x BLOCK_N x D per step (S^T, dV += P^T dO, dP^T, dK += dS^T Q); 2 with
   ``DV_ONLY`` (S^T, dV), which is bwd_mode="dv_only".

delta is formed inside the dQ kernel, not in a pass of its own, because at small
shapes a training step is bound by host time per launch, not by GPU time (the seed
shape: ~0.18 ms of GPU work, ~0.5 ms of host time; scripts/gpu_overhead_probe.py).

So the backward costs 7 matmuls of 2 * Tq * Tk * D FLOPs, times the visible
fraction (FA2 with an atomic dQ does 5; we pay 2 for determinism and no
zero-init/fp32 dQ buffer).
"""

from __future__ import annotations

import numbers

import torch
import triton
import triton.language as tl

from ._launch import CachedLauncher
from ._triton_common import (
    AUTOTUNE_DISK_CACHE,
    LOG2E,
    autotune_configs,
    block_d,
    ceil_div,
    interpreter_active,
    key_range,
    length_bucket,
    load_tile,
    mm,
    query_range,
    store_tile,
    tile_fully_visible,
    visible,
)

__all__ = [
    "fused_attention_backward",
    "backward_of_validated",
    "attention_backward_dv",
]

_LOG2E = tl.constexpr(LOG2E)
_MAX_HEAD_DIM = 128
_MIN_HEAD_DIM = 16


# ---------------------------------------------------------------------------
# autotuning


# id(triton.Config) -> the largest BLOCK_D its tiles fit (the configs live as long as the module)
_MAX_BLOCK_D: dict[int, int] = {}


def _configs(shapes):
    """triton.Configs from (BLOCK_M, BLOCK_N, num_warps, num_stages, max BLOCK_D) tuples.

    Through ``autotune_configs``: under the interpreter ONE config of 16x16 tiles (fast
    per op, and still several tiles and masked edges at T=17..113); with
    KERNELS_AUTOTUNE=0 the first tuple, which fits every D. ``max BLOCK_D``: the largest
    BLOCK_D the tiles fit without register spills (``prune_by_head_dim``).
    """
    candidates = []
    for m, n, w, s, max_bd in shapes:
        config = triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        _MAX_BLOCK_D[id(config)] = max_bd
        candidates.append(config)
    interp = triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)
    return autotune_configs(candidates, interp)


def prune_by_head_dim(configs, named_args, **kwargs):
    """early_config_prune: keep the configs whose max BLOCK_D covers this BLOCK_D.

    The tables below come from compiling every (BLOCK_M, BLOCK_N, warps) for sm_90
    with ptxas (triton 3.9, bf16, causal, no GPU needed) and reading the register and
    spill counts: e.g. the dK/dV kernel at 64 x 128 tiles, 8 warps, has no spill at
    D=64 and spills 88 B/thread at D=128. Tiles whose score dots have fewer than 64
    rows per warpgroup fall back from wgmma (HGMMA) to mma.sync (HMMA), so those are
    kept only where nothing else fits.
    """
    bd = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 128))
    kept = [c for c in configs if _MAX_BLOCK_D.get(id(c), 128) >= bd]
    return kept or configs[:1]


def _tuned(configs, key):
    """triton.autotune with our pruning; key on the bucketed lengths and the compile-time flags."""
    return triton.autotune(
        configs=configs,
        key=key,
        prune_configs_by={"early_config_prune": prune_by_head_dim},
        **AUTOTUNE_DISK_CACHE,
    )


_TUNING_KEY = ["HEAD_DIM", "T_Q_BUCKET", "T_K_BUCKET", "IS_CAUSAL", "HAS_WINDOW"]

# dK/dV: a program holds K, V and the fp32 dK, dV for BLOCK_N keys and streams Q, dO
# tiles of BLOCK_M rows; score tiles are (BLOCK_N, BLOCK_M), so BLOCK_N >= 64 keeps wgmma.
_DKDV_CONFIGS = _configs(
    [(32, 64, 4, 3, 128), (32, 128, 8, 2, 128), (64, 64, 8, 2, 128), (64, 128, 8, 2, 64)]
)
# dQ: holds Q, dO and the fp32 dQ for BLOCK_M rows, streams K, V; BLOCK_M >= 64 for wgmma.
_DQ_CONFIGS = _configs(
    [(64, 32, 4, 3, 128), (64, 64, 4, 2, 128), (128, 32, 8, 2, 128), (128, 64, 8, 2, 128)]
)


# ---------------------------------------------------------------------------
# kernels


@_tuned(_DKDV_CONFIGS, _TUNING_KEY + ["DV_ONLY"])
@triton.jit
def _dkdv_kernel(
    Q,
    K,
    V,
    DO,
    Lse,
    Delta,
    DK,
    DV,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_dob,
    stride_doh,
    stride_dom,
    stride_dod,
    stride_dkb,
    stride_dkh,
    stride_dkn,
    stride_dkd,
    stride_dvb,
    stride_dvh,
    stride_dvn,
    stride_dvd,
    H,
    T_Q,
    T_K,
    WINDOW,
    scale,
    T_Q_BUCKET,
    T_K_BUCKET,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    DV_ONLY: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """dK, dV for BLOCK_N keys of one (batch, head), looping over the query blocks that see them.

    Works in the transposed orientation (keys x queries) so dK and dV accumulate
    with plain dots: dV += P^T dO, dK += dS^T Q. ``DV_ONLY`` skips dP, dS and dK.
    """
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    dtype = Q.dtype.element_ty
    qk_scale_log2 = scale * _LOG2E

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    Q_bh = Q + b * stride_qb + h * stride_qh
    DO_bh = DO + b * stride_dob + h * stride_doh
    Lse_bh = Lse + bh.to(tl.int64) * T_Q
    Delta_bh = Delta + bh.to(tl.int64) * T_Q

    k = load_tile(
        K + b * stride_kb + h * stride_kh, offs_n, offs_d, stride_kn, stride_kd, T_K, HEAD_DIM
    )
    if not DV_ONLY:
        v = load_tile(
            V + b * stride_vb + h * stride_vh, offs_n, offs_d, stride_vn, stride_vd, T_K, HEAD_DIM
        )
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    lo, hi = query_range(start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < T_Q
        q = load_tile(Q_bh, offs_m, offs_d, stride_qm, stride_qd, T_Q, HEAD_DIM)
        do = load_tile(DO_bh, offs_m, offs_d, stride_dom, stride_dod, T_Q, HEAD_DIM)
        lse_log2 = tl.load(Lse_bh + offs_m, mask=row_ok, other=0.0) * _LOG2E
        # P^T (keys x queries) from the saved logsumexp; out-of-bounds rows have lse 0 and
        # q 0, so exp2 stays finite and the mask below zeroes them.
        p_t = tl.exp2(mm(k, tl.trans(q), DOT_FP32) * qk_scale_log2 - lse_log2[None, :])
        if not tile_fully_visible(
            start_m, start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
        ):
            vis = visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW)
            p_t = tl.where(tl.trans(vis), p_t, 0.0)
        dv += mm(p_t.to(dtype), do, DOT_FP32)
        if not DV_ONLY:
            delta = tl.load(Delta_bh + offs_m, mask=row_ok, other=0.0)
            dp_t = mm(v, tl.trans(do), DOT_FP32)
            ds_t = p_t * (dp_t - delta[None, :])
            dk += mm(ds_t.to(dtype), q, DOT_FP32)

    store_tile(
        DV + b * stride_dvb + h * stride_dvh,
        dv,
        offs_n,
        offs_d,
        stride_dvn,
        stride_dvd,
        T_K,
        HEAD_DIM,
    )
    if not DV_ONLY:
        store_tile(
            DK + b * stride_dkb + h * stride_dkh,
            dk * scale,
            offs_n,
            offs_d,
            stride_dkn,
            stride_dkd,
            T_K,
            HEAD_DIM,
        )


@_tuned(_DQ_CONFIGS, _TUNING_KEY)
@triton.jit
def _dq_kernel(
    Q,
    K,
    V,
    DO,
    O,
    Lse,
    Delta,
    DQ,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_dob,
    stride_doh,
    stride_dom,
    stride_dod,
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    stride_dqb,
    stride_dqh,
    stride_dqm,
    stride_dqd,
    H,
    T_Q,
    T_K,
    WINDOW,
    scale,
    T_Q_BUCKET,
    T_K_BUCKET,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """dQ for BLOCK_M queries of one (batch, head), looping over the key blocks they see.

    Also forms delta = rowsum(dO * O) for its rows and stores it for ``_dkdv_kernel``,
    which runs after it: the program holds dO already, so this costs one read of an O
    tile, and saves a launch (host time is the limit at small shapes).
    """
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    dtype = Q.dtype.element_ty
    qk_scale_log2 = scale * _LOG2E

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < T_Q
    K_bh = K + b * stride_kb + h * stride_kh
    V_bh = V + b * stride_vb + h * stride_vh

    q = load_tile(
        Q + b * stride_qb + h * stride_qh, offs_m, offs_d, stride_qm, stride_qd, T_Q, HEAD_DIM
    )
    do = load_tile(
        DO + b * stride_dob + h * stride_doh, offs_m, offs_d, stride_dom, stride_dod, T_Q, HEAD_DIM
    )
    o = load_tile(
        O + b * stride_ob + h * stride_oh, offs_m, offs_d, stride_om, stride_od, T_Q, HEAD_DIM
    )
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(Delta + bh.to(tl.int64) * T_Q + offs_m, delta, mask=row_ok)
    lse_log2 = tl.load(Lse + bh.to(tl.int64) * T_Q + offs_m, mask=row_ok, other=0.0) * _LOG2E
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    lo, hi = key_range(start_m, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = load_tile(K_bh, offs_n, offs_d, stride_kn, stride_kd, T_K, HEAD_DIM)
        v = load_tile(V_bh, offs_n, offs_d, stride_vn, stride_vd, T_K, HEAD_DIM)
        p = tl.exp2(mm(q, tl.trans(k), DOT_FP32) * qk_scale_log2 - lse_log2[:, None])
        if not tile_fully_visible(
            start_m, start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
        ):
            p = tl.where(visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW), p, 0.0)
        dp = mm(do, tl.trans(v), DOT_FP32)
        ds = p * (dp - delta[:, None])
        dq += mm(ds.to(dtype), k, DOT_FP32)

    store_tile(
        DQ + b * stride_dqb + h * stride_dqh,
        dq * scale,
        offs_m,
        offs_d,
        stride_dqm,
        stride_dqd,
        T_Q,
        HEAD_DIM,
    )


# ---------------------------------------------------------------------------
# launchers

# Cached launches (kernels/_launch.py): the tensors come first in every signature.
_launch_dkdv_kernel = CachedLauncher(_dkdv_kernel, n_tensors=8)
_launch_dq = CachedLauncher(_dq_kernel, n_tensors=8)


def check_attention_inputs(q, k, v, lse, *, causal, window, scale, extra=()):
    """Validate the tensors every fused launcher takes; returns (is_causal, window_int, scale).

    ``extra``: (name, tensor, like) pairs that must have ``like``'s shape, dtype and
    device (o, dO, cotangents).
    """
    for name, t in (("q", q), ("k", k), ("v", v), ("lse", lse)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "q, k, v must be 4-D (B, H, T, D); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"q must be float16 or bfloat16 for the Triton kernels, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    batch, heads, t_q, head_dim = q.shape
    if k.shape != v.shape or k.shape[:2] != (batch, heads) or k.shape[3] != head_dim:
        raise ValueError(
            f"k and v must be (B, H, Tk, D) = ({batch}, {heads}, Tk, {head_dim}); "
            f"got k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not _MIN_HEAD_DIM <= head_dim <= _MAX_HEAD_DIM:
        raise ValueError(
            f"head dim D must be in [{_MIN_HEAD_DIM}, {_MAX_HEAD_DIM}] for the fused kernels, "
            f"got {head_dim}"
        )
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
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
            raise ValueError(f"window must be a positive int or None, got {window!r}")
    is_causal = bool(causal) or window is not None
    if is_causal and t_q > t_k:
        raise ValueError(
            f"causal / window attention needs Tq <= Tk (queries are the last Tq keys); "
            f"got Tq={t_q}, Tk={t_k}"
        )
    if scale is None:
        scale = head_dim**-0.5
    scale = float(scale)
    return is_causal, (int(window) if window is not None else 0), scale


def _launch_dkdv(q, k, v, do, lse, delta, dk, dv, *, is_causal, window, scale, dv_only):
    batch, heads, t_q, head_dim = q.shape
    t_k = k.shape[2]

    def grid(meta):
        return (ceil_div(t_k, meta["BLOCK_N"]), batch * heads)

    _launch_dkdv_kernel(
        grid,
        q,
        k,
        v,
        do,
        lse,
        delta,
        dk,
        dv,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *do.stride(),
        *dk.stride(),
        *dv.stride(),
        heads,
        t_q,
        t_k,
        window,
        scale,
        length_bucket(t_q),
        length_bucket(t_k),
        HEAD_DIM=head_dim,
        BLOCK_D=block_d(head_dim),
        IS_CAUSAL=is_causal,
        HAS_WINDOW=window > 0,
        DV_ONLY=dv_only,
        DOT_FP32=interpreter_active(),
    )


def fused_attention_backward(q, k, v, o, lse, do, *, causal, window, scale):
    """(dq, dk, dv) of softmax(scale * q k^T) v for output cotangent ``do``.

    q, o, do: (B, H, Tq, D); k, v: (B, H, Tk, D); fp16 or bf16, any strides
    (stride 0 too: autograd hands expanded cotangents). lse: contiguous fp32
    (B, H, Tq), natural-log logsumexp of the masked scale * q k^T (the forward's).
    ``window`` (int) implies causal. Returns contiguous tensors in the input dtype.
    """
    is_causal, window, scale = check_attention_inputs(
        q, k, v, lse, causal=causal, window=window, scale=scale, extra=(("o", o, q), ("do", do, q))
    )
    return backward_of_validated(
        q, k, v, o, lse, do, is_causal=is_causal, window=window, scale=scale
    )


def backward_of_validated(q, k, v, o, lse, do, *, is_causal: bool, window: int, scale: float):
    """``fused_attention_backward`` without the checks, for callers that made them.

    kernels.attention validates its inputs once, in the forward; at the seed shape the
    second check was ~6% of the backward launcher's host time (cProfile). ``window``: 0
    for none.
    """
    batch, heads, t_q, head_dim = q.shape
    # empty_like, not empty(shape, device=, dtype=): 3.7 us against 8.3 us of host time
    # each on the H100's host (scripts/gpu_host_profile.py); gradients keep their
    # input's layout, as autograd's own do.
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    # dQ first: its programs also write delta = rowsum(dO * O), which dK/dV read.
    delta = torch.empty_like(lse)  # lse: contiguous fp32 (B, H, Tq)
    t_k = k.shape[2]

    def grid(meta):
        return (ceil_div(t_q, meta["BLOCK_M"]), batch * heads)

    _launch_dq(
        grid,
        q,
        k,
        v,
        do,
        o,
        lse,
        delta,
        dq,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *do.stride(),
        *o.stride(),
        *dq.stride(),
        heads,
        t_q,
        t_k,
        window,
        scale,
        length_bucket(t_q),
        length_bucket(t_k),
        HEAD_DIM=head_dim,
        BLOCK_D=block_d(head_dim),
        IS_CAUSAL=is_causal,
        HAS_WINDOW=window > 0,
        DOT_FP32=interpreter_active(),
    )
    _launch_dkdv(
        q,
        k,
        v,
        do,
        lse,
        delta,
        dk,
        dv,
        is_causal=is_causal,
        window=window,
        scale=scale,
        dv_only=False,
    )
    return dq, dk, dv


def attention_backward_dv(q, k, v, lse, do, *, causal, window, scale):
    """dV = P^T dO only (bwd_mode="dv_only"): 2 matmuls of 2*Tq*Tk*D FLOPs, no delta pass.

    Same conventions as ``fused_attention_backward``.
    """
    is_causal, window, scale = check_attention_inputs(
        q, k, v, lse, causal=causal, window=window, scale=scale, extra=(("do", do, q),)
    )
    dv = torch.empty(v.shape, device=q.device, dtype=q.dtype)
    if q.numel() == 0 or k.numel() == 0:
        return dv.zero_()
    # dK and Delta are never touched with DV_ONLY; pass real tensors so the signature holds.
    _launch_dkdv(
        q, k, v, do, lse, lse, dv, dv, is_causal=is_causal, window=window, scale=scale, dv_only=True
    )
    return dv
