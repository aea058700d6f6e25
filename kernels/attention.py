"""The public ``attention`` and its autograd Functions, one per backward mode.

Layers: Triton kernels (forward.py, fused_backward.py, fused_gradgrad.py) ->
launchers -> the autograd Functions here -> ``attention``. What it accepts:
contract.py; how the kernels are tuned: tuning.py.

The double backward is explicit: ``_TritonAttention.backward`` calls a second
autograd Function (``_SavedPBackward``, ``_DvOnlyBackward``, ``_FusedBackward``)
whose own ``backward`` is the grad-grad path. When that backward runs with
grad mode on (the caller asked for a third derivative, ``create_graph=True``
on the grad-grad), it switches to the differentiable recompute formulas in
kernels.reference, so every order stays correct. ``fused`` builds its second
Function only when the backward itself is recorded (``create_graph=True``); a plain
training step calls the Triton backward directly, to save host time.

``fused`` is the default: at the seed shape on the H200 the other modes' grad-grad
took 0.44-0.70x of the math path's time (recompute 3.13 ms, math 2.20 ms), fused
1.27x (1.74 ms), so a plain call must not land on a baseline.

Memory per mode, one (batch, head), Tq x Tk scores:
- ``recompute``: saves Q, K, V, O, lse (O(T)); the backward materialises P and
  dP (O(T^2)) transiently.
- ``save_p``: also keeps P from the forward (+2 bytes * Tq * Tk per head held
  until backward); backward and grad-grad skip the softmax recompute.
- ``dv_only``: dV from a Triton kernel, dQ/dK from recompute (O(T^2) transient).
- ``fused``: Triton backward and Triton double backward; O(T) extra memory.
"""

from __future__ import annotations

import torch

from . import reference
from ._triton_common import interpreter_active
from .contract import (
    BWD_MODES,
    TRITON_DTYPES,
    check_inputs,
    check_math_path_memory,
    check_triton_sizes,
    normalise_window,
)

__all__ = ["attention", "BWD_MODES"]

# The PyTorch-backed modes (recompute, save_p, dv_only) compute their first-order
# backward in the input dtype, as the math path does: in fp32 their grad-grad was
# 2.2-2.5x slower than math on the H100 (fp32 matmuls skip the bf16 tensor cores; asv
# run 2026-11-25), for an accuracy the 2x-of-math rule does not ask for. The explicit
# double-backward formulas (save_p, dv_only) stay fp32: their terms cancel.
SAME_DTYPE_RECOMPUTE_UPCAST = False


def _uses_triton(q) -> bool:
    """fp16/bf16 on CUDA, or on CPU under the Triton interpreter (tests).

    Other devices (meta, mps, ...) take the math path: on meta tensors it gives the
    output's shape and dtype without data, as PyTorch's own ops do.
    """
    if q.dtype not in TRITON_DTYPES:
        return False
    return q.is_cuda or (interpreter_active() and q.device.type == "cpu")


def _probs_from_lse(q, k, lse, *, causal, window, scale):
    """P = exp(scale q k^T - lse), masked, fp32: the softmax without another reduction."""
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    mask = reference.visible_mask(
        q.shape[-2], k.shape[-2], causal=causal, window=window, device=q.device
    )
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.exp(s - lse.unsqueeze(-1))


def _zeros_if_none(t, like):
    return torch.zeros_like(like, dtype=torch.float32) if t is None else t.float()


