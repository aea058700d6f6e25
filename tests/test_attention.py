"""Every bwd_mode, fp16 and bf16: forward, backward and grad-grad against fp64 math.

Runs on CPU through the Triton interpreter, and on CUDA with ``pytest --gpu``
(the same cases, plus the larger ``gpu``-marked ones). Each case checks 11
tensors (o; dq, dk, dv; grad-grad w.r.t. q, k, v, dO) by the 2x rule of
tests/numerics.py.
"""

import pytest
import torch
from numerics import all_orders, assert_within_rule, shape_id

import kernels
from kernels import reference

MODES = list(kernels.BWD_MODES)
DTYPES = [torch.float16, torch.bfloat16]

# (B, H, Tq, Tk, D, causal, window): odd lengths, Tq < Tk, D = 80, masks.
CPU_SHAPES = [
    (1, 1, 1, 1, 64, False, None),
    (1, 2, 17, 17, 80, False, None),
    (1, 2, 17, 17, 64, True, None),
    (2, 1, 17, 40, 64, True, None),
    (1, 2, 113, 113, 64, True, 16),
    (1, 1, 9, 33, 80, False, 8),
]
GPU_SHAPES = [
    (1, 2, 1000, 1000, 80, True, None),
    (2, 3, 113, 1000, 128, True, None),
    (1, 2, 1000, 1000, 96, False, None),
    (1, 2, 256, 1300, 64, True, 700),
    (1, 4, 2048, 2048, 128, True, None),
]


def _check_case(mode, dtype, shape, device):
    b, h, tq, tk, d, causal, window = shape
    q = torch.randn(b, h, tq, d, device=device, dtype=dtype)
    k = torch.randn(b, h, tk, d, device=device, dtype=dtype)
    v = torch.randn(b, h, tk, d, device=device, dtype=dtype)
    do = torch.randn(b, h, tq, d, device=device, dtype=dtype)
    r = [torch.randn_like(t) for t in (q, k, v)]
    opts = dict(causal=causal, window=window)

    def ref64(q, k, v):
        return reference.attention(q, k, v, **opts)

    def math(q, k, v):
        return reference.attention(q, k, v, **opts)

    def kernel(q, k, v):
        return kernels.attention(q, k, v, bwd_mode=mode, **opts)

    want = all_orders(ref64, *(t.double() for t in (q, k, v, do)), [t.double() for t in r])
    base = all_orders(math, q, k, v, do, r)
    got = all_orders(kernel, q, k, v, do, r)
    names = ["o", "dq", "dk", "dv", "gg_q", "gg_k", "gg_v", "gg_do"]
    ratios = {}
    for name, a, w, m in zip(names, got, want, base, strict=True):
        assert a.dtype == dtype, f"{name}: dtype {a.dtype} != {dtype}"
        ratios[name] = assert_within_rule(f"{mode}/{name}", a, w, m)
    return ratios


@pytest.mark.parametrize("shape", CPU_SHAPES, ids=shape_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_mode_matches_fp64_reference(mode, dtype, shape, device):
    _check_case(mode, dtype, shape, device)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=shape_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_mode_matches_fp64_reference_large(mode, dtype, shape, device):
    ratios = _check_case(mode, dtype, shape, device)
    print(
        f"RATIOS {mode} {dtype} {shape_id(shape)} "
        + " ".join(f"{k}={v:.2f}" for k, v in ratios.items())
    )


@pytest.mark.parametrize("mode", MODES)
def test_third_order_stays_correct(mode, device):
    """grad through the grad-grad: every mode falls back to differentiable recompute."""
    dtype = torch.float16
    q, k, v, do = (torch.randn(1, 1, 17, 64, device=device, dtype=dtype) for _ in range(4))

    def third(fn):
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        o = fn(qq, kk, vv)
        (dq,) = torch.autograd.grad(o, (qq,), do, create_graph=True)
        (g2,) = torch.autograd.grad((dq.float() ** 2).sum(), (kk,), create_graph=True)
        (g3,) = torch.autograd.grad(g2.float().sum(), (vv,))
        return g3

    def ref(q, k, v):
        return reference.attention(q, k, v, causal=True)

    got = third(lambda a, b, c: kernels.attention(a, b, c, causal=True, bwd_mode=mode))
    want = third(lambda a, b, c: ref(a.double(), b.double(), c.double()))
    base = third(ref)
    assert_within_rule(f"{mode}/third-order", got, want.to(torch.float64), base, factor=4.0)


def test_fp32_and_fp64_take_the_math_path(device):
    q, k, v = (torch.randn(1, 2, 9, 16, device=device, dtype=torch.float64) for _ in range(3))
    out = kernels.attention(q, k, v, causal=True, bwd_mode="fused")
    torch.testing.assert_close(out, reference.attention(q, k, v, causal=True))
    assert out.dtype == torch.float64


def test_forward_is_identical_across_modes(device):
    q, k, v = (torch.randn(1, 2, 33, 64, device=device, dtype=torch.float16) for _ in range(3))
    outs = [kernels.attention(q, k, v, causal=True, bwd_mode=m) for m in MODES]
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_noncontiguous_inputs(device):
    """(B, T, H, D) memory viewed as (B, H, T, D): strides, not copies."""
    base = torch.randn(1, 33, 2, 64, device=device, dtype=torch.float16)
    q = k = v = base.transpose(1, 2)
    assert not q.is_contiguous()
    out = kernels.attention(q, k, v, causal=True)
    ref64 = reference.attention(q.double(), k.double(), v.double(), causal=True)
    assert_within_rule("o", out, ref64, reference.attention(q, k, v, causal=True))


def test_fused_is_the_default_bwd_mode():
    """A plain call gets the fast mode; the PyTorch-backed ones are opt-in baselines."""
    import inspect

    from kernels import contract

    assert inspect.signature(kernels.attention).parameters["bwd_mode"].default == "fused"
    assert inspect.signature(contract.check_inputs).parameters["bwd_mode"].default == "fused"
