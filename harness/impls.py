"""What is run: seeded inputs, the three paths, and the implementation behind each mode.

A mode (the asv ``bwd_mode`` axis) names an implementation of attention(q, k, v) -> o:
the math reference, torch.compile'd math, PyTorch SDPA (every fused backend as a
candidate, the fastest correct one kept), or ``kernels.attention`` with that bwd_mode.
A path (forward, backward, gradgrad) is what is done with it: :func:`run_path`.
A mode that cannot run here raises NotImplementedError, which the suite records as a
skip, never a failure. torch is imported inside the functions (see harness/__init__.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from harness.grid import ALL_MODES, KERNEL_MODES, Config, check_path

OUTPUT_NAMES = {
    "forward": ("o",),
    "backward": ("dq", "dk", "dv"),
    "gradgrad": ("grad_q", "grad_k", "grad_v"),
}


@dataclasses.dataclass
class Inputs:
    """q, k, v (leaves that require grad), the output cotangent dO, and the fixed
    random r = (r_q, r_k, r_v) of the grad-grad loss L = sum_i <g_i, r_i>."""

    q: Any
    k: Any
    v: Any
    do: Any
    r: tuple


def make_inputs(cfg: Config, device, *, seed: int = 0) -> Inputs:
    """Seeded standard-normal inputs (never zeros: a zero dO or r hides whole terms)."""
    import torch

    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    B, H, D, tq, tk, dt = cfg.B, cfg.H, cfg.D, cfg.tq, cfg.tk, cfg.torch_dtype

    def normal(t, requires_grad=False):
        x = torch.randn(B, H, t, D, generator=gen, device=device, dtype=torch.float32)
        return x.to(dt).requires_grad_(requires_grad)

    q, k, v = normal(tq, True), normal(tk, True), normal(tk, True)
    do = normal(tq)
    r = (normal(tq), normal(tk), normal(tk))
    return Inputs(q, k, v, do, r)


def run_path(path: str, attn: Callable, inp: Inputs) -> tuple:
    """Run one path and return its outputs (:data:`OUTPUT_NAMES`).

    forward: o = attn(q, k, v), inputs requiring grad as in training (so what a mode
    saves for backward counts in its memory). backward: a training step, forward +
    grad(o, (q, k, v), dO). gradgrad: forward, g = grad(..., create_graph=True),
    L = sum_i <g_i, r_i>, grad(L, (q, k, v)) (docs/design.md).
    """
    import torch

    check_path(path)
    q, k, v = inp.q, inp.k, inp.v
    o = attn(q, k, v)
    if path == "forward":
        return (o,)
    if path == "backward":
        return torch.autograd.grad(o, (q, k, v), inp.do)
    g = torch.autograd.grad(o, (q, k, v), inp.do, create_graph=True)
    loss = sum((gi * ri).sum() for gi, ri in zip(g, inp.r))
    return torch.autograd.grad(loss, (q, k, v))


# --------------------------------------------------------------------------------------
# Implementations (one per bwd_mode)
# --------------------------------------------------------------------------------------

SDPA_BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")


def kernels_attention() -> Callable:
    """``kernels.attention``; NotImplementedError (a skip) while it has not landed."""
    import importlib

    try:
        module = importlib.import_module("kernels.attention")
    except ModuleNotFoundError as exc:
        if exc.name in ("kernels.attention", "kernels"):
            raise NotImplementedError("kernels.attention has not landed") from exc
        raise  # a real import error inside the kernels is a failure, not a skip
    import kernels

    attn = getattr(kernels, "attention", None)
    if not callable(attn):  # the package does not re-export it: take the module's function
        attn = getattr(module, "attention", None)
    if not callable(attn):
        raise NotImplementedError("kernels.attention has no callable 'attention'")
    return attn


def math_attention(cfg: Config) -> Callable:
    from kernels import reference

    causal, window = cfg.causal, cfg.window
    return lambda q, k, v: reference.attention(q, k, v, causal=causal, window=window)


def implementations(mode: str, cfg: Config, device) -> list[tuple[str, Callable]]:
    """Candidate implementations of ``mode``: (label, attn(q, k, v) -> o).

    One candidate for every mode except ``sdpa``, which offers each fused backend
    (cuDNN, flash, memory-efficient); the fastest that passes parity is kept.
    Raises NotImplementedError when the mode cannot run here (a skip).
    """
    import torch

    device = torch.device(device)
    causal, window = cfg.causal, cfg.window
    if mode == "math":
        return [("math", math_attention(cfg))]
    if mode == "compiled":
        torch._dynamo.reset()  # a fresh compile per configuration, no recompile limit
        return [("compiled", torch.compile(math_attention(cfg), dynamic=False))]
    if mode == "sdpa":
        return sdpa_candidates(cfg, device)
    if mode == "flash":
        if device.type != "cuda":
            raise NotImplementedError("SDPA's flash backend needs CUDA")
        return [c for c in sdpa_candidates(cfg, device) if c[0] == "sdpa(flash)"]
    if mode in KERNEL_MODES:
        attn = kernels_attention()
        return [
            (
                f"kernels.attention({mode})",
                lambda q, k, v: attn(q, k, v, causal=causal, window=window, bwd_mode=mode),
            )
        ]
    raise ValueError(f"bwd_mode must be one of {ALL_MODES}, got {mode!r}")


def sdpa_candidates(cfg: Config, device) -> list[tuple[str, Callable]]:
    """PyTorch SDPA pinned to each fused backend in turn (PyTorch's own choice on CPU)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels import reference

    # SDPA's is_causal is top-left aligned: right only for square causal. A window or a
    # bottom-right causal Tq < Tk goes in as an explicit boolean mask (as the baselines of
    # docs/baselines.md did).
    is_causal = cfg.causal and cfg.window is None and cfg.tq == cfg.tk
    mask = None
    if cfg.causal and not is_causal:
        mask = reference.visible_mask(cfg.tq, cfg.tk, causal=True, window=cfg.window, device=device)

    def make(backend):
        def attn(q, k, v):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

        return attn

    if device.type != "cuda":  # only reachable from the quick CLI: PyTorch's own choice

        def default(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

        return [("sdpa(default)", default)]
    names = [b for b in SDPA_BACKENDS if hasattr(SDPBackend, b)]
    return [(f"sdpa({b.split('_')[0].lower()})", make(getattr(SDPBackend, b))) for b in names]
