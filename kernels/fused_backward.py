"""Triton backward of attention from the saved logsumexp, FlashAttention-2 style.

Layers: private ``@triton.jit`` kernels -> launchers (``fused_attention_backward``,
``attention_backward_dv``: validate (kernels/contract.py), allocate, pick the grid,
launch) -> the autograd Functions in attention.py -> ``kernels.attention``. Tuning
(config tables, pruning, keys): tuning.py.

Math (one head, c = scale; docs/gradgrad.md, kernels/reference.py):
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
shape: ~0.18 ms of GPU work, ~0.5 ms of host time; docs/probes.md, gpu_overhead_probe).

So the backward costs 7 matmuls of 2 * Tq * Tk * D FLOPs, times the visible
fraction (FA2 with an atomic dQ does 5; we pay 2 for determinism and no
zero-init/fp32 dQ buffer).

Head dim, as in the grad-grad kernels (fused_gradgrad.py): D columns are one tile of
BLOCK_D = next power of two, or for D = 80 or 96 a main tile of 64 plus a full tail of
BLOCK_DT = 16 or 32 (``head_dim_split``; constexpr HAS_TAIL). Every D-wide tile and fp32
accumulator (K, V, Q, dO, O; dK, dV, dQ) is then a (main, tail) pair, S, dP (and their
transposes) the sum of two dots, dV, dK, dQ one dot per part: 80 / 96 issued columns at
D=80 / 96 instead of 128. Without a tail the tail tiles are placeholders never read, and
the PTX at D=64 and D=128 is the one-tile kernels' (sm_90, triton 3.9).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import CachedLauncher
from ._triton_common import (
    LOG2E,
    ceil_div,
    head_dim_tiles,
    interpreter_active,
    key_range,
    load_split,
    mm,
    mm_nt,
    query_range,
    split_offsets,
    store_split,
    tile_fully_visible,
    visible,
    zeros_split,
)
from .contract import check_launch_inputs
from .tuning import (
    DKDV_CONFIGS,
    DKDV_KEY,
    DQ_CONFIGS,
    DQ_KEY,
    length_bucket,
    prune_by_head_dim,
    tuned,
)

__all__ = [
    "AUTOTUNED",
    "LAUNCHERS",
    "fused_attention_backward",
    "backward_of_validated",
    "attention_backward_dv",
]

_LOG2E = tl.constexpr(LOG2E)


# ---------------------------------------------------------------------------
# kernels


@tuned(DKDV_CONFIGS, DKDV_KEY, prune_by_head_dim)
@triton.jit
def _dkdv_kernel(
    Q, K, V, DO, Lse, Delta, DK, DV,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    stride_dvb, stride_dvh, stride_dvn, stride_dvd,
    H, T_Q, T_K, WINDOW, scale, T_Q_BUCKET, T_K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr,
    HAS_TAIL: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    DV_ONLY: tl.constexpr, DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """dK, dV for BLOCK_N keys of one (batch, head), looping over the query blocks that see them.

    Works in the transposed orientation (keys x queries) so dK and dV accumulate
    with plain dots: dV += P^T dO, dK += dS^T Q. ``DV_ONLY`` skips dP, dS and dK.
    Head dim: columns [0, BLOCK_D) in one set of tiles, with HAS_TAIL [BLOCK_D,
    BLOCK_D + BLOCK_DT) in a second (``*_t``); the tail tiles are placeholders otherwise.
    """
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    dtype = Q.dtype.element_ty
    qk_scale_log2 = scale * _LOG2E

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d, offs_dt = split_offsets(BLOCK_D, BLOCK_DT, HAS_TAIL)
    Q_bh = Q + b * stride_qb + h * stride_qh
    DO_bh = DO + b * stride_dob + h * stride_doh
    Lse_bh = Lse + bh.to(tl.int64) * T_Q
    Delta_bh = Delta + bh.to(tl.int64) * T_Q

    k, k_t = load_split(
        K + b * stride_kb + h * stride_kh, offs_n, offs_d, offs_dt, stride_kn, stride_kd, T_K,
        HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    if not DV_ONLY:
        v, v_t = load_split(
            V + b * stride_vb + h * stride_vh, offs_n, offs_d, offs_dt, stride_vn, stride_vd,
            T_K, HEAD_DIM, HAS_TAIL,
        )  # fmt: skip
        dk, dk_t = zeros_split(BLOCK_N, BLOCK_D, BLOCK_DT, HAS_TAIL)
    dv, dv_t = zeros_split(BLOCK_N, BLOCK_D, BLOCK_DT, HAS_TAIL)

    lo, hi = query_range(start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < T_Q
        q, q_t = load_split(
            Q_bh, offs_m, offs_d, offs_dt, stride_qm, stride_qd, T_Q, HEAD_DIM, HAS_TAIL
        )
        do, do_t = load_split(
            DO_bh, offs_m, offs_d, offs_dt, stride_dom, stride_dod, T_Q, HEAD_DIM, HAS_TAIL
        )
        lse_log2 = tl.load(Lse_bh + offs_m, mask=row_ok, other=0.0) * _LOG2E
        # P^T (keys x queries) from the saved logsumexp; out-of-bounds rows have lse 0 and
        # q 0, so exp2 stays finite and the mask below zeroes them.
        s_t = mm_nt(k, k_t, q, q_t, DOT_FP32, HAS_TAIL)
        p_t = tl.exp2(s_t * qk_scale_log2 - lse_log2[None, :])
        if not tile_fully_visible(
            start_m, start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
        ):
            vis = visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW)
            p_t = tl.where(tl.trans(vis), p_t, 0.0)
        p16 = p_t.to(dtype)
        dv += mm(p16, do, DOT_FP32)
        if HAS_TAIL:
            dv_t += mm(p16, do_t, DOT_FP32)
        if not DV_ONLY:
            delta = tl.load(Delta_bh + offs_m, mask=row_ok, other=0.0)
            dp_t = mm_nt(v, v_t, do, do_t, DOT_FP32, HAS_TAIL)
            ds_t = (p_t * (dp_t - delta[None, :])).to(dtype)
            dk += mm(ds_t, q, DOT_FP32)
            if HAS_TAIL:
                dk_t += mm(ds_t, q_t, DOT_FP32)

    store_split(
        DV + b * stride_dvb + h * stride_dvh, dv, dv_t, offs_n, offs_d, offs_dt,
        stride_dvn, stride_dvd, T_K, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    if not DV_ONLY:
        store_split(
            DK + b * stride_dkb + h * stride_dkh, dk * scale, dk_t * scale, offs_n, offs_d,
            offs_dt, stride_dkn, stride_dkd, T_K, HEAD_DIM, HAS_TAIL,
        )  # fmt: skip


@tuned(DQ_CONFIGS, DQ_KEY, prune_by_head_dim)
@triton.jit
def _dq_kernel(
    Q, K, V, DO, O, Lse, Delta, DQ,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_dqb, stride_dqh, stride_dqm, stride_dqd,
    H, T_Q, T_K, WINDOW, scale, T_Q_BUCKET, T_K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr,
    HAS_TAIL: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """dQ for BLOCK_M queries of one (batch, head), looping over the key blocks they see.

    Also forms delta = rowsum(dO * O) for its rows and stores it for ``_dkdv_kernel``,
    which runs after it: the program holds dO already, so this costs one read of an O
    tile, and saves a launch (host time is the limit at small shapes). Head dim split
    as in ``_dkdv_kernel``.
    """
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    dtype = Q.dtype.element_ty
    qk_scale_log2 = scale * _LOG2E

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d, offs_dt = split_offsets(BLOCK_D, BLOCK_DT, HAS_TAIL)
    row_ok = offs_m < T_Q
    K_bh = K + b * stride_kb + h * stride_kh
    V_bh = V + b * stride_vb + h * stride_vh

    q, q_t = load_split(
        Q + b * stride_qb + h * stride_qh, offs_m, offs_d, offs_dt, stride_qm, stride_qd, T_Q,
        HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    do, do_t = load_split(
        DO + b * stride_dob + h * stride_doh, offs_m, offs_d, offs_dt, stride_dom, stride_dod,
        T_Q, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    o, o_t = load_split(
        O + b * stride_ob + h * stride_oh, offs_m, offs_d, offs_dt, stride_om, stride_od, T_Q,
        HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    if HAS_TAIL:
        delta += tl.sum(o_t.to(tl.float32) * do_t.to(tl.float32), 1)
    tl.store(Delta + bh.to(tl.int64) * T_Q + offs_m, delta, mask=row_ok)
    lse_log2 = tl.load(Lse + bh.to(tl.int64) * T_Q + offs_m, mask=row_ok, other=0.0) * _LOG2E
    dq, dq_t = zeros_split(BLOCK_M, BLOCK_D, BLOCK_DT, HAS_TAIL)

    lo, hi = key_range(start_m, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k, k_t = load_split(
            K_bh, offs_n, offs_d, offs_dt, stride_kn, stride_kd, T_K, HEAD_DIM, HAS_TAIL
        )
        v, v_t = load_split(
            V_bh, offs_n, offs_d, offs_dt, stride_vn, stride_vd, T_K, HEAD_DIM, HAS_TAIL
        )
        s = mm_nt(q, q_t, k, k_t, DOT_FP32, HAS_TAIL)
        p = tl.exp2(s * qk_scale_log2 - lse_log2[:, None])
        if not tile_fully_visible(
            start_m, start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
        ):
            p = tl.where(visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW), p, 0.0)
        dp = mm_nt(do, do_t, v, v_t, DOT_FP32, HAS_TAIL)
        ds = (p * (dp - delta[:, None])).to(dtype)
        dq += mm(ds, k, DOT_FP32)
        if HAS_TAIL:
            dq_t += mm(ds, k_t, DOT_FP32)

    store_split(
        DQ + b * stride_dqb + h * stride_dqh, dq * scale, dq_t * scale, offs_m, offs_d, offs_dt,
        stride_dqm, stride_dqd, T_Q, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# launchers

# For A/B probes only (docs/probes.md): False runs D=80 / 96 as one 128-wide padded tile,
# as before the head-dim split. BLOCK_DT is in DKDV_KEY and DQ_KEY, so both tune apart.
_SPLIT_HEAD_DIM = True

# Cached launches (kernels/_launch.py): the tensors come first in every signature.
_launch_dkdv_kernel = CachedLauncher(_dkdv_kernel, n_tensors=8)
_launch_dq = CachedLauncher(_dq_kernel, n_tensors=8)

# Public handles for tools and tests (scripts/, tests/test_launch.py): the autotuned kernels
# (triton Autotuners: ``.configs``, ``.fn``, ``.cache``) and their cached launchers
# (kernels._launch.CachedLauncher: counters ``cached_launches``, ``direct_launches``).
AUTOTUNED = {"dkdv": _dkdv_kernel, "dq": _dq_kernel}
LAUNCHERS = {"dkdv": _launch_dkdv_kernel, "dq": _launch_dq}


def _launch_dkdv(q, k, v, do, lse, delta, dk, dv, *, is_causal, window, scale, dv_only):
    batch, heads, t_q, head_dim = q.shape
    t_k = k.shape[2]
    bd, bdt = head_dim_tiles(head_dim, _SPLIT_HEAD_DIM)

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
        BLOCK_D=bd,
        BLOCK_DT=bdt,
        HAS_TAIL=bdt > 0,
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
    is_causal, window, scale = check_launch_inputs(
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
    bd, bdt = head_dim_tiles(head_dim, _SPLIT_HEAD_DIM)

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
        BLOCK_D=bd,
        BLOCK_DT=bdt,
        HAS_TAIL=bdt > 0,
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
    is_causal, window, scale = check_launch_inputs(
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
