"""Property tests: random small shapes and options, every mode, against fp64 math.

Locally each run draws new examples. Under CI (CI=true) the draw is derandomized, so a
submission's CI does not hang on which 30 examples came up: a run on 2026-12-01 drew the
known fused-backward case below, which earlier runs had never hit.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numerics import assert_within_rule

import kernels
from kernels import reference

# Found by this property test (2026-12-01): the fused backward takes delta = rowsum(dO * O)
# from the bf16 O, as FlashAttention-2 does; with one query over two keys its rounding
# gives dq and dk 2.5x past the rule (docs/gradgrad.md, follow-ups). Kept as a strict
# xfail below, so the suite says so once the kernels compute an exact delta.
KNOWN_FUSED_DELTA_CASE = dict(
    b=1, h=1, tq=1, tk=2, d=64, causal=False, window=None, dtype=torch.bfloat16,
    mode="fused", scale=0.5, seed=0,
)  # fmt: skip


@st.composite
def problems(draw):
    tk = draw(st.integers(1, 48))
    masked = draw(st.booleans())
    tq = draw(st.integers(1, tk)) if masked else draw(st.integers(1, 48))
    window = draw(st.one_of(st.none(), st.integers(1, tk + 2))) if masked else None
    return dict(
        b=draw(st.integers(1, 2)),
        h=draw(st.integers(1, 2)),
        tq=tq,
        tk=tk,
        d=draw(st.sampled_from([16, 32, 64, 80])),
        causal=masked,
        window=window,
        dtype=draw(st.sampled_from([torch.float16, torch.bfloat16])),
        mode=draw(st.sampled_from(kernels.BWD_MODES)),
        scale=draw(st.one_of(st.none(), st.floats(0.05, 0.5))),
        seed=draw(st.integers(0, 2**16)),
    )


def check_problem(p, device):
    """o, dq, dk, dv of one mode against fp64 math, by the 2x rule."""
    g = torch.Generator().manual_seed(p["seed"])

    def rand(n):
        return torch.randn(p["b"], p["h"], n, p["d"], generator=g).to(device, p["dtype"])

    q, k, v, do = rand(p["tq"]), rand(p["tk"]), rand(p["tk"]), rand(p["tq"])
    opts = dict(causal=p["causal"], window=p["window"], scale=p["scale"])

    def run(fn, *xs):
        xs = [x.detach().clone().requires_grad_() for x in xs]
        o = fn(*xs)
        return [o.detach(), *torch.autograd.grad(o, xs, do.to(o.dtype))]

    got = run(lambda a, b, c: kernels.attention(a, b, c, bwd_mode=p["mode"], **opts), q, k, v)
    want = run(
        lambda a, b, c: reference.attention(a, b, c, **opts), q.double(), k.double(), v.double()
    )
    base = run(lambda a, b, c: reference.attention(a, b, c, **opts), q, k, v)
    for name, a, w, m in zip(["o", "dq", "dk", "dv"], got, want, base):
        assert_within_rule(f"{p['mode']}/{name}", a, w, m)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI") == "true",
)
@given(p=problems())
def test_forward_and_backward_match_reference(p, device):
    if p == KNOWN_FUSED_DELTA_CASE:
        pytest.skip("known case: test_fused_delta_from_16_bit_o")
    check_problem(p, device)


# Under the interpreter only: on the H200 (make test-gpu, 2026-12-01) this case passed the
# rule, so a strict xfail there failed as XPASS; it is checked there as a plain test.
@pytest.mark.xfail(
    os.environ.get("TRITON_INTERPRET") == "1",
    strict=True,
    reason="fused delta from the bf16 O (KNOWN_FUSED_DELTA_CASE), under the interpreter",
)
def test_fused_delta_from_16_bit_o(device):
    check_problem(KNOWN_FUSED_DELTA_CASE, device)
