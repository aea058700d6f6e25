"""Is an implementation right? The float64 references and the parity gate.

For each output of a path, the implementation's max error against a float64 reference
is divided by the same-dtype math path's error (plus a small floor). Above
:data:`PARITY_LIMIT` the combination is recorded as FAILED and never timed; the ratio is
kept as the evidence (``track_parity``). The references are computed in query-row
chunks (:func:`reference_outputs`): exact for the whole timed problem, in
O(chunk x Tk) memory, so a fp64 reference exists even at T = 32768 where the plain
math path needs > 80 GB. The harness keeps the fp64 reference rounded to
:func:`kept_dtype` (float32 for fp16 and bf16 problems: :func:`parity_reference`, exact
enough, see :data:`KEPT_MIN_EPS`), and of the same-dtype math outputs only what the
ratio uses, two numbers per output (:class:`Denominator`): neither depends on the
commit, so harness/refcache.py keeps both across commits. torch is imported inside the
functions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

from harness.grid import Config
from harness.impls import OUTPUT_NAMES, Inputs, math_attention, run_path
from harness.timing import free_memory

PARITY_LIMIT = 2.0  # flash-attention's rule: at most 2x the same-dtype math error
# The floor: one ulp of the reference's largest value, or of 1.0 if that is smaller. With
# ratio = err / (math_err + floor / 2), "ratio <= 2" is exactly tests/numerics.py's
# "err <= 2 * math_err + floor": the benchmarks gate with the rule the kernel tests use.

# The fp64 reference is kept rounded to float32 for outputs whose dtype has an eps of at
# least this (fp16 2^-10, bf16 2^-7), in memory and in the reference cache: 4 bytes an
# element instead of 8. Why that is exact enough: rounding to fp32 moves each reference
# element by at most u*|ref| (u = 2^-24), so err_impl, err_math and max|ref| each move by
# at most d = u*M (M = max|ref|; a max of |x - ref| is 1-Lipschitz in ref). The ratio's
# denominator D = err_math + eps/2*max(M, 1) is at least eps/2*M, so d/D <= 2u/eps:
# 2^-13 = 1.2e-4 for fp16, 2^-16 = 1.5e-5 for bf16. With r = err_impl/D the rounded ratio
# r' = (err_impl + a)/(D + b), |a| <= d, |b| <= (1 + eps/2)*d, so
# |r' - r| <= (1 + r)(1 + eps/2)(d/D) / (1 - (1 + eps/2)(d/D)): at the limit r = 2,
# 3.7e-4 (fp16) and 4.6e-5 (bf16), under 0.02% of the limit. For float32 outputs
# (eps 2^-23) d/D could reach 1, the rounding as large as the floor: they keep float64.
KEPT_MIN_EPS = 2.0**-10

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
        # detached: o of the forward path carries its chunk's graph, and copying it in
        # would chain every chunk's graph (fp64 scores, probabilities, mask) to row_out
        # and to the kept reference. On the H200 at Long forward T32768 that held ~80 GiB
        # through the config's measurements in every cold run (the math row's replay and
        # the save_p row ran out of memory); a warm run reads the reference from disk.
        row_out[:, :, s:e] = res[0].detach()
        for acc, part in zip(key_outs, res[1:]):
            acc[:, :, ks:ke] += part.to(acc_dtype)
        del res, chunk
    return (row_out, *(t.to(dtype) for t in key_outs))


def kept_dtype(dtype):
    """The dtype the harness keeps the fp64 reference of ``dtype`` outputs in (float32 for
    fp16 and bf16, float64 otherwise; :data:`KEPT_MIN_EPS` says why it is exact enough)."""
    import torch

    return torch.float32 if torch.finfo(dtype).eps >= KEPT_MIN_EPS else torch.float64


def parity_reference(
    path: str, cfg: Config, inp: Inputs, *, chunk_scores: int = REFERENCE_CHUNK_SCORES
) -> tuple:
    """The parity gate's reference as the harness keeps it: computed in float64
    (:func:`reference_outputs`), then rounded to :func:`kept_dtype`. Cold or from the
    cache, every parity ratio is computed against these same values."""
    import torch

    ref = reference_outputs(path, cfg, inp, torch.float64, chunk_scores=chunk_scores)
    kept = kept_dtype(cfg.torch_dtype)
    return tuple(t.to(kept) for t in ref)


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
    free_memory()
    return reference_outputs(path, cfg, inp, cfg.torch_dtype), "chunked math (math is OOM)"


class Denominator(NamedTuple):
    """What the parity ratio of one output takes from the references besides the
    implementation's error: the same-dtype math path's max error against the reference,
    and the reference's largest magnitude (for the floor). Neither depends on the commit."""

    err_math: float
    ref_max: float


def denominators(ref: Sequence, math_same: Sequence) -> tuple[Denominator, ...]:
    """Per output, :class:`Denominator` of the math outputs ``math_same`` against ``ref``
    (the formula :func:`parity` used on the tensors, in float64)."""
    import torch

    out = []
    for r, m in zip(ref, math_same, strict=True):
        r64 = r.detach().to(torch.float64)
        err_math = (m.detach().to(torch.float64) - r64).abs().max().item()
        out.append(Denominator(err_math, r64.abs().max().item()))
    return tuple(out)


def math_denominators(path: str, cfg: Config, inp: Inputs, ref: Sequence):
    """(denominators, which math): the same-dtype math outputs
    (:func:`same_dtype_math_outputs`) reduced to :class:`Denominator` against ``ref``; the
    math outputs themselves are dropped."""
    math_same, which = same_dtype_math_outputs(path, cfg, inp)
    return denominators(ref, math_same), which


@dataclasses.dataclass
class Parity:
    ratio: float  # worst output's impl error / (math error + floor)
    worst: str  # which output
    detail: str  # per output: impl error vs math error

    @property
    def passed(self) -> bool:
        return self.ratio <= PARITY_LIMIT


def parity(path: str, impl: Sequence, ref: Sequence, denoms: Sequence, dtype) -> Parity:
    """Judge ``impl`` outputs against the reference (:func:`parity_reference`), relative to
    the math path's error (``denoms``: :func:`denominators` against the same reference)."""
    import torch

    worst, worst_name, parts = 0.0, "", []
    for name, a, r, (err_math, ref_max) in zip(OUTPUT_NAMES[path], impl, ref, denoms):
        if a is None or tuple(a.shape) != tuple(r.shape):
            shape = None if a is None else tuple(a.shape)
            return Parity(math.inf, name, f"{name}: shape {shape}, expected {tuple(r.shape)}")
        a64 = a.detach().to(torch.float64)
        if not torch.isfinite(a64).all():
            return Parity(math.inf, name, f"{name}: non-finite values")
        # in float64: the kept reference upcast (exact), as the implementation's output
        err_impl = (a64 - r.to(torch.float64)).abs().max().item()
        floor = torch.finfo(dtype).eps * max(ref_max, 1.0)
        denom = err_math + floor / 2
        ratio = err_impl / denom
        parts.append(f"{name} {err_impl:.2e} vs math {err_math:.2e}")
        if ratio >= worst:
            worst, worst_name = ratio, name
    return Parity(worst, worst_name, "; ".join(parts))