class _SavedPBackward(torch.autograd.Function):
    """Backward from the P saved by the forward; its backward is the grad-grad from P."""

    @staticmethod
    def forward(ctx, q, k, v, p, do, scale, mask_args):
        ctx.save_for_backward(q, k, v, p, do)
        ctx.scale, ctx.mask_args = scale, mask_args
        return reference.backward_from_probs(p, q, k, v, do.to(q.dtype), scale=scale)

    @staticmethod
    def backward(ctx, gdq, gdk, gdv):
        q, k, v, p, do = ctx.saved_tensors
        causal, window = ctx.mask_args
        if torch.is_grad_enabled():
            # Third order: the saved P is a constant to autograd; recompute it differentiably.
            grads = reference.attention_double_backward(
                q, k, v, do, gdq, gdk, gdv, causal=causal, window=window, scale=ctx.scale
            )
        else:
            # fp32: the explicit terms cancel (rho - 2 delta gamma); in fp16 grad_q came out
            # 3.5x the math path's autograd error on a T=17 causal test.
            grads = reference.double_backward_from_probs(
                p.float(),
                q.float(),
                k.float(),
                v.float(),
                do.float(),
                _zeros_if_none(gdq, q),
                _zeros_if_none(gdk, k),
                _zeros_if_none(gdv, v),
                scale=ctx.scale,
            )
            grads = tuple(g.to(t.dtype) for g, t in zip(grads, (q, k, v, do)))
        gq, gk, gv, gdo = grads
        return gq, gk, gv, None, gdo, None, None


class _DvOnlyBackward(torch.autograd.Function):
    """dV from the Triton dK/dV kernel (dV part only), dQ and dK from differentiable recompute."""

    @staticmethod
    def forward(ctx, q, k, v, lse, do, scale, mask_args):
        from .fused_backward import attention_backward_dv

        causal, window = mask_args
        ctx.save_for_backward(q, k, v, do)
        ctx.scale, ctx.mask_args = scale, mask_args
        dv = attention_backward_dv(q, k, v, lse, do, causal=causal, window=window, scale=scale)
        dq, dk, _ = reference.attention_backward(
            q,
            k,
            v,
            do,
            causal=causal,
            window=window,
            scale=scale,
            upcast=SAME_DTYPE_RECOMPUTE_UPCAST,
        )
        return dq, dk, dv

    @staticmethod
    def backward(ctx, gdq, gdk, gdv):
        q, k, v, do = ctx.saved_tensors
        causal, window = ctx.mask_args
        gq, gk, gv, gdo = reference.attention_double_backward(
            q,
            k,
            v,
            do,
            gdq,
            gdk,
            gdv,
            causal=causal,
            window=window,
            scale=ctx.scale,
        )
        return gq, gk, gv, None, gdo, None, None


def _fused_first_order(q, k, v, o, lse, do, scale, mask_args):
    """The Triton backward on inputs ``attention`` validated (see backward_of_validated)."""
    from .fused_backward import backward_of_validated

    causal, window = mask_args
    is_causal = causal or window is not None
    window = 0 if window is None else window
    return backward_of_validated(
        q, k, v, o, lse, do, is_causal=is_causal, window=window, scale=scale
    )


class _FusedBackward(torch.autograd.Function):
    """Triton backward (FA2-style, from lse) whose backward is the Triton double backward."""

    @staticmethod
    def forward(ctx, q, k, v, o, lse, do, scale, mask_args):
        ctx.save_for_backward(q, k, v, o, lse, do)
        ctx.scale, ctx.mask_args = scale, mask_args
        # None cotangents reach backward as None, so the double backward skips their terms.
        ctx.set_materialize_grads(False)
        return _fused_first_order(q, k, v, o, lse, do, scale, mask_args)

    @staticmethod
    def backward(ctx, gdq, gdk, gdv):
        q, k, v, o, lse, do = ctx.saved_tensors
        causal, window = ctx.mask_args
        if gdq is None and gdk is None and gdv is None:
            return (None,) * 8
        if torch.is_grad_enabled():
            # Third order through the Triton double backward is not a kernel: recompute.
            gq, gk, gv, gdo = reference.attention_double_backward(
                q, k, v, do, gdq, gdk, gdv, causal=causal, window=window, scale=ctx.scale
            )
        else:
            from .fused_gradgrad import fused_attention_double_backward

            gq, gk, gv, gdo = fused_attention_double_backward(
                q, k, v, o, lse, do, gdq, gdk, gdv, causal=causal, window=window, scale=ctx.scale
            )
        return gq, gk, gv, None, None, gdo, None, None


