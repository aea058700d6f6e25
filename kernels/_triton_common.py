"""Pieces every attention kernel shares: masks, tile ranges, the interpreter switch.

Conventions for all kernels in this package:

- Tensors are (B, H, T, D) with arbitrary strides; the row logsumexp ``lse`` is a
  contiguous fp32 (B, H, Tq) tensor in *natural* log units of ``scale * q k^T``,
  so P = exp(scale * q k^T - lse). Kernels work in base 2 (``exp2`` is one MUFU
  instruction, ``exp`` is two): P = exp2(s * scale * LOG2E - lse * LOG2E).
- Queries are the last Tq of the Tk key positions: query i sits at i + Tk - Tq.
- ``IS_CAUSAL``: key j visible iff j <= i + Tk - Tq. ``HAS_WINDOW`` (always with
  IS_CAUSAL): also i + Tk - Tq - j < WINDOW.
- ``HEAD_DIM`` is the real D. Triton tiles are powers of two, so a D-wide row is one
  tile of ``BLOCK_D`` columns or, where that would pad a lot (``head_dim_split``), a main
  tile of ``BLOCK_D`` plus a tail tile of ``BLOCK_DT`` (constexpr ``HAS_TAIL``): D=80 is
  64 + 16, D=96 64 + 32 instead of 128 (1.6x / 1.33x the dot work). A tail is always
  full (D=72 and 88 pad to one 128-wide tile); loads and stores still mask d < HEAD_DIM.
- ``DOT_FP32``: under ``TRITON_INTERPRET=1`` a bf16 ``tl.dot`` multiplies raw bit
  patterns (docs/design.md trap 1), so operands go to fp32 there and only there.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


# Read once, at import: Triton decides interpreter or compiler when each @triton.jit
# function is created (docs/design.md trap 2), so a later change of the variable would not
# reach the kernels anyway; and the launchers ask on every launch (~3 us an env read).
_INTERPRETER_ACTIVE = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def interpreter_active() -> bool:
    """True when Triton runs kernels in its CPU interpreter (tests on CPU machines)."""
    return _INTERPRETER_ACTIVE


# Host-side helpers are plain Python: triton.next_power_of_2 / triton.cdiv are constexpr
# functions whose host call went through Triton's JIT wrapper and environment lookups,
# ~7 us each under cProfile on the H100's host, ten of them per training step.


def next_power_of_2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def block_d(head_dim: int) -> int:
    """One power-of-two tile covering the head dim (>= 16, tl.dot's minimum)."""
    return max(16, next_power_of_2(head_dim))


def head_dim_split(head_dim: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_DT): the main and tail tile widths of a D-wide row; tail 0 = no tail.

    The one rule every split kernel's launcher and the autotune pruning use. D = 80 and 96
    are 64 + 16 and 64 + 32: 80 and 96 columns of dot work instead of 128. Only a full
    tail splits: with a column-masked one (D=72 as 64 + 16, D=88 as 64 + 32) the forward
    kernel read out of bounds on the H200 (triton 3.6: an illegal address at D72 and D88
    causal, o off by 40-65x the math error without a mask; docs/probes.md), so D=72 and 88
    pad to 128 in every kernel, as before the split. Elsewhere one tile too: D <= 64 and
    powers of two (a split there saves little or nothing: D=56 would be 32 + 32), D in
    (96, 128) because 64 + 64 is no less work than 128 and two dots issue worse than one.
    """
    if head_dim in (80, 96):
        return 64, head_dim - 64
    return block_d(head_dim), 0


def head_dim_tiles(head_dim: int, split: bool = True) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_DT) a launcher passes: ``head_dim_split``, or with ``split=False``
    one padded tile and no tail (the kernels' ``_SPLIT_HEAD_DIM`` A/B switch, for probes)."""
    return head_dim_split(head_dim) if split else (block_d(head_dim), 0)


@triton.jit
def mm(a, b, DOT_FP32: tl.constexpr):
    """a @ b with fp32 accumulation; fp32 operands only under the interpreter."""
    if DOT_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        return tl.dot(a, b)


@triton.jit
def visible(offs_m, offs_n, T_Q, T_K, WINDOW, IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """(BLOCK_M, BLOCK_N) mask: in bounds and allowed by the causal / window rule."""
    vis = (offs_m[:, None] < T_Q) & (offs_n[None, :] < T_K)
    if IS_CAUSAL:
        dist = offs_m[:, None] + (T_K - T_Q) - offs_n[None, :]
        vis = vis & (dist >= 0)
        if HAS_WINDOW:
            vis = vis & (dist < WINDOW)
    return vis


@triton.jit
def key_range(
    start_m,
    T_Q,
    T_K,
    WINDOW,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
):
    """[lo, hi) of key positions that queries start_m..start_m+BLOCK_M-1 can see.

    lo is a multiple of BLOCK_N so tiles stay aligned. Skipping invisible tiles
    halves the work of square causal attention and makes a TTT window of 8192
    over 9216 keys cost 8192 + BLOCK_M keys per row, not 9216.
    """
    lo = 0
    hi = T_K
    if IS_CAUSAL:
        hi = tl.minimum(T_K, start_m + BLOCK_M + (T_K - T_Q))
        if HAS_WINDOW:
            lo = tl.maximum(0, start_m + (T_K - T_Q) - WINDOW + 1)
            lo = (lo // BLOCK_N) * BLOCK_N
    return lo, hi


@triton.jit
def query_range(
    start_n,
    T_Q,
    T_K,
    WINDOW,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
):
    """[lo, hi) of query rows that can see keys start_n..start_n+BLOCK_N-1 (column passes).

    lo is a multiple of BLOCK_M.
    """
    lo = 0
    hi = T_Q
    if IS_CAUSAL:
        lo = tl.maximum(0, start_n - (T_K - T_Q))
        lo = (lo // BLOCK_M) * BLOCK_M
        if HAS_WINDOW:
            hi = tl.minimum(T_Q, start_n + BLOCK_N - 1 + WINDOW - (T_K - T_Q))
            hi = tl.maximum(hi, 0)
    return lo, hi


@triton.jit
def unmasked_key_range(
    start_m,
    lo,
    hi,
    T_Q,
    T_K,
    WINDOW,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
):
    """[full_lo, full_hi) inside [lo, hi): key tiles every query row of the block sees.

    For the forward, where rows past T_Q are never stored: a key tile needs no mask
    when its keys are in bounds, the block's first row sees its last key (causal) and
    the block's last row still sees its first key (window). Those tiles form one run
    of the key loop, so the forward loops three times (masked, unmasked, masked) and
    the interior tiles skip the per-element mask: at T=4096 causal with 128 x 64 tiles,
    all but 1 to 2 of a query block's key tiles.
    """
    # Largest visible end: in bounds, and (causal) at most the first row's last key + 1.
    end = T_K
    if IS_CAUSAL:
        end = tl.minimum(T_K, start_m + (T_K - T_Q) + 1)
    full_hi = (end // BLOCK_N) * BLOCK_N  # end >= 1, so no negative floor division
    full_lo = lo
    if HAS_WINDOW:
        # first key the last row sees, rounded up to a tile start
        first = tl.maximum(start_m + BLOCK_M + (T_K - T_Q) - WINDOW, lo)
        full_lo = ((first + BLOCK_N - 1) // BLOCK_N) * BLOCK_N
    full_lo = tl.minimum(full_lo, hi)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)
    return full_lo, full_hi


@triton.jit
def tile_fully_visible(
    start_m,
    start_n,
    T_Q,
    T_K,
    WINDOW,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
):
    """True when every (row, key) of the tile is in bounds and visible, so no mask is needed.

    Interior tiles of causal attention (all but ~T/BLOCK diagonal ones) skip the
    per-element mask arithmetic this way.
    """
    full = (start_m + BLOCK_M <= T_Q) & (start_n + BLOCK_N <= T_K)
    if IS_CAUSAL:
        # the first row of the tile must see the last key of the tile
        full = full & (start_n + BLOCK_N - 1 <= start_m + (T_K - T_Q))
        if HAS_WINDOW:
            # the last row of the tile must still see the first key of the tile
            full = full & (start_m + BLOCK_M - 1 + (T_K - T_Q) - start_n < WINDOW)
    return full


@triton.jit
def load_tile(base, offs_t, offs_d, stride_t, stride_d, T, HEAD_DIM: tl.constexpr):
    """(len(offs_t), len(offs_d)) tile of a (T, HEAD_DIM) matrix; zeros outside it."""
    ptrs = base + offs_t[:, None] * stride_t + offs_d[None, :] * stride_d
    return tl.load(ptrs, mask=(offs_t[:, None] < T) & (offs_d[None, :] < HEAD_DIM), other=0.0)


@triton.jit
def store_tile(base, value, offs_t, offs_d, stride_t, stride_d, T, HEAD_DIM: tl.constexpr):
    """Store ``value`` (cast to the pointer's dtype) into the in-bounds part of a tile."""
    ptrs = base + offs_t[:, None] * stride_t + offs_d[None, :] * stride_d
    mask = (offs_t[:, None] < T) & (offs_d[None, :] < HEAD_DIM)
    tl.store(ptrs, value.to(base.dtype.element_ty), mask=mask)


# Split head dim (``head_dim_split``): a D-wide operand is a (main, tail) pair of tiles.
# Without HAS_TAIL the tail is a placeholder that is never read, so those kernels compile
# to exactly the single-tile code.


@triton.jit
def load_split(
    base, offs_t, offs_d, offs_dt, stride_t, stride_d, T,
    HEAD_DIM: tl.constexpr, HAS_TAIL: tl.constexpr,
):  # fmt: skip
    """(main, tail) tiles of a (T, HEAD_DIM) matrix: columns offs_d and offs_dt."""
    main = load_tile(base, offs_t, offs_d, stride_t, stride_d, T, HEAD_DIM)
    tail = main  # placeholder, never read without HAS_TAIL
    if HAS_TAIL:
        tail = load_tile(base, offs_t, offs_dt, stride_t, stride_d, T, HEAD_DIM)
    return main, tail


@triton.jit
def store_split(
    base, main, tail, offs_t, offs_d, offs_dt, stride_t, stride_d, T,
    HEAD_DIM: tl.constexpr, HAS_TAIL: tl.constexpr,
):  # fmt: skip
    """store_tile of both parts of a split tile."""
    store_tile(base, main, offs_t, offs_d, stride_t, stride_d, T, HEAD_DIM)
    if HAS_TAIL:
        store_tile(base, tail, offs_t, offs_dt, stride_t, stride_d, T, HEAD_DIM)


@triton.jit
def mm_nt(a, a_t, b, b_t, DOT_FP32: tl.constexpr, HAS_TAIL: tl.constexpr):
    """a b^T contracted over a split head dim: main dot plus tail dot (one accumulator)."""
    s = mm(a, tl.trans(b), DOT_FP32)
    if HAS_TAIL:
        s += mm(a_t, tl.trans(b_t), DOT_FP32)
    return s


@triton.jit
def split_offsets(BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr, HAS_TAIL: tl.constexpr):
    """Column offsets of the main tile and of the tail (the main's without HAS_TAIL)."""
    offs_d = tl.arange(0, BLOCK_D)
    offs_dt = offs_d  # placeholder, never read without HAS_TAIL
    if HAS_TAIL:
        offs_dt = BLOCK_D + tl.arange(0, BLOCK_DT)
    return offs_d, offs_dt


@triton.jit
def zeros_split(
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DT: tl.constexpr, HAS_TAIL: tl.constexpr
):
    """fp32 (main, tail) accumulators; without HAS_TAIL the tail is a placeholder that the
    kernels neither read nor update."""
    main = tl.zeros([ROWS, BLOCK_D], dtype=tl.float32)
    tail = main
    if HAS_TAIL:
        tail = tl.zeros([ROWS, BLOCK_DT], dtype=tl.float32)
    return main, tail
