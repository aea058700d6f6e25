"""The project's accuracy rule, shared by every kernel test.

From flash-attention's tests: for each output, the kernel's max error against
the fp64 reference must be at most 2x the error of PyTorch's same-dtype math
path on the same inputs, plus a small absolute floor. The floor is one unit in
the last place of the largest reference value, or of 1.0 if that is smaller
(inputs are unit normal, so 1.0 is the scale of a gradient that is exactly 0)
(fp16 2^-10, bf16 2^-7 relative):
below that, both errors are rounding of the final cast and the ratio is noise
(e.g. T=1, where the output is V exactly and the math error is 0).
"""

import torch

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23}


def error_ratio(out, ref64, math_out):
    """(kernel error, math error, floor) for one tensor."""
    ref = ref64.double()
    err = (out.double() - ref).abs().max().item()
    math_err = (math_out.double() - ref).abs().max().item()
    floor = EPS[math_out.dtype] * max(ref.abs().max().item(), 1.0)
    return err, math_err, floor


def assert_within_rule(name, out, ref64, math_out, factor=2.0):
    assert out.shape == ref64.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref64.shape)}"
    assert torch.isfinite(out).all(), f"{name}: non-finite values"
    err, math_err, floor = error_ratio(out, ref64, math_out)
    assert err <= factor * math_err + floor, (
        f"{name}: max error {err:.3e} > {factor} x math error {math_err:.3e} + floor {floor:.3e}"
    )
    return err / max(math_err, floor)


def shape_id(s):
    """A test id for (B, H, Tq, Tk, D, causal, window)."""
    b, h, tq, tk, d, causal, window = s
    mask = f"w{window}" if window else ("causal" if causal else "full")
    return f"B{b}H{h}-{tq}x{tk}-D{d}-{mask}"


def all_orders(fn, q, k, v, do, r):
    """The 8 tensors of every derivative order, flat: o; dq, dk, dv (for cotangent dO);
    then the grads of sum <(dq, dk, dv), r> w.r.t. q, k, v and dO."""
    q, k, v, do = (t.detach().clone().requires_grad_() for t in (q, k, v, do))
    o = fn(q, k, v)
    grads = torch.autograd.grad(o, (q, k, v), do, create_graph=True)
    loss = sum((g.float() * ri.float()).sum() for g, ri in zip(grads, r))
    gradgrads = torch.autograd.grad(loss, (q, k, v, do))
    return [o.detach(), *(g.detach() for g in grads), *gradgrads]
