"""Triton double backward of attention: the backward of ``fused_attention_backward``.

Layers: private ``@triton.jit`` kernels (their loop bodies in ``@triton.jit`` helpers,
which Triton inlines) -> launcher ``fused_attention_double_backward`` (validate with
kernels/contract.py, allocate, pick the grid, launch) -> attention.py's
``_FusedBackward.backward`` -> ``kernels.attention``. Tuning: tuning.py.

Given cotangents u, w, z of (dQ, dK, dV) (any may be None = zero), returns the
gradients of <u, dQ> + <w, dK> + <z, dV> w.r.t. (Q, K, V, dO). Terms (c = scale;
docs/gradgrad.md, kernels/reference.py ``attention_double_backward``):

    P = exp(c Q K^T - lse), dP = dO V^T, delta = rowsum(P * dP), dS = P * (dP - delta)
    G = c (u K^T + Q w^T)                         H = dO z^T
    gamma = rowsum(P * G)                         rho = rowsum(P * (G * dP + H)) - 2 delta gamma
    A = P * (G - gamma)                           C = P * (G * (dP - delta) - gamma dP + H - rho)
    grad Q = c (dS w + C K)    grad K = c (dS^T u + C^T Q)    grad V = A^T dO    grad dO = P z + A V

(rowsum(P * H) = rowsum(dO * (P z)), which is how the rows pass gets it for free.)

Two launches, all streaming T x D tiles with P, dP, G, H recomputed from lse; no T x T
tensor, no atomics (deterministic):

1+2. ``_gradgrad_rows_kernel``, one program per BLOCK_M query rows, two loops over the
   visible key blocks in the same program (Q, dO, u stay loaded between them):
   loop 1: S, G (2), dP, P z              -> delta, gamma, rho (stored for pass 3), P z kept
   loop 2: S, G (2), dP, H, C K, dS w, A V -> grad Q, grad dO = P z + A V
3. ``_gradgrad_cols_kernel``, one program per BLOCK_N keys, loop over visible query blocks:
   S^T, G^T (2), dP^T, H^T, C^T Q, dS^T u, A^T dO -> grad K, grad V

delta is rowsum(P * dP) from loop 1, not rowsum(dO * O) as in the backward: O is stored
in 16 bits, and C multiplies delta's error by G. With inputs sharing an offset of 5 (bf16)
the O-based delta gave grad K 3x the same-dtype math error; the exact one 0.4x.

Matmuls of BLOCK_M x BLOCK_N x D per visible tile, all cotangents given: 5 + 8 + 8 = 21,
i.e. 21 matmuls of 2 * Tq * Tk * D FLOPs times the visible fraction. Missing cotangents
drop theirs (constexpr flags): u only 14, w only 14, z only 8, u and w 18.

Head dim: D columns are one tile of BLOCK_D = next power of two, or for D = 80 or 96 a
main tile of 64 plus a tail of BLOCK_DT = 16 or 32 (``head_dim_split``; constexpr
HAS_TAIL). Every D-wide operand and fp32 accumulator is then a (main, tail) pair, each
matmul contracting over D (S, G, dP, H) the sum of two dots into one accumulator, and each
D-wide result (P z, A V, dS w, C K and their transposes) two dots, one per part: still 21
matmuls, now of 80 / 96 issued columns at D=80 / 96 instead of 128 (1.6x / 1.33x less
dot work). Without a tail the tail tiles are placeholders never read: the PTX at D=64 and
D=128 is what the one-tile kernels compiled to (sm_90, triton 3.9).
Tried and rejected (numerics): A V = (P * G) V - gamma O in loop 1 (one accumulator fewer,
one matmul fewer) cancels badly when G has a large row mean: 8x the math error on grad K.
Follow-up: loop 2 and pass 3 recompute the same S, G, dP, H tiles; accumulating grad K
and grad V with atomics from loop 2 would drop pass 3's 5 recomputing matmuls (21 -> 16)
at the price of fp32 atomics (non-deterministic) and a zeroed fp32 buffer.
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
    GRADGRAD_COLS_CONFIGS,
    GRADGRAD_KEY,
    GRADGRAD_ROWS_CONFIGS,
    length_bucket,
    prune_by_head_dim,
    tuned,
)

__all__ = ["AUTOTUNED", "LAUNCHERS", "fused_attention_double_backward", "gradgrad_matmul_count"]

_LOG2E = tl.constexpr(LOG2E)


def gradgrad_matmul_count(has_gdq: bool = True, has_gdk: bool = True, has_gdv: bool = True) -> int:
    """Matmuls of 2 * Tq * Tk * D FLOPs (times the visible fraction) the double backward does.

    The FLOP model (harness/flops.py) reads this; it follows the constexpr branches of
    the two kernels below (loop 1 + loop 2 + pass 3).
    """
    has_g = has_gdq or has_gdk
    if not (has_g or has_gdv):
        return 0
    g = int(has_gdq) + int(has_gdk)  # u K^T and Q w^T
    loop1 = 1 + (g + 1 if has_g else 0) + int(has_gdv)  # S; G, dP; P z
    loop2 = 1 + (g + 1 if has_g else 0) + int(has_gdv) + 1 + int(has_gdk) + int(has_g)
    cols = 1 + (g + 1 if has_g else 0) + int(has_gdv) + 1 + int(has_gdq) + int(has_g)
    return loop1 + loop2 + cols


@triton.jit
def _g_scores(
    q, q_t, u, u_t, k, k_t, w, w_t, scale,
    HAS_GDQ: tl.constexpr, HAS_GDK: tl.constexpr, HAS_TAIL: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    """G = c (u K^T + Q w^T) for one tile (rows of q/u x rows of k/w); call with the transposed
    roles (k, w, q, u) to get G^T. ``*_t``: the head-dim tails (read only with HAS_TAIL)."""
    if HAS_GDQ:
        g = mm_nt(u, u_t, k, k_t, DOT_FP32, HAS_TAIL)
        if HAS_GDK:
            g += mm_nt(q, q_t, w, w_t, DOT_FP32, HAS_TAIL)
    else:
        g = mm_nt(q, q_t, w, w_t, DOT_FP32, HAS_TAIL)
    return g * scale


@triton.jit
def _row_probs(
    q, q_t, k, k_t, lse_log2, qk_scale_log2, start_m, start_n, offs_m, offs_n, T_Q, T_K, WINDOW,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_TAIL: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    """P (rows x keys) of one tile from the saved lse; zero where a key is masked."""
    s = mm_nt(q, q_t, k, k_t, DOT_FP32, HAS_TAIL)
    p = tl.exp2(s * qk_scale_log2 - lse_log2[:, None])
    if not tile_fully_visible(
        start_m, start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
    ):
        p = tl.where(visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW), p, 0.0)
    return p


@triton.jit
def _rows_stats_step(
    delta, gamma, rho, grad_do, grad_do_t, q, q_t, u, u_t, do, do_t,
    lse_log2, qk_scale_log2, scale,
    start_m, start_n, offs_m, offs_d, offs_dt, K_bh, V_bh, W_bh, Z_bh,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_wn, stride_wd, stride_zn, stride_zd,
    T_Q, T_K, WINDOW,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    HAS_GDQ: tl.constexpr, HAS_GDK: tl.constexpr, HAS_GDV: tl.constexpr, HAS_G: tl.constexpr,
    HAS_TAIL: tl.constexpr, DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Loop 1, one key tile: adds to delta, gamma, rho (before its -2 delta gamma) and P z."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k, k_t = load_split(
        K_bh, offs_n, offs_d, offs_dt, stride_kn, stride_kd, T_K, HEAD_DIM, HAS_TAIL
    )
    p = _row_probs(
        q, q_t, k, k_t, lse_log2, qk_scale_log2, start_m, start_n, offs_m, offs_n, T_Q, T_K,
        WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW, HAS_TAIL, DOT_FP32,
    )  # fmt: skip
    if HAS_G:
        w, w_t = k, k_t  # placeholders, never read without HAS_GDK
        if HAS_GDK:
            w, w_t = load_split(
                W_bh, offs_n, offs_d, offs_dt, stride_wn, stride_wd, T_K, HEAD_DIM, HAS_TAIL
            )
        v, v_t = load_split(
            V_bh, offs_n, offs_d, offs_dt, stride_vn, stride_vd, T_K, HEAD_DIM, HAS_TAIL
        )
        pg = p * _g_scores(
            q, q_t, u, u_t, k, k_t, w, w_t, scale, HAS_GDQ, HAS_GDK, HAS_TAIL, DOT_FP32
        )
        dp = mm_nt(do, do_t, v, v_t, DOT_FP32, HAS_TAIL)
        delta += tl.sum(p * dp, 1)
        gamma += tl.sum(pg, 1)
        rho += tl.sum(pg * dp, 1)
    if HAS_GDV:
        z, z_t = load_split(
            Z_bh, offs_n, offs_d, offs_dt, stride_zn, stride_zd, T_K, HEAD_DIM, HAS_TAIL
        )
        p16 = p.to(q.dtype)
        grad_do += mm(p16, z, DOT_FP32)
        if HAS_TAIL:
            grad_do_t += mm(p16, z_t, DOT_FP32)
    return delta, gamma, rho, grad_do, grad_do_t


@triton.jit
def _rows_grad_step(
    grad_q, grad_q_t, grad_do, grad_do_t, delta, gamma, rho, q, q_t, u, u_t, do, do_t,
    lse_log2, qk_scale_log2, scale,
    start_m, start_n, offs_m, offs_d, offs_dt, K_bh, V_bh, W_bh, Z_bh,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_wn, stride_wd, stride_zn, stride_zd,
    T_Q, T_K, WINDOW,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    HAS_GDQ: tl.constexpr, HAS_GDK: tl.constexpr, HAS_GDV: tl.constexpr, HAS_G: tl.constexpr,
    HAS_TAIL: tl.constexpr, DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Loop 2, one key tile: adds to grad Q (before its factor c) and to grad dO (A V)."""
    dtype = q.dtype
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k, k_t = load_split(
        K_bh, offs_n, offs_d, offs_dt, stride_kn, stride_kd, T_K, HEAD_DIM, HAS_TAIL
    )
    p = _row_probs(
        q, q_t, k, k_t, lse_log2, qk_scale_log2, start_m, start_n, offs_m, offs_n, T_Q, T_K,
        WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW, HAS_TAIL, DOT_FP32,
    )  # fmt: skip
    # inner = G (dP - delta) - gamma dP + H - rho, so that C = P * inner
    inner = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32) - rho[:, None]
    if HAS_G:
        w, w_t = k, k_t
        if HAS_GDK:
            w, w_t = load_split(
                W_bh, offs_n, offs_d, offs_dt, stride_wn, stride_wd, T_K, HEAD_DIM, HAS_TAIL
            )
        v, v_t = load_split(
            V_bh, offs_n, offs_d, offs_dt, stride_vn, stride_vd, T_K, HEAD_DIM, HAS_TAIL
        )
        g = _g_scores(q, q_t, u, u_t, k, k_t, w, w_t, scale, HAS_GDQ, HAS_GDK, HAS_TAIL, DOT_FP32)
        dp = mm_nt(do, do_t, v, v_t, DOT_FP32, HAS_TAIL)
        inner += g * (dp - delta[:, None]) - gamma[:, None] * dp
        a = (p * (g - gamma[:, None])).to(dtype)
        grad_do += mm(a, v, DOT_FP32)
        if HAS_TAIL:
            grad_do_t += mm(a, v_t, DOT_FP32)
        if HAS_GDK:
            ds = (p * (dp - delta[:, None])).to(dtype)
            grad_q += mm(ds, w, DOT_FP32)
            if HAS_TAIL:
                grad_q_t += mm(ds, w_t, DOT_FP32)
    if HAS_GDV:
        z, z_t = load_split(
            Z_bh, offs_n, offs_d, offs_dt, stride_zn, stride_zd, T_K, HEAD_DIM, HAS_TAIL
        )
        inner += mm_nt(do, do_t, z, z_t, DOT_FP32, HAS_TAIL)
    c = (p * inner).to(dtype)
    grad_q += mm(c, k, DOT_FP32)
    if HAS_TAIL:
        grad_q_t += mm(c, k_t, DOT_FP32)
    return grad_q, grad_q_t, grad_do, grad_do_t