class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, window, scale, bwd_mode):
        from .forward import attention_forward

        o, lse = attention_forward(q, k, v, causal=causal, window=window, scale=scale)
        ctx.scale, ctx.mask_args, ctx.bwd_mode = scale, (causal, window), bwd_mode
        if bwd_mode == "save_p":
            p = _probs_from_lse(q, k, lse, causal=causal, window=window, scale=scale)
            # Stored in the input dtype, like the math path's autograd would: 2 B per score.
            ctx.save_for_backward(q, k, v, p.to(q.dtype))
        else:
            ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    def backward(ctx, do):
        causal, window = ctx.mask_args
        scale, mode = ctx.scale, ctx.bwd_mode
        none4 = (None, None, None, None)
        if mode == "save_p":
            q, k, v, p = ctx.saved_tensors
            return (*_SavedPBackward.apply(q, k, v, p, do, scale, ctx.mask_args), *none4)
        q, k, v, o, lse = ctx.saved_tensors
        if do.stride() != q.stride():
            # autograd's cotangent may have any layout; the kernels index it in int32
            check_triton_sizes((("do", do),))
        if mode == "recompute":
            grads = reference.attention_backward(
                q,
                k,
                v,
                do,
                causal=causal,
                window=window,
                scale=scale,
                upcast=SAME_DTYPE_RECOMPUTE_UPCAST,
            )
            return (*grads, *none4)
        if mode == "dv_only":
            return (*_DvOnlyBackward.apply(q, k, v, lse, do, scale, ctx.mask_args), *none4)
        if torch.is_grad_enabled():
            # create_graph=True: the backward must be a node of its own, for the grad-grad.
            grads = _FusedBackward.apply(q, k, v, o.detach(), lse, do, scale, ctx.mask_args)
        else:
            # A plain training step: no graph to build, so no second autograd Function
            # (~20 us of host time a step under cProfile at the seed shape).
            grads = _fused_first_order(q, k, v, o, lse, do, scale, ctx.mask_args)
        return (*grads, *none4)


def attention(q, k, v, *, causal=False, window=None, scale=None, bwd_mode="fused"):
    """Scaled dot-product attention whose backward can itself be differentiated.

    Args:
        q: (B, H, Tq, D). k, v: (B, H, Tk, D). Any Tq, Tk; with ``causal`` or
            ``window``, Tq <= Tk and queries are the last Tq key positions.
        causal: mask keys after each query's position.
        window: int >= 1; a query sees keys at distance 0..window-1 behind it
            (always causal). A window >= Tk is the causal mask (clamped to Tk).
        scale: score scale, default 1/sqrt(D); any finite float (0 gives the mean
            of the visible values, a negative scale favours dissimilar keys).
        bwd_mode: "fused" (the default: Triton backward and double backward, O(T)
            memory), or the PyTorch-backed baselines "recompute", "save_p",
            "dv_only" (module docstring).

    fp16/bf16 on CUDA run the Triton forward and the chosen backward mode.
    float32/float64 inputs, and fp16/bf16 on a CPU without TRITON_INTERPRET=1,
    take the PyTorch math path (kernels.reference), where autograd gives every
    derivative order and ``bwd_mode`` changes nothing.
    """
    check_inputs(q, k, v, causal=causal, window=window, scale=scale, bwd_mode=bwd_mode)
    scale = reference.default_scale(q.shape[-1]) if scale is None else float(scale)
    window = normalise_window(window, k.shape[2])
    if not _uses_triton(q):
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        masked = causal or window is not None
        check_math_path_memory(q, k, masked=masked, needs_grad=needs_grad)
        return reference.attention(q, k, v, causal=causal, window=window, scale=scale)
    check_triton_sizes((("q", q), ("k", k), ("v", v)))
    if bwd_mode == "fused":
        try:
            from . import fused_backward  # noqa: F401
        except ImportError as exc:  # pragma: no cover - only before the fused backward lands
            raise NotImplementedError(
                "bwd_mode='fused' needs kernels/fused_backward.py, which is not in this build"
            ) from exc
    return _TritonAttention.apply(q, k, v, causal, window, scale, bwd_mode)
