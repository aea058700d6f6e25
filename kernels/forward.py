"""Triton forward: O = softmax(scale * Q K^T) V and the row logsumexp, FlashAttention-2 style.

Layers: ``_attention_forward_kernel`` (jit) -> ``attention_forward`` (launcher:
allocates, picks the grid; kernels.attention checked the inputs, kernels/contract.py)
-> the autograd Functions in attention.py -> ``kernels.attention``. Tuning: tuning.py.

One program owns BLOCK_M query rows of one (batch, head) and streams the key
tiles it can see (``key_range``), keeping a running max ``m_i`` and sum ``l_i``
in base 2 (online softmax). Work per program: 4 * BLOCK_M * keys_seen * D FLOPs;
bytes: Q tile once, every visible K/V tile once per query block.

Head dim, as in the backward and grad-grad kernels: one tile of BLOCK_D = next power of
two, or for D = 80 or 96 a main tile of 64 plus a full tail of BLOCK_DT = 16 or 32
(``head_dim_split``; constexpr HAS_TAIL). Q, K, V, the fp32 accumulator and O are then
(main, tail) pairs, S the sum of two dots, P V one dot per part. The main tile's loads
keep their code (a split main tile is all inside D, so interior tiles load it unmasked);
tails load through ``_load_tail``. Without a tail the PTX at D=64 and D=128 is the
one-tile kernel's (sm_90, triton 3.9).
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
    load_tile,
    mm,
    mm_nt,
    split_offsets,
    store_tile,
    unmasked_key_range,
    visible,
    zeros_split,
)
from .tuning import (
    FORWARD_CONFIGS,
    FORWARD_KEY,
    length_bucket,
    prune_forward_configs,
    tuned,
)


@triton.jit
def _load_tail(
    base, cols, offs_dt, stride_n, stride_d, T_K,
    HEAD_DIM: tl.constexpr, D_END: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    """A K or V tail tile (columns offs_dt, ending at D_END): key-bound mask only when
    MASKED, a column mask only when the tail pads past HEAD_DIM (never with
    ``head_dim_split``'s full tails; kept so the kernel stays right for any tile pair)."""
    ptrs = base + cols[:, None] * stride_n + offs_dt[None, :] * stride_d
    if MASKED:
        x = tl.load(ptrs, mask=(cols[:, None] < T_K) & (offs_dt[None, :] < HEAD_DIM), other=0.0)
    elif HEAD_DIM < D_END:
        x = tl.load(ptrs, mask=(cols[:, None] >= 0) & (offs_dt[None, :] < HEAD_DIM), other=0.0)
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def _forward_step(
    acc, acc_t, l_i, m_i, q, q_t, k_base, v_base, start_n, offs_m, offs_n, offs_d, offs_dt,
    stride_kn, stride_kd, stride_vn, stride_vd, T_Q, T_K, WINDOW, qk_scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr,
    HAS_TAIL: tl.constexpr, IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr, MASKED: tl.constexpr, DOT_FP32: tl.constexpr,
):  # fmt: skip
    """One key tile of the online softmax: returns the updated (acc, acc_t, l_i, m_i).

    ``MASKED=False`` (tiles from ``unmasked_key_range``): keys in bounds and visible to
    every row, so no key-bound load mask, no visibility mask and no -inf guard.
    ``*_t``: the head-dim tails (placeholders without HAS_TAIL).
    """
    cols = start_n + offs_n
    kv_off_k = cols[:, None] * stride_kn + offs_d[None, :] * stride_kd
    kv_off_v = cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
    if MASKED:
        kv_mask = (cols[:, None] < T_K) & (offs_d[None, :] < HEAD_DIM)
        k = tl.load(k_base + kv_off_k, mask=kv_mask, other=0.0)
    elif HEAD_DIM < BLOCK_D:
        kv_mask = (cols[:, None] >= 0) & (offs_d[None, :] < HEAD_DIM)
        k = tl.load(k_base + kv_off_k, mask=kv_mask, other=0.0)
    else:
        k = tl.load(k_base + kv_off_k)
    k_t = k  # placeholder, never read without HAS_TAIL
    if HAS_TAIL:
        k_t = _load_tail(
            k_base, cols, offs_dt, stride_kn, stride_kd, T_K, HEAD_DIM, BLOCK_D + BLOCK_DT, MASKED
        )
    s = mm_nt(q, q_t, k, k_t, DOT_FP32, HAS_TAIL) * qk_scale_log2
    if MASKED:
        vis = visible(offs_m, cols, T_Q, T_K, WINDOW, IS_CAUSAL, HAS_WINDOW)
        s = tl.where(vis, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # Rows with nothing visible yet keep m = -inf; subtract 0 there so exp2 gives 0, not NaN.
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_sub = m_new  # every row saw a finite score in this tile
    p = tl.exp2(s - m_sub[:, None])
    alpha = tl.exp2(m_i - m_sub)
    l_i = l_i * alpha + tl.sum(p, 1)
    # Nested ifs, not `MASKED or ...`: no `or` of constexprs in kernels (fused_gradgrad's
    # HAS_G is a launcher flag for the same reason, triton 3.6).
    if MASKED:
        v = tl.load(v_base + kv_off_v, mask=kv_mask, other=0.0)
    elif HEAD_DIM < BLOCK_D:
        v = tl.load(v_base + kv_off_v, mask=kv_mask, other=0.0)
    else:
        v = tl.load(v_base + kv_off_v)
    acc = acc * alpha[:, None] + mm(p.to(v.dtype), v, DOT_FP32)
    if HAS_TAIL:
        v_t = _load_tail(
            v_base, cols, offs_dt, stride_vn, stride_vd, T_K, HEAD_DIM, BLOCK_D + BLOCK_DT, MASKED
        )
        acc_t = acc_t * alpha[:, None] + mm(p.to(v.dtype), v_t, DOT_FP32)
    return acc, acc_t, l_i, m_new


@tuned(FORWARD_CONFIGS, FORWARD_KEY, prune_forward_configs)
@triton.jit
def _attention_forward_kernel(
    Q,
    K,
    V,
    Out,
    Lse,
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
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    H,
    T_Q,
    T_K,
    WINDOW,
    qk_scale_log2,
    T_Q_BUCKET,
    T_K_BUCKET,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DT: tl.constexpr,
    HAS_TAIL: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    # int64 slice offsets, as in the backward kernels: b * stride_qb passes 2**31 once
    # B * H * T * D does (8 GB of fp16 q on an H200); once per program, not per tile.
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d, offs_dt = split_offsets(BLOCK_D, BLOCK_DT, HAS_TAIL)
    d_ok = offs_d < HEAD_DIM

    q_ptrs = Q + b * stride_qb + h * stride_qh
    q_ptrs += offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=(offs_m[:, None] < T_Q) & d_ok[None, :], other=0.0)
    q_t = q  # placeholder, never read without HAS_TAIL
    if HAS_TAIL:
        q_t = load_tile(
            Q + b * stride_qb + h * stride_qh, offs_m, offs_dt, stride_qm, stride_qd, T_Q,
            HEAD_DIM,
        )  # fmt: skip

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, acc_t = zeros_split(BLOCK_M, BLOCK_D, BLOCK_DT, HAS_TAIL)

    # Three runs over the visible key tiles: masked (a window's lower edge), unmasked (the
    # interior), masked (the causal diagonal and a ragged end of T_K).
    lo, hi = key_range(start_m, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    full_lo, full_hi = unmasked_key_range(
        start_m, lo, hi, T_Q, T_K, WINDOW, BLOCK_M, BLOCK_N, IS_CAUSAL, HAS_WINDOW
    )
    for start_n in range(lo, full_lo, BLOCK_N):
        acc, acc_t, l_i, m_i = _forward_step(
            acc, acc_t, l_i, m_i, q, q_t, k_base, v_base, start_n, offs_m, offs_n, offs_d,
            offs_dt, stride_kn, stride_kd, stride_vn, stride_vd, T_Q, T_K, WINDOW, qk_scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_DT, HAS_TAIL, IS_CAUSAL, HAS_WINDOW, True, DOT_FP32,
        )  # fmt: skip
    for start_n in range(full_lo, full_hi, BLOCK_N):
        acc, acc_t, l_i, m_i = _forward_step(
            acc, acc_t, l_i, m_i, q, q_t, k_base, v_base, start_n, offs_m, offs_n, offs_d,
            offs_dt, stride_kn, stride_kd, stride_vn, stride_vd, T_Q, T_K, WINDOW, qk_scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_DT, HAS_TAIL, IS_CAUSAL, HAS_WINDOW, False, DOT_FP32,
        )  # fmt: skip
    for start_n in range(full_hi, hi, BLOCK_N):
        acc, acc_t, l_i, m_i = _forward_step(
            acc, acc_t, l_i, m_i, q, q_t, k_base, v_base, start_n, offs_m, offs_n, offs_d,
            offs_dt, stride_kn, stride_kd, stride_vn, stride_vd, T_Q, T_K, WINDOW, qk_scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_DT, HAS_TAIL, IS_CAUSAL, HAS_WINDOW, True, DOT_FP32,
        )  # fmt: skip

    row_ok = offs_m < T_Q
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh
    o_ptrs += offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    if HAS_TAIL:
        store_tile(
            Out + b * stride_ob + h * stride_oh, acc_t / l_safe[:, None], offs_m, offs_dt,
            stride_om, stride_od, T_Q, HEAD_DIM,
        )  # fmt: skip
    # Natural-log lse of scale * q k^T: (m + log2 l) / log2(e).
    lse = (m_i + tl.log2(l_safe)) / 1.4426950408889634
    tl.store(Lse + bh.to(tl.int64) * T_Q + offs_m, lse, mask=row_ok)


# Cached launches (kernels/_launch.py): q, k, v, out, lse lead the signature.
_launch_forward = CachedLauncher(_attention_forward_kernel, n_tensors=5)

# Public handles for tools and tests (scripts/, tests/test_launch.py): the autotuned kernel
# (a triton Autotuner: ``.configs``, ``.fn``, ``.cache``) and its cached launcher (a
# kernels._launch.CachedLauncher: counters ``cached_launches``, ``direct_launches``).
AUTOTUNED = {"forward": _attention_forward_kernel}

# For A/B probes only (docs/probes.md): False runs D=80 / 96 as one 128-wide padded tile,
# as before the head-dim split. BLOCK_DT is in FORWARD_KEY, so both tune apart.
_SPLIT_HEAD_DIM = True
LAUNCHERS = {"forward": _launch_forward}


def attention_forward(q, k, v, *, causal: bool, window: int | None, scale: float):
    """Run the Triton forward. Inputs already validated by kernels.attention.

    q: (B, H, Tq, D), k/v: (B, H, Tk, D), fp16 or bf16, same device (CUDA, or CPU
    under TRITON_INTERPRET=1). Returns (o: like q, lse: fp32 (B, H, Tq) contiguous).
    """
    batch, heads, t_q, head_dim = q.shape
    t_k = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty((batch, heads, t_q), device=q.device, dtype=torch.float32)
    is_causal = bool(causal or window is not None)
    bd, bdt = head_dim_tiles(head_dim, _SPLIT_HEAD_DIM)

    def grid(meta):
        return (ceil_div(t_q, meta["BLOCK_M"]), batch * heads)

    _launch_forward(
        grid,
        q,
        k,
        v,
        o,
        lse,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *o.stride(),
        heads,
        t_q,
        t_k,
        int(window) if window is not None else 0,
        float(scale) * LOG2E,
        length_bucket(t_q),
        length_bucket(t_k),
        HEAD_DIM=head_dim,
        BLOCK_D=bd,
        BLOCK_DT=bdt,
        HAS_TAIL=bdt > 0,
        IS_CAUSAL=is_causal,
        HAS_WINDOW=window is not None,
        DOT_FP32=interpreter_active(),
    )
    return o, lse
