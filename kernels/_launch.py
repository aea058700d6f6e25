"""Launching the Triton kernels: Triton's own launch path once per problem, a cached launch after.

Why: a training step at a small shape is bound by host time, not GPU time. At the
seed shape (B2 H4 T2048 D128) the fused backward does 0.16-0.2 ms of GPU work, and
going through ``kernel[grid](...)`` for its three kernels (two since delta moved into
the dQ kernel) took 0.41 ms of host time on the H100 (docs/probes.md, gpu_overhead_probe,
2026-11-25); with this cache the two launches' launcher took 0.10 ms
(docs/probes.md, gpu_step_probe). Per launch, Triton's Python
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

A later launch with the same signature runs exactly the binary Triton picked, one of
two ways:

- **direct** (the default on CUDA): ``cuLaunchKernel`` through ctypes on the
  ``CompiledKernel``'s CUfunction, with the kernel's parameter block packed once per
  signature; a launch only writes the tensors' data pointers into it. It skips what
  Triton's compiled runner still does per launch: the stream lookup, the launch
  metadata, a C launcher that parses ~45 arguments and asks the driver about every
  pointer, two Python hook calls. At the seed shape a training step (three launches)
  took 197-220 us of host time direct against 253-393 us through the runner with
  autograd's device thread off, 304-308 against 456-473 us with it on
  (scripts/gpu_host_profile.py, two calls on the H100, modes one after another in one
  process). The packing is checked against the driver's own account of the function
  (``cuFuncGetParamInfo``: count and size of every parameter) before an entry may
  launch directly; any mismatch, a kernel that needs scratch memory, clusters or launch
  attributes, a profiler hook, or a thread with no current CUDA context sends the
  launch to Triton's runner instead.
- **runner**: ``compiled[grid](*args)``, Triton's own entry for a compiled kernel.

Under the interpreter, or when Triton does not hand back a ``CompiledKernel``, nothing
is cached and every launch takes Triton's path. ``KERNELS_LAUNCH_CACHE`` picks the
mode: unset or ``1`` direct where it can, ``runner`` Triton's compiled runner, ``0`` no
cache (A/B timing, or an escape hatch should a Triton release change what it builds).
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings

import torch

try:  # the class Triton's JIT returns from a launch
    from triton.compiler import CompiledKernel as _CompiledKernel

    COMPILED_KERNEL_TYPES: tuple[type, ...] = (_CompiledKernel,)
except ImportError:  # pragma: no cover - a Triton without it: always Triton's path
    COMPILED_KERNEL_TYPES = ()

try:  # profiler hooks (proton): a launch with one set must go through Triton
    from triton import knobs as _knobs
except ImportError:  # pragma: no cover - older Triton: no hooks to honour
    _knobs = None


def launch_mode() -> str:
    """``"direct"``, ``"runner"`` or ``"off"``, from ``KERNELS_LAUNCH_CACHE``."""
    value = os.environ.get("KERNELS_LAUNCH_CACHE", "1")
    return {"0": "off", "runner": "runner"}.get(value, "direct")


# Kernel parameter types of Triton's signatures (its C launcher's table) that a direct
# launch packs; pointers are 8-byte device addresses. Anything else: Triton's runner.
SCALAR_CTYPES = {
    "i1": ctypes.c_int8,
    "i8": ctypes.c_int8,
    "i16": ctypes.c_int16,
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "u1": ctypes.c_uint8,
    "u8": ctypes.c_uint8,
    "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64,
    "fp32": ctypes.c_float,
    "fp64": ctypes.c_double,
}
# Triton appends its scratch pointers (global, then profile in Triton >= 3.5) after the
# signature's parameters; a direct launch passes them as null and so only takes kernels
# whose metadata asks for no scratch.
MAX_TRAILING_SCRATCH_POINTERS = 2


def parameter_slots(types, args, n_tensors):
    """ctypes storage for each kernel parameter, in order, or None if one can't be packed.

    ``types``: Triton's signature type per kernel argument, in signature order
    (``"constexpr"`` for constexprs and for ints Triton specialized to a constant, which
    are no parameters of the compiled function). ``args``: the positional arguments,
    tensors first. Returns ``(slots, pointer_slots)``: scalars hold their value,
    ``pointer_slots`` (one per tensor, in order) get a data pointer at each launch.
    """
    slots, pointer_slots = [], []
    for index, ty in enumerate(types):
        if ty == "constexpr":
            continue
        if index >= len(args) or not isinstance(ty, str):
            return None  # a runtime parameter among the keywords, or a tuple argument
        if index < n_tensors:
            if not ty.startswith("*"):
                return None
            slot = ctypes.c_uint64(0)
            pointer_slots.append(slot)
        else:
            ctype = SCALAR_CTYPES.get(ty)
            if ctype is None:
                return None
            slot = ctype(args[index])
        slots.append(slot)
    if len(pointer_slots) != n_tensors:
        return None
    return slots, pointer_slots


def trailing_scratch_count(sizes, slots):
    """How many null scratch pointers follow ``slots``, given the driver's parameter sizes.

    None when the sizes do not match the packing (a Triton that lays out parameters
    otherwise): then the kernel is never launched directly.
    """
    extra = len(sizes) - len(slots)
    if not 0 <= extra <= MAX_TRAILING_SCRATCH_POINTERS:
        return None
    if any(size != ctypes.sizeof(slot) for size, slot in zip(sizes, slots)):
        return None
    if any(size != 8 for size in sizes[len(slots) :]):
        return None
    return extra


class _CudaDriver:
    """The three driver entry points a direct launch uses, from the libcuda torch loaded."""

    def __init__(self):
        lib = ctypes.CDLL("libcuda.so.1")
        self.launch = lib.cuLaunchKernel
        self.launch.restype = ctypes.c_int
        self.launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
        self.ctx_get_current = lib.cuCtxGetCurrent
        self.ctx_get_current.restype = ctypes.c_int
        self.ctx_get_current.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.param_info = getattr(lib, "cuFuncGetParamInfo", None)  # CUDA >= 12.4
        if self.param_info is not None:
            self.param_info.restype = ctypes.c_int
            self.param_info.argtypes = [
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.POINTER(ctypes.c_size_t),
            ]
        self._ctx = ctypes.c_void_p()

    def has_context(self) -> bool:
        return self.ctx_get_current(ctypes.byref(self._ctx)) == 0 and bool(self._ctx.value)

    def parameter_sizes(self, function) -> list[int] | None:
        if self.param_info is None:
            return None
        offset, size, sizes = ctypes.c_size_t(), ctypes.c_size_t(), []
        while self.param_info(function, len(sizes), ctypes.byref(offset), ctypes.byref(size)) == 0:
            sizes.append(size.value)
            if len(sizes) > 4096:
                return None
        return sizes


_driver_cache: list = []


def _cuda_driver():
    """The process's _CudaDriver, or None where libcuda can't be opened."""
    if not _driver_cache:
        try:
            _driver_cache.append(_CudaDriver())
        except (OSError, AttributeError):
            _driver_cache.append(None)
    return _driver_cache[0]


# Threads known to have a current CUDA context (autograd's device threads may start
# without one until a CUDA call sets it): asked once per thread, not per launch.
_thread_state = threading.local()


def _profiler_hooks_set() -> bool:
    if _knobs is None:
        return False
    for name in ("launch_enter_hook", "launch_exit_hook"):
        hook = getattr(_knobs.runtime, name, None)
        if hook is not None and getattr(hook, "calls", True):
            return True
    return False


class DirectLaunch:
    """``cuLaunchKernel`` of one compiled kernel with one grid, parameters packed once."""

    def __init__(self, driver, function, grid, block, shared, slots, pointer_slots, device):
        self.driver = driver
        self.pointer_slots = pointer_slots
        self.slots = slots  # kept alive: ``params`` holds their addresses
        self.params = (ctypes.c_void_p * len(slots))(*[ctypes.addressof(s) for s in slots])
        self.launch_args = (function, *grid, block, 1, 1, shared)
        self.device = device
        # The parameter block is shared: two threads launching this entry at once must not
        # interleave their pointer writes (the GIL can switch between them).
        self.lock = threading.Lock()

    @classmethod
    def build(cls, compiled, grid, types, args, n_tensors, device):
        """A DirectLaunch for ``compiled``, or None where only Triton's runner is safe."""
        driver = _cuda_driver()
        meta = getattr(compiled, "metadata", None)
        function = getattr(compiled, "function", None)
        if driver is None or meta is None or not function or device is None:
            return None
        cluster = tuple(getattr(meta, "cluster_dims", None) or (1, 1, 1))
        if (
            getattr(meta, "num_ctas", 1) != 1
            or any(c != 1 for c in cluster)
            or getattr(meta, "launch_cooperative_grid", False)
            or getattr(meta, "launch_pdl", False)
            or getattr(meta, "global_scratch_size", 0)
            or getattr(meta, "profile_scratch_size", 0)
            or getattr(meta, "tensordesc_meta", None)
        ):
            return None
        packed = parameter_slots(types, args, n_tensors)
        if packed is None:
            return None
        slots, pointer_slots = packed
        sizes = driver.parameter_sizes(function)
        extra = None if sizes is None else trailing_scratch_count(sizes, slots)
        if extra is None:
            return None
        slots = slots + [ctypes.c_uint64(0) for _ in range(extra)]
        block = 32 * int(meta.num_warps)
        return cls(driver, function, grid, block, int(meta.shared), slots, pointer_slots, device)

    def __call__(self, pointers) -> bool:
        """Launch on the current stream; False (nothing launched) where Triton must do it.

        ``pointers``: the tensors' data pointers, in argument order.
        """
        if not getattr(_thread_state, "has_context", False):
            if not self.driver.has_context():
                return False
            _thread_state.has_context = True
        if _profiler_hooks_set():
            return False
        stream = torch._C._cuda_getCurrentRawStream(self.device)
        with self.lock:
            for slot, pointer in zip(self.pointer_slots, pointers):
                slot.value = pointer
            status = self.driver.launch(*self.launch_args, stream, self.params, None)
        if status != 0:
            raise RuntimeError(f"cuLaunchKernel failed with CUresult {status}")
        return True


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
        self.direct_launches = 0
        self.triton_launches = 0

    def __call__(self, grid, *args, **constexprs):
        """``kernel[grid](*args, **constexprs)``; ``grid``: a tuple or a function of meta."""
        tensors = args[: self.n_tensors]
        device = tensors[0].device
        # torch._C._cuda_getDevice: torch.cuda.current_device without its Python wrapper.
        if device.type == "cuda" and device.index != torch._C._cuda_getDevice():
            with torch.cuda.device(device):  # Triton launches on the current device
                return self(grid, *args, **constexprs)
        mode = launch_mode()
        if self._broken or mode == "off":
            self.triton_launches += 1
            return self.kernel[grid](*args, **constexprs)
        pointers = [t.data_ptr() for t in tensors]
        key = (
            tuple([(t.dtype, p % 16 == 0, t.shape) for t, p in zip(tensors, pointers)]),
            args[self.n_tensors :],
            tuple(constexprs.items()),
            device.index,
        )
        entry = self._entries.get(key)
        if entry is not None:
            runner, constexpr_tail, direct = entry
            if direct is not None and mode == "direct" and direct(pointers):
                self.cached_launches += 1
                self.direct_launches += 1
                return None
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
            self._entries[key] = self._entry(compiled, grid, args, constexprs, device)
        return None

    def _entry(self, compiled, grid, args, constexprs, device):
        best = getattr(self.kernel, "best_config", None)
        meta = dict(zip(self.arg_names, args))
        meta.update(constexprs)
        if best is not None:
            meta.update(best.kwargs)
        # The compiled kernel takes every parameter in order, constexprs included.
        constexpr_tail = tuple(meta[name] for name in self.arg_names[len(args) :])
        grid = tuple(grid(meta)) if callable(grid) else tuple(grid)
        grid = grid + (1,) * (3 - len(grid))
        direct = None
        if device.type == "cuda":
            signature = getattr(getattr(compiled, "src", None), "signature", None) or {}
            types = [signature.get(name) for name in self.arg_names]
            direct = DirectLaunch.build(compiled, grid, types, args, self.n_tensors, device.index)
        return compiled[grid], constexpr_tail, direct
