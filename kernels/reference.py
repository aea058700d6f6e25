"""Math attention in plain PyTorch: the reference every kernel is judged against.

Everything here is built from differentiable PyTorch ops, so any order of
derivative works (fp64 ``gradgradcheck`` in tests/test_reference.py). It holds
the (Tq, Tk) score matrix, so memory is O(T^2): it is the path our users pay for
today, and the ``math`` baseline of the benchmark suite.

Masking convention (shared with the Triton kernels, see ``visible_mask``):
queries are the *last* Tq positions of the Tk-long key sequence (bottom-right
aligned), so query ``i`` sits at absolute position ``i + Tk - Tq``.

- ``causal``: query at position p sees keys 0..p.
- ``window=w``: query at position p sees keys p-w+1..p (distance 0..w-1 behind
  it). A window is always causal: it only ever looks back.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "attention",
    "attention_backward",
    "attention_double_backward",
    "backward_from_probs",
    "double_backward_from_probs",
    "visible_mask",
    "default_scale",
]


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


def visible_mask(
    tq: int, tk: int, *, causal: bool, window: int | None, device=None
) -> torch.Tensor | None:
    """Boolean (Tq, Tk) mask, True where a query may see a key; None when all are visible."""
    if not causal and window is None:
        return None
    q_pos = torch.arange(tq, device=device).unsqueeze(1) + (tk - tq)
    k_pos = torch.arange(tk, device=device).unsqueeze(0)
    distance = q_pos - k_pos
    mask = distance >= 0
    if window is not None:
        # distances are < Tk, so a window >= Tk is the causal mask (and any int fits)
        mask = mask & (distance < min(window, tk))
    return mask


def _probabilities(q, k, *, causal, window, scale, compute_dtype):
    """P = softmax(scale * q k^T) under the mask, in ``compute_dtype``."""
    s = torch.matmul(q.to(compute_dtype), k.to(compute_dtype).transpose(-1, -2)) * scale
    mask = visible_mask(q.shape[-2], k.shape[-2], causal=causal, window=window, device=q.device)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1)


def _compute_dtype(dtype: torch.dtype, upcast: bool) -> torch.dtype:
    if dtype in (torch.float16, torch.bfloat16) and upcast:
        return torch.float32
    return dtype


def attention(q, k, v, *, causal=False, window=None, scale=None, upcast=False):
    """softmax(scale * q k^T) v, masked; differentiable to any order.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D). With ``upcast=False`` (default) the
    whole computation runs in the input dtype: that is "the same-dtype math
    path" whose error sets the tolerance for the kernels. ``upcast=True``
    computes fp16/bf16 inputs in fp32 and returns the input dtype.
    """
    scale = default_scale(q.shape[-1]) if scale is None else scale
    cdt = _compute_dtype(q.dtype, upcast)
    p = _probabilities(q, k, causal=causal, window=window, scale=scale, compute_dtype=cdt)
    return torch.matmul(p, v.to(cdt)).to(q.dtype)


def attention_backward(q, k, v, do, *, causal=False, window=None, scale=None, upcast=True):
    """(dq, dk, dv) of ``attention`` for output cotangent ``do``, in explicit, differentiable ops.

    dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = c dS K, dK = c dS^T Q, dV = P^T dO.
    P is recomputed with softmax (not from a saved logsumexp), so autograd sees
    its dependence on q and k and the result can be differentiated again.
    """
    scale = default_scale(q.shape[-1]) if scale is None else scale
    cdt = _compute_dtype(q.dtype, upcast)
    qc, kc, vc, doc = (t.to(cdt) for t in (q, k, v, do))
    p = _probabilities(qc, kc, causal=causal, window=window, scale=scale, compute_dtype=cdt)
    dq, dk, dv = backward_from_probs(p, qc, kc, vc, doc, scale=scale)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def backward_from_probs(p, q, k, v, do, *, scale):
    """(dq, dk, dv) given the probabilities P; all tensors in one compute dtype.

    dS = P * (dP - rowsum(P * dP)) comes from PyTorch's softmax backward
    (``torch._softmax_backward_data``), the op the math path's autograd runs: for
    fp16/bf16 it accumulates in fp32 inside one kernel and rounds dS once. The
    difference cancels: formed in fp16 it gave 2.6x the math path's error on dk (Tq=1,
    Tk=8, window 2, D=80; tests/test_properties.py). Forming it from fp32 copies of P
    and dP instead cost 2.5x the backward's peak memory and 1.8x its time at B4 H16
    T4096 (asv on the H100, commit 05b83aa). It is differentiable, so a grad-grad
    through this function stays exact.
    """
    dp = torch.matmul(do, v.transpose(-1, -2))
    ds = torch._softmax_backward_data(dp, p, -1, p.dtype)
    dq = torch.matmul(ds, k) * scale
    dk = torch.matmul(ds.transpose(-1, -2), q) * scale
    dv = torch.matmul(p.transpose(-1, -2), do)
    return dq, dk, dv


def attention_double_backward(
    q, k, v, do, gdq, gdk, gdv, *, causal=False, window=None, scale=None, upcast=True
):
    """Gradients of <gdq, dq> + <gdk, dk> + <gdv, dv> w.r.t. (q, k, v, do).

    The terms of docs/gradgrad.md, written
    out so the streaming Triton kernels have a readable twin. ``gdq``/``gdk``/
    ``gdv`` may be None (autograd's zero). Built from differentiable ops, so a
    third derivative through it is still correct.
    """
    scale = default_scale(q.shape[-1]) if scale is None else scale
    cdt = _compute_dtype(q.dtype, upcast)
    qc, kc, vc, doc = (t.to(cdt) for t in (q, k, v, do))
    u = torch.zeros_like(qc) if gdq is None else gdq.to(cdt)
    w = torch.zeros_like(kc) if gdk is None else gdk.to(cdt)
    z = torch.zeros_like(vc) if gdv is None else gdv.to(cdt)

    p = _probabilities(qc, kc, causal=causal, window=window, scale=scale, compute_dtype=cdt)
    grad_q, grad_k, grad_v, grad_do = double_backward_from_probs(
        p, qc, kc, vc, doc, u, w, z, scale=scale
    )
    return (
        grad_q.to(q.dtype),
        grad_k.to(k.dtype),
        grad_v.to(v.dtype),
        grad_do.to(do.dtype),
    )


def double_backward_from_probs(p, q, k, v, do, u, w, z, *, scale):
    """(grad_q, grad_k, grad_v, grad_do) given P and the cotangents u, w, z of (dq, dk, dv).

    All tensors in one compute dtype; u, w, z are tensors (zeros for "no cotangent").
    """
    dp = torch.matmul(do, v.transpose(-1, -2))
    delta = (p * dp).sum(dim=-1, keepdim=True)
    ds = p * (dp - delta)
    # G = dL/d(dS); masked entries carry P = 0, so they drop out of every product with P.
    g = scale * (torch.matmul(u, k.transpose(-1, -2)) + torch.matmul(q, w.transpose(-1, -2)))
    pz = torch.matmul(p, z)
    gamma = (p * g).sum(dim=-1, keepdim=True)
    rho = (p * g * dp).sum(dim=-1, keepdim=True) + (do * pz).sum(-1, keepdim=True)
    rho = rho - 2 * delta * gamma
    a = p * (g - gamma)  # dL/d(dP)
    c = p * (g * (dp - delta) - gamma * dp + torch.matmul(do, z.transpose(-1, -2)) - rho)
    grad_q = scale * (torch.matmul(ds, w) + torch.matmul(c, k))
    grad_k = scale * (torch.matmul(ds.transpose(-1, -2), u) + torch.matmul(c.transpose(-1, -2), q))
    grad_v = torch.matmul(a.transpose(-1, -2), do)
    grad_do = pz + torch.matmul(a, v)
    return grad_q, grad_k, grad_v, grad_do