@tuned(GRADGRAD_ROWS_CONFIGS, GRADGRAD_KEY, prune_by_head_dim)
@triton.jit
def _gradgrad_rows_kernel(
    Q, K, V, DO, U, W, Z, Lse, Delta, Gamma, Rho, GQ, GDO,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_ub, stride_uh, stride_um, stride_ud,
    stride_wb, stride_wh, stride_wn, stride_wd,
    stride_zb, stride_zh, stride_zn, stride_zd,
    stride_gqb, stride_gqh, stride_gqm, stride_gqd,
    stride_gdob, stride_gdoh, stride_gdom, stride_gdod,
    H, T_Q, T_K, WINDOW, scale, T_Q_BUCKET, T_K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr,
    HAS_TAIL: tl.constexpr, IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_GDQ: tl.constexpr, HAS_GDK: tl.constexpr,
    HAS_GDV: tl.constexpr, HAS_G: tl.constexpr, DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Passes 1 and 2 for BLOCK_M query rows: gamma, rho, grad Q, grad dO.

    Head dim: columns [0, BLOCK_D) in one set of tiles, with HAS_TAIL [BLOCK_D,
    BLOCK_D + BLOCK_DT) in a second (``*_t``); the tail tiles are placeholders otherwise.
    """
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    qk_scale_log2 = scale * _LOG2E

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d, offs_dt = split_offsets(BLOCK_D, BLOCK_DT, HAS_TAIL)
    row_ok = offs_m < T_Q
    K_bh = K + b * stride_kb + h * stride_kh
    V_bh = V + b * stride_vb + h * stride_vh
    W_bh = W + b * stride_wb + h * stride_wh
    Z_bh = Z + b * stride_zb + h * stride_zh

    q, q_t = load_split(
        Q + b * stride_qb + h * stride_qh, offs_m, offs_d, offs_dt, stride_qm, stride_qd, T_Q,
        HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    do, do_t = load_split(
        DO + b * stride_dob + h * stride_doh, offs_m, offs_d, offs_dt, stride_dom, stride_dod,
        T_Q, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    u, u_t = q, q_t  # placeholders, never read without HAS_GDQ
    if HAS_GDQ:
        u, u_t = load_split(
            U + b * stride_ub + h * stride_uh, offs_m, offs_d, offs_dt, stride_um, stride_ud,
            T_Q, HEAD_DIM, HAS_TAIL,
        )  # fmt: skip
    row_base = bh.to(tl.int64) * T_Q
    lse_log2 = tl.load(Lse + row_base + offs_m, mask=row_ok, other=0.0) * _LOG2E

    lo, hi = key_range(start_m, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)

    # ---- loop 1: row statistics delta, gamma, rho, and P z (the first term of grad dO)
    # delta = rowsum(P * dP) here, not rowsum(dO * O): O is rounded to 16 bits, and with
    # inputs sharing a large offset that rounding alone gave 3x the math error on grad K.
    delta = tl.zeros([BLOCK_M], dtype=tl.float32)
    gamma = tl.zeros([BLOCK_M], dtype=tl.float32)
    rho = tl.zeros([BLOCK_M], dtype=tl.float32)
    grad_do, grad_do_t = zeros_split(BLOCK_M, BLOCK_D, BLOCK_DT, HAS_TAIL)
    for start_n in range(lo, hi, BLOCK_N):
        delta, gamma, rho, grad_do, grad_do_t = _rows_stats_step(
            delta, gamma, rho, grad_do, grad_do_t, q, q_t, u, u_t, do, do_t,
            lse_log2, qk_scale_log2, scale,
            start_m, start_n, offs_m, offs_d, offs_dt, K_bh, V_bh, W_bh, Z_bh,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_wn, stride_wd, stride_zn, stride_zd,
            T_Q, T_K, WINDOW, HEAD_DIM, IS_CAUSAL, HAS_WINDOW, HAS_GDQ, HAS_GDK, HAS_GDV, HAS_G,
            HAS_TAIL, DOT_FP32, BLOCK_M, BLOCK_N,
        )  # fmt: skip
    if HAS_GDV:
        # rowsum(P * (dO z^T)) = rowsum(dO * (P z)): no T x T matmul for the H part of rho.
        rho += tl.sum(do.to(tl.float32) * grad_do, 1)
        if HAS_TAIL:
            rho += tl.sum(do_t.to(tl.float32) * grad_do_t, 1)
    rho -= 2.0 * delta * gamma
    tl.store(Delta + row_base + offs_m, delta, mask=row_ok)
    tl.store(Gamma + row_base + offs_m, gamma, mask=row_ok)
    tl.store(Rho + row_base + offs_m, rho, mask=row_ok)

    # ---- loop 2: grad Q = c (dS w + C K), grad dO = P z + A V
    grad_q, grad_q_t = zeros_split(BLOCK_M, BLOCK_D, BLOCK_DT, HAS_TAIL)
    for start_n in range(lo, hi, BLOCK_N):
        grad_q, grad_q_t, grad_do, grad_do_t = _rows_grad_step(
            grad_q, grad_q_t, grad_do, grad_do_t, delta, gamma, rho, q, q_t, u, u_t, do, do_t,
            lse_log2, qk_scale_log2, scale,
            start_m, start_n, offs_m, offs_d, offs_dt, K_bh, V_bh, W_bh, Z_bh,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_wn, stride_wd, stride_zn, stride_zd,
            T_Q, T_K, WINDOW, HEAD_DIM, IS_CAUSAL, HAS_WINDOW, HAS_GDQ, HAS_GDK, HAS_GDV, HAS_G,
            HAS_TAIL, DOT_FP32, BLOCK_M, BLOCK_N,
        )  # fmt: skip

    store_split(
        GQ + b * stride_gqb + h * stride_gqh, grad_q * scale, grad_q_t * scale, offs_m, offs_d,
        offs_dt, stride_gqm, stride_gqd, T_Q, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    store_split(
        GDO + b * stride_gdob + h * stride_gdoh, grad_do, grad_do_t, offs_m, offs_d, offs_dt,
        stride_gdom, stride_gdod, T_Q, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip


@triton.jit
def _cols_step(
    grad_k, grad_k_t, grad_v, grad_v_t, k, k_t, v, v_t, w, w_t, z, z_t,
    qk_scale_log2, scale, start_m, start_n, offs_n, offs_d, offs_dt,
    Q_bh, DO_bh, U_bh, Lse, Delta, Gamma, Rho, row_base,
    stride_qm, stride_qd, stride_dom, stride_dod, stride_um, stride_ud,
    T_Q, T_K, WINDOW,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    HAS_GDQ: tl.constexpr, HAS_GDK: tl.constexpr, HAS_GDV: tl.constexpr, HAS_G: tl.constexpr,
    HAS_TAIL: tl.constexpr, DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Pass 3, one query tile: adds to grad K (before its factor c) and grad V."""
    dtype = k.dtype
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row_ok = offs_m < T_Q
    q, q_t = load_split(
        Q_bh, offs_m, offs_d, offs_dt, stride_qm, stride_qd, T_Q, HEAD_DIM, HAS_TAIL
    )
    do, do_t = load_split(
        DO_bh, offs_m, offs_d, offs_dt, stride_dom, stride_dod, T_Q, HEAD_DIM, HAS_TAIL
    )
    lse_log2 = tl.load(Lse + row_base + offs_m, mask=row_ok, other=0.0) * _LOG2E
    rho = tl.load(Rho + row_base + offs_m, mask=row_ok, other=0.0)
    s_t = mm_nt(k, k_t, q, q_t, DOT_FP32, HAS_TAIL)
    p_t = tl.exp2(s_t * qk_scale_log2 - lse_log2[None, :])
    if not tile_fully_visible(
        start_m, start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
    ):
        vis = visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW)
        p_t = tl.where(tl.trans(vis), p_t, 0.0)
    inner_t = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32) - rho[None, :]
    if HAS_G:
        u, u_t = q, q_t
        if HAS_GDQ:
            u, u_t = load_split(
                U_bh, offs_m, offs_d, offs_dt, stride_um, stride_ud, T_Q, HEAD_DIM, HAS_TAIL
            )
        delta = tl.load(Delta + row_base + offs_m, mask=row_ok, other=0.0)
        gamma = tl.load(Gamma + row_base + offs_m, mask=row_ok, other=0.0)
        # G^T = c (w Q^T + K u^T): _g_scores with (q, u) and (k, w) swapped, flags too.
        g_t = _g_scores(k, k_t, w, w_t, q, q_t, u, u_t, scale, HAS_GDK, HAS_GDQ, HAS_TAIL, DOT_FP32)
        dp_t = mm_nt(v, v_t, do, do_t, DOT_FP32, HAS_TAIL)
        inner_t += g_t * (dp_t - delta[None, :]) - gamma[None, :] * dp_t
        a_t = (p_t * (g_t - gamma[None, :])).to(dtype)
        grad_v += mm(a_t, do, DOT_FP32)
        if HAS_TAIL:
            grad_v_t += mm(a_t, do_t, DOT_FP32)
        if HAS_GDQ:
            ds_t = (p_t * (dp_t - delta[None, :])).to(dtype)
            grad_k += mm(ds_t, u, DOT_FP32)
            if HAS_TAIL:
                grad_k_t += mm(ds_t, u_t, DOT_FP32)
    if HAS_GDV:
        inner_t += mm_nt(z, z_t, do, do_t, DOT_FP32, HAS_TAIL)
    c_t = (p_t * inner_t).to(dtype)
    grad_k += mm(c_t, q, DOT_FP32)
    if HAS_TAIL:
        grad_k_t += mm(c_t, q_t, DOT_FP32)
    return grad_k, grad_k_t, grad_v, grad_v_t


