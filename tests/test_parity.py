"""The parity gate from cached scalars (harness/parity.py Denominator) and the fp32-kept reference.

CPU, offline. The gate once took the same-dtype math outputs and the fp64 reference as
tensors (:func:`tensor_parity`, its formula verbatim); it now takes the kept reference and
two scalars per output, from the reference cache when a run computed them before.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness import measure, parity, refcache
from harness.grid import PATHS, Config
from harness.impls import OUTPUT_NAMES, make_inputs

CONFIGS = [
    Config(1, 2, "64", 32, "float32", "causal"),
    Config(1, 2, "48/80", 32, "bfloat16", "window24"),
    Config(1, 2, "64", 32, "float16", "none"),
]
IDS = ["fp32", "bf16", "fp16"]


def tensor_parity(path, impl, ref64, math_same, dtype) -> parity.Parity:
    """The gate's formula on the math outputs themselves (harness/parity.py before the
    cached denominators), kept here to hold the scalar form to it."""
    worst, worst_name, parts = 0.0, "", []
    for name, a, ref, m in zip(OUTPUT_NAMES[path], impl, ref64, math_same):
        ref = ref.to(torch.float64)
        a64 = a.detach().to(torch.float64)
        err_impl = (a64 - ref).abs().max().item()
        err_math = (m.detach().to(torch.float64) - ref).abs().max().item()
        floor = torch.finfo(dtype).eps * max(ref.abs().max().item(), 1.0)
        ratio = err_impl / (err_math + floor / 2)
        parts.append(f"{name} {err_impl:.2e} vs math {err_math:.2e}")
        if ratio >= worst:
            worst, worst_name = ratio, name
    return parity.Parity(worst, worst_name, "; ".join(parts))


def candidates(path, cfg, inp, math_same):
    """Outputs an implementation could give: the math path's own, the chunked math path's
    (another rounding order), and a wrong one (keys scaled by 1.02)."""
    chunked = parity.reference_outputs(path, cfg, inp, cfg.torch_dtype, chunk_scores=2**10)
    k = (inp.k.detach() * 1.02).requires_grad_()
    wrong = parity.reference_outputs(path, cfg, dataclasses.replace(inp, k=k), cfg.torch_dtype)
    return {"math": math_same, "chunked": chunked, "wrong": wrong}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "refs"
    monkeypatch.setenv(refcache.CACHE_ENV, str(root))
    return root


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
@pytest.mark.parametrize("path", PATHS)
def test_parity_from_the_cached_scalars_is_the_tensor_formula(cache, path, cfg):
    """Bit for bit, for the same reference tensors: the scalars read back from the cache
    give the ratios (and details) the math outputs gave."""
    inp = make_inputs(cfg, "cpu", seed=measure.SEED)
    ref = parity.parity_reference(path, cfg, inp)
    math_same, _ = parity.same_dtype_math_outputs(path, cfg, inp)
    for _ in range(2):  # cold (computed), then warm (read back)
        counts = {}
        got_ref, denoms, which = measure._references("t", path, cfg, inp, "cpu", counts)
    assert counts == {"hit": 2} and which == "math"
    assert all(torch.equal(a, b) for a, b in zip(got_ref, ref, strict=True))
    ratios = []
    for label, impl in candidates(path, cfg, inp, math_same).items():
        want = tensor_parity(path, impl, ref, math_same, cfg.torch_dtype)
        got = parity.parity(path, impl, got_ref, denoms, cfg.torch_dtype)
        assert got == want, label
        ratios.append(got.ratio)
    assert ratios[2] > parity.PARITY_LIMIT > max(ratios[:2]), ratios  # the gate still gates


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
@pytest.mark.parametrize("path", PATHS)
def test_the_fp32_kept_reference_moves_the_ratio_less_than_the_bound(path, cfg):
    """parity.KEPT_MIN_EPS's bound: against the fp64 reference rounded to fp32 (fp16 and
    bf16 problems), the ratio moves by at most (1 + r)(1 + eps/2) q / (1 - (1 + eps/2) q),
    q = 2^-23 / eps; fp32 problems keep the fp64 reference, so their ratios do not move."""
    dtype = cfg.torch_dtype
    inp = make_inputs(cfg, "cpu", seed=measure.SEED)
    full = parity.reference_outputs(path, cfg, inp, torch.float64)
    kept = parity.parity_reference(path, cfg, inp)
    math_same, _ = parity.same_dtype_math_outputs(path, cfg, inp)
    eps = torch.finfo(dtype).eps
    q = (1 + eps / 2) * 2.0**-23 / eps
    assert (q < 2**-12) == (dtype != torch.float32)
    for label, impl in candidates(path, cfg, inp, math_same).items():
        old = tensor_parity(path, impl, full, math_same, dtype).ratio
        new = parity.parity(path, impl, kept, parity.denominators(kept, math_same), dtype).ratio
        if dtype == torch.float32:
            assert new == old, label
        else:
            assert abs(new - old) <= (1 + old) * q / (1 - q), (label, old, new)


def test_the_gate_refuses_a_wrong_shape_and_non_finite_values():
    cfg = CONFIGS[1]
    inp = make_inputs(cfg, "cpu", seed=measure.SEED)
    ref = parity.parity_reference("forward", cfg, inp)
    denoms, _ = parity.math_denominators("forward", cfg, inp, ref)
    o = ref[0].to(cfg.torch_dtype)
    assert parity.parity("forward", [o], ref, denoms, cfg.torch_dtype).passed
    bad = parity.parity("forward", [o[..., :-1]], ref, denoms, cfg.torch_dtype)
    assert bad.ratio == math.inf and "shape" in bad.detail
    nan = o.clone()
    nan[0, 0, 0, 0] = float("nan")
    bad = parity.parity("forward", [nan], ref, denoms, cfg.torch_dtype)
    assert bad.ratio == math.inf and "non-finite" in bad.detail
