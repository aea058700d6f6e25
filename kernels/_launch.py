"""Launching the Triton kernels: Triton's own launch path once per problem, a cached launch after.

Why: a training step at a small shape is bound by host time, not GPU time. At the
seed shape (B2 H4 T2048 D128) the fused backward does 0.16-0.2 ms of GPU work, and
going through ``kernel[grid](...)`` for its three kernels (two since delta moved into
the dQ kernel) took 0.41 ms of host time on the H100 (scripts/gpu_overhead_probe.py,
2026-11-25); with this cache the two launches' launcher took 0.10 ms
(scripts/gpu_step_probe.py). Per launch, Triton's Python
path builds the autotuner key, binds and specializes ~40 arguments (each int is
checked for ``== 1`` and ``% 16``, each pointer for 16-byte alignment) and hashes
the result into its kernel-cache key, before the C launcher runs.

How: :class:`CachedLauncher` sends the first launch of a *launch signature* through
``kernel[grid](...)`` (autotune, compile, specialize) and keeps the
``CompiledKernel`` Triton ran, with the grid and the constexpr values of the chosen
config. The signature fixes everything Triton specializes on, and more:

- every scalar argument by value (ints: Triton specializes ``== 1`` and ``% 16``;
  floats are never specialized, so keying them by value only costs a miss),
- every tensor by dtype, by whether its data pointer is 16-byte aligned, and by shape
  (a grid depends on sizes that are no kernel argument: the batch is only in a grid),
- the constexpr keywords, and the CUDA device.

So a grid must be a function of the tensors' shapes and of the meta dict, nothing else.

A later launch with the same signature calls the ``CompiledKernel`` directly
(``compiled[grid](*args)``, Triton's own entry for a compiled kernel), so it runs
exactly the binary Triton would have picked. Under the interpreter, or when Triton
does not hand back a ``CompiledKernel``, nothing is cached and every launch takes
Triton's path. ``KERNELS_LAUNCH_CACHE=0`` turns the cache off (A/B timing, or an
escape hatch should a Triton release change the compiled-kernel call).
"""

from __future__ import annotations

import os
import warnings

import torch

try:  # the class Triton's JIT returns from a launch
    from triton.compiler import CompiledKernel as _CompiledKernel

    COMPILED_KERNEL_TYPES: tuple[type, ...] = (_CompiledKernel,)
except ImportError:  # pragma: no cover - a Triton without it: always Triton's path
    COMPILED_KERNEL_TYPES = ()


def launch_cache_enabled() -> bool:
    return os.environ.get("KERNELS_LAUNCH_CACHE", "1") != "0"


class CachedLauncher:
    """Launch one ``@triton.jit`` kernel (autotuned or not) with the cache described above.

    ``n_tensors``: the kernel's first ``n_tensors`` arguments are tensors, the rest of
    the positional arguments are scalars; constexprs are passed as keywords. Every
    kernel in this package is written that way, so the key is cheap to build.
    """

    def __init__(self, kernel, n_tensors: int):
        self.kernel = kernel
        self.n_tensors = n_tensors
        fn = kernel
        while not hasattr(fn, "arg_names") and hasattr(fn, "fn"):
            fn = fn.fn
        self.arg_names = list(fn.arg_names)
        self._entries: dict = {}
        self._broken = False
        self.cached_launches = 0  # counters the tests read
        self.triton_launches = 0

    def __call__(self, grid, *args, **constexprs):
        """``kernel[grid](*args, **constexprs)``; ``grid``: a tuple or a function of meta."""
        tensors = args[: self.n_tensors]
        device = tensors[0].device
        if device.type == "cuda" and device.index != torch.cuda.current_device():
            with torch.cuda.device(device):  # Triton launches on the current device
                return self(grid, *args, **constexprs)
        if self._broken or not launch_cache_enabled():
            self.triton_launches += 1
            return self.kernel[grid](*args, **constexprs)
        key = (
            tuple([(t.dtype, t.data_ptr() % 16 == 0, t.shape) for t in tensors]),
            args[self.n_tensors :],
            tuple(constexprs.items()),
            device.index,
        )
        entry = self._entries.get(key)
        if entry is not None:
            runner, constexpr_tail = entry
            try:
                runner(*args, *constexpr_tail)
            except (TypeError, ValueError) as exc:
                # The C launcher parses its argument tuple before launching: a Triton whose
                # compiled kernels want other arguments fails here, having launched nothing.
                self._broken = True
                warnings.warn(
                    f"kernels: cached launch of {self.arg_names[0]}... failed ({exc}); "
                    "using Triton's launch path from now on",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return self(grid, *args, **constexprs)
            self.cached_launches += 1
            return None
        compiled = self.kernel[grid](*args, **constexprs)
        self.triton_launches += 1
        if COMPILED_KERNEL_TYPES and isinstance(compiled, COMPILED_KERNEL_TYPES):
            self._entries[key] = self._entry(compiled, grid, args, constexprs)
        return None

    def _entry(self, compiled, grid, args, constexprs):
        best = getattr(self.kernel, "best_config", None)
        meta = dict(zip(self.arg_names, args))
        meta.update(constexprs)
        if best is not None:
            meta.update(best.kwargs)
        # The compiled kernel takes every parameter in order, constexprs included.
        constexpr_tail = tuple(meta[name] for name in self.arg_names[len(args) :])
        grid = tuple(grid(meta)) if callable(grid) else tuple(grid)
        grid = grid + (1,) * (3 - len(grid))
        return compiled[grid], constexpr_tail