@tuned(GRADGRAD_COLS_CONFIGS, GRADGRAD_KEY, prune_by_head_dim)
@triton.jit
def _gradgrad_cols_kernel(
    Q, K, V, DO, U, W, Z, Lse, Delta, Gamma, Rho, GK, GV,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_ub, stride_uh, stride_um, stride_ud,
    stride_wb, stride_wh, stride_wn, stride_wd,
    stride_zb, stride_zh, stride_zn, stride_zd,
    stride_gkb, stride_gkh, stride_gkn, stride_gkd,
    stride_gvb, stride_gvh, stride_gvn, stride_gvd,
    H, T_Q, T_K, WINDOW, scale, T_Q_BUCKET, T_K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr,
    HAS_TAIL: tl.constexpr, IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_GDQ: tl.constexpr, HAS_GDK: tl.constexpr,
    HAS_GDV: tl.constexpr, HAS_G: tl.constexpr, DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Pass 3 for BLOCK_N keys: grad K = c (dS^T u + C^T Q), grad V = A^T dO.

    Transposed orientation (keys x queries): every score-sized tile here is the
    transpose of the rows kernel's, and the row statistics broadcast along axis 0.
    Head dim split as in the rows kernel.
    """
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    qk_scale_log2 = scale * _LOG2E

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d, offs_dt = split_offsets(BLOCK_D, BLOCK_DT, HAS_TAIL)
    Q_bh = Q + b * stride_qb + h * stride_qh
    DO_bh = DO + b * stride_dob + h * stride_doh
    U_bh = U + b * stride_ub + h * stride_uh
    row_base = bh.to(tl.int64) * T_Q

    k, k_t = load_split(
        K + b * stride_kb + h * stride_kh, offs_n, offs_d, offs_dt, stride_kn, stride_kd, T_K,
        HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    # placeholders, never read without their flag
    w, w_t = k, k_t
    v, v_t = k, k_t
    z, z_t = k, k_t
    if HAS_G:
        v, v_t = load_split(
            V + b * stride_vb + h * stride_vh, offs_n, offs_d, offs_dt, stride_vn, stride_vd,
            T_K, HEAD_DIM, HAS_TAIL,
        )  # fmt: skip
    if HAS_GDK:
        w, w_t = load_split(
            W + b * stride_wb + h * stride_wh, offs_n, offs_d, offs_dt, stride_wn, stride_wd,
            T_K, HEAD_DIM, HAS_TAIL,
        )  # fmt: skip
    if HAS_GDV:
        z, z_t = load_split(
            Z + b * stride_zb + h * stride_zh, offs_n, offs_d, offs_dt, stride_zn, stride_zd,
            T_K, HEAD_DIM, HAS_TAIL,
        )  # fmt: skip

    grad_k, grad_k_t = zeros_split(BLOCK_N, BLOCK_D, BLOCK_DT, HAS_TAIL)
    grad_v, grad_v_t = zeros_split(BLOCK_N, BLOCK_D, BLOCK_DT, HAS_TAIL)
    lo, hi = query_range(start_n, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    for start_m in range(lo, hi, BLOCK_M):
        grad_k, grad_k_t, grad_v, grad_v_t = _cols_step(
            grad_k, grad_k_t, grad_v, grad_v_t, k, k_t, v, v_t, w, w_t, z, z_t,
            qk_scale_log2, scale, start_m, start_n, offs_n, offs_d, offs_dt,
            Q_bh, DO_bh, U_bh, Lse, Delta, Gamma, Rho, row_base,
            stride_qm, stride_qd, stride_dom, stride_dod, stride_um, stride_ud,
            T_Q, T_K, WINDOW, HEAD_DIM, IS_CAUSAL, HAS_WINDOW, HAS_GDQ, HAS_GDK, HAS_GDV, HAS_G,
            HAS_TAIL, DOT_FP32, BLOCK_M, BLOCK_N,
        )  # fmt: skip

    store_split(
        GK + b * stride_gkb + h * stride_gkh, grad_k * scale, grad_k_t * scale, offs_n, offs_d,
        offs_dt, stride_gkn, stride_gkd, T_K, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip
    store_split(
        GV + b * stride_gvb + h * stride_gvh, grad_v, grad_v_t, offs_n, offs_d, offs_dt,
        stride_gvn, stride_gvd, T_K, HEAD_DIM, HAS_TAIL,
    )  # fmt: skip


# For A/B probes only (docs/probes.md, head-dim split): False runs D=80 / 96 as one 128-wide
# padded tile, as before the split. BLOCK_DT is in GRADGRAD_KEY, so both tune apart.
_SPLIT_HEAD_DIM = True

# Cached launches (kernels/_launch.py): 11 inputs and 2 outputs lead each signature.
_launch_rows = CachedLauncher(_gradgrad_rows_kernel, n_tensors=13)
_launch_cols = CachedLauncher(_gradgrad_cols_kernel, n_tensors=13)

# Public handles for tools and tests (scripts/, tests/test_launch.py): the autotuned kernels
# (triton Autotuners: ``.configs``, ``.fn``, ``.cache``) and their cached launchers
# (kernels._launch.CachedLauncher: counters ``cached_launches``, ``direct_launches``).
AUTOTUNED = {"rows": _gradgrad_rows_kernel, "cols": _gradgrad_cols_kernel}
LAUNCHERS = {"rows": _launch_rows, "cols": _launch_cols}


def fused_attention_double_backward(q, k, v, o, lse, do, gdq, gdk, gdv, *, causal, window, scale):
    """Gradients of <gdq, dq> + <gdk, dk> + <gdv, dv> w.r.t. (q, k, v, do).

    (dq, dk, dv) = fused_attention_backward(q, k, v, o, lse, do). Same conventions:
    q, o, do, gdq: (B, H, Tq, D); k, v, gdk, gdv: (B, H, Tk, D); fp16 or bf16, any
    strides; lse contiguous fp32 (B, H, Tq). gdq / gdk / gdv may be None (zero),
    which skips their matmuls (``gradgrad_matmul_count``). Returns contiguous
    (grad_q, grad_k, grad_v, grad_do) in the input dtype.
    """
    extra = [("o", o, q), ("do", do, q)]
    extra += [(n, t, like) for n, t, like in (("gdq", gdq, q), ("gdk", gdk, k), ("gdv", gdv, v))]
    extra = [e for e in extra if e[1] is not None]
    is_causal, window, scale = check_launch_inputs(
        q, k, v, lse, causal=causal, window=window, scale=scale, extra=extra
    )
    batch, heads, t_q, head_dim = q.shape
    t_k = k.shape[2]
    grad_q = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    grad_k = torch.empty(k.shape, device=q.device, dtype=q.dtype)
    grad_v = torch.empty(v.shape, device=q.device, dtype=q.dtype)
    grad_do = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    if (gdq is None and gdk is None and gdv is None) or q.numel() == 0 or k.numel() == 0:
        return grad_q.zero_(), grad_k.zero_(), grad_v.zero_(), grad_do.zero_()

    # Row statistics, written by the rows kernel, read by the columns kernel. o is not read:
    # delta is recomputed exactly as rowsum(P * dP) (see loop 1).
    delta = torch.empty((batch, heads, t_q), device=q.device, dtype=torch.float32)
    gamma = torch.empty_like(delta)
    rho = torch.empty_like(delta)
    # A missing cotangent is never read (constexpr flag); a real tensor keeps the signature.
    u = q if gdq is None else gdq
    w = k if gdk is None else gdk
    z = v if gdv is None else gdv
    bd, bdt = head_dim_tiles(head_dim, _SPLIT_HEAD_DIM)
    common = dict(
        HEAD_DIM=head_dim,
        BLOCK_D=bd,
        BLOCK_DT=bdt,
        HAS_TAIL=bdt > 0,
        IS_CAUSAL=is_causal,
        HAS_WINDOW=window > 0,
        HAS_GDQ=gdq is not None,
        HAS_GDK=gdk is not None,
        HAS_GDV=gdv is not None,
        # G = c (u K^T + Q w^T) exists; a launcher flag, not `or` in the kernel, for triton 3.6
        HAS_G=gdq is not None or gdk is not None,
        DOT_FP32=interpreter_active(),
    )
    scalars = (heads, t_q, t_k, window, scale, length_bucket(t_q), length_bucket(t_k))
    inputs = (q, k, v, do, u, w, z, lse, delta, gamma, rho)
    input_strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    input_strides += (*u.stride(), *w.stride(), *z.stride())

    def rows_grid(meta):
        return (ceil_div(t_q, meta["BLOCK_M"]), batch * heads)

    _launch_rows(
        rows_grid,
        *inputs,
        grad_q,
        grad_do,
        *input_strides,
        *grad_q.stride(),
        *grad_do.stride(),
        *scalars,
        **common,
    )

    def cols_grid(meta):
        return (ceil_div(t_k, meta["BLOCK_N"]), batch * heads)

    # Reads gamma and rho, so it runs after the rows kernel (same stream).
    _launch_cols(
        cols_grid,
        *inputs,
        grad_k,
        grad_v,
        *input_strides,
        *grad_k.stride(),
        *grad_v.stride(),
        *scalars,
        **common,
    )
    return grad_q, grad_k, grad_v, grad_do
