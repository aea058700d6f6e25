"""A NaN in one row of an input: where it reaches in the kernels, against the fp64 math path.

The rule (docs/design.md, "The kernel contract"), checked on every output of every
order (o; dq, dk, dv; grad-grad w.r.t. q, k, v, dO):

1. NaN reaches every entry that depends on the NaN input: found by the fp64 reference
   itself, as the entries that change when the row is set to two different finite
   values (masked pairs have P = 0 exactly, so keys a query cannot see do not change).
2. o, dq, dv, grad-grad q and v: NaN only where the fp64 math path has NaN too.
3. dk, grad-grad k and dO: may also be NaN where the math path is finite, but only in
   the (batch, head) of the NaN row: a masked (query, key) pair inside a computed tile
   adds P x (dP - delta) = 0 x NaN to dS (and to C in the grad-grad) when that row's
   statistics or that key's dP are NaN; autograd of the math path's masked_fill gives
   an exact 0 there. Which masked keys, depends on the block sizes. The PyTorch-backed
   modes (explicit formulas in kernels.reference) do the same, so every mode is checked.

The kernels differ from the math path in the other direction too: its softmax turns a
NaN row NaN at masked keys as well, so its dV (and dK) is NaN at every key; the kernels'
dV stays finite at keys that no NaN row can see.

CPU: Triton interpreter; ``pytest --gpu``: the same cases on CUDA.
"""

import pytest
import torch
from numerics import all_orders, shape_id

import kernels
from kernels import reference

# The interpreter's numpy reductions warn on the NaN rows this file makes on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# (B, H, Tq, Tk, D, causal, window): full, bottom-right causal with Tq < Tk, a window.
SHAPES = [
    (1, 2, 40, 40, 64, False, None),
    (1, 1, 33, 40, 64, True, None),
    (1, 1, 40, 40, 80, True, 7),
    # one tile for everything, as T = 40 is on the GPU's tiles: every masked pair computed
    (1, 2, 9, 12, 64, True, 3),
]
# Which input gets the NaN row, and where in its length (T = 40: rows 20, 20, 4, 30, so
# that some 16-row interpreter tiles see it and some do not).
ROWS = [("q", 0.5), ("do", 0.5), ("k", 0.1), ("v", 0.75)]
NAMES = ["o", "dq", "dk", "dv", "gg_q", "gg_k", "gg_v", "gg_do"]
# Outputs where a masked pair's 0 x NaN may add NaN the math path does not have.
MASKED_PAIR_SPREAD = {"dk", "gg_k", "gg_do"}


def _with_row(inputs, name, row, value):
    out = dict(inputs)
    t = out[name].clone()
    t[0, 0, row, :] = value
    out[name] = t
    return out


def _ref64(inputs, r, opts):
    args = [inputs[n].double() for n in ("q", "k", "v", "do")]
    return all_orders(lambda q, k, v: reference.attention(q, k, v, **opts), *args, r)


@pytest.mark.parametrize("mode", kernels.BWD_MODES)
@pytest.mark.parametrize("where", ROWS, ids=lambda w: f"{w[0]}-at-{w[1]}")
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_nan_row_reaches_what_depends_on_it(shape, where, mode, device):
    b, h, tq, tk, d, causal, window = shape
    dtype = torch.bfloat16 if mode in ("dv_only", "save_p") else torch.float16
    name, frac = where
    sizes = dict(q=tq, k=tk, v=tk, do=tq)
    row = int(frac * sizes[name])
    inputs = {n: torch.randn(b, h, t, d, device=device, dtype=dtype) for n, t in sizes.items()}
    r = [torch.randn(b, h, t, d, device=device, dtype=dtype) for t in (tq, tk, tk)]
    r64 = [t.double() for t in r]
    opts = dict(causal=causal, window=window)

    first = _ref64(_with_row(inputs, name, row, 0.5), r64, opts)
    second = _ref64(_with_row(inputs, name, row, -1.5), r64, opts)
    nan_inputs = _with_row(inputs, name, row, float("nan"))
    want = _ref64(nan_inputs, r64, opts)
    got = all_orders(
        lambda q, k, v: kernels.attention(q, k, v, bwd_mode=mode, **opts),
        *(nan_inputs[n] for n in ("q", "k", "v", "do")),
        r,
    )
    for out_name, a, w, f, s in zip(NAMES, got, want, first, second):
        depends = (f != s).cpu()
        got_nan, want_nan = a.isnan().cpu(), w.isnan().cpu()
        missing = depends & ~got_nan
        assert not missing.any(), (
            f"{out_name}: {int(missing.sum())} entries depend on {name}[{row}] but are finite"
        )
        extra = got_nan & ~want_nan
        if out_name in MASKED_PAIR_SPREAD:
            # only inside the (batch, head) of the NaN row
            extra[0, 0] = False
        assert not extra.any(), (
            f"{out_name}: {int(extra.sum())} entries NaN where the fp64 math path is finite"
        )
        assert torch.isfinite(a.cpu()[~got_nan]).all(), f"{out_name}: inf where no NaN"
