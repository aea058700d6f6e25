"""Compile an autotuner's candidates in parallel threads before it times them, one by one.

Why: Triton's autotuner compiles each candidate config when it first times it, one after
the other. A grad-grad kernel takes ~11 s to compile for sm_90, and the tables hold 4
candidates per kernel (kernels/tuning.py), so a cold machine spent 355 s of a 650 s GPU
grid in first calls on the lent H200 (issue 20), nearly all of it compiling. The
compilations are independent and mostly outside the GIL (MLIR passes in C++, ptxas in a
subprocess), so they can run side by side; the timing stays serial and on an idle GPU.

How: Triton (>= 3.5) has an async compile mode: inside ``AsyncCompileMode(executor)`` a
``warmup`` call (compile only, no launch) submits its compilation to the executor and
leaves a placeholder in the kernel's cache; leaving the context waits for them all and
puts the compiled kernels in place. :class:`CompileAheadAutotuner` does that for every
pruned candidate the first time it meets a tuning key, then runs the ordinary autotuner,
which finds each candidate compiled (in memory, and on disk for later processes). Where
the mode is missing, or anything in the ahead-of-time pass fails, the autotuner compiles
as before: the pass only saves time, it never decides a result.

``KERNELS_COMPILE_THREADS``: threads for it (default: half the cores, at most 8; ``1`` or
``0`` turns the pass off).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

from triton.runtime.autotuner import Autotuner

try:  # triton >= 3.5
    from triton.runtime._async_compile import AsyncCompileMode
except ImportError:  # pragma: no cover - an older Triton compiles serially, as before
    AsyncCompileMode = None

THREADS_ENV = "KERNELS_COMPILE_THREADS"
MAX_DEFAULT_THREADS = 8  # 4 candidates a kernel; 8 leaves room for two kernels' worth


def compile_threads(env: dict | None = None) -> int:
    """Threads for the ahead-of-time compile pass; 1 means no pass."""
    env = os.environ if env is None else env
    value = env.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            warnings.warn(
                f"{THREADS_ENV}={value!r} is no integer; compiling serially", stacklevel=2
            )
            return 1
    return max(1, min(MAX_DEFAULT_THREADS, (os.cpu_count() or 2) // 2))


class CompileAheadAutotuner(Autotuner):
    """A ``triton.autotune`` whose first call per tuning key compiles every pruned
    candidate in parallel first (module docstring). Made by :func:`compile_ahead`."""

    def run(self, *args, **kwargs):
        if not kwargs.get("warmup") and len(self.configs) > 1:
            key = tuning_key(self, args, kwargs)
            done = self.__dict__.setdefault("_compiled_ahead", set())
            if key not in done:
                done.add(key)
                compile_candidates(self, args, kwargs, compile_threads())
        return super().run(*args, **kwargs)


def compile_ahead(tuner: Autotuner) -> Autotuner:
    """``tuner`` (what ``triton.autotune(...)(fn)`` built) as a :class:`CompileAheadAutotuner`.

    The class is swapped on the built object instead of calling the constructor: its
    signature changes between Triton releases, the decorator's call does not.
    """
    if AsyncCompileMode is not None and type(tuner) is Autotuner:
        tuner.__class__ = CompileAheadAutotuner
    return tuner


def tuning_key(tuner, args, kwargs) -> tuple:
    """The values of the tuner's key arguments and the tensors' dtypes, as Triton keys its
    tuning cache: one ahead-of-time pass per key."""
    named = {**dict(zip(tuner.arg_names, args)), **kwargs}
    key = [named[k] for k in tuner.keys if k in named]
    key += [str(v.dtype) for k, v in named.items() if k in tuner.arg_names and hasattr(v, "dtype")]
    return tuple(key)


def compile_candidates(tuner, args, kwargs, threads: int) -> int:
    """Compile (no launch) every candidate the tuner's pruning keeps for these arguments, in
    ``threads`` threads; the number submitted (0 when the pass does not apply or failed,
    with a warning for a failure: the autotuner then compiles them itself)."""
    if threads < 2 or AsyncCompileMode is None:
        return 0
    try:
        tuner.nargs = dict(zip(tuner.arg_names, args))
        try:
            configs = tuner.prune_configs(kwargs)
        finally:
            tuner.nargs = None
        if len(configs) < 2:
            return 0
        launch = {k: v for k, v in kwargs.items() if k != "warmup"}  # grid stays
        with ThreadPoolExecutor(min(threads, len(configs))) as pool:
            # ignore_errors: a candidate that fails to compile is left to the autotuner,
            # which skips it as it always has (its error is the autotuner's to report)
            with AsyncCompileMode(pool, ignore_errors=True):
                for config in configs:
                    tuner.fn.warmup(*args, **launch, **config.all_kwargs())
        return len(configs)
    except Exception as exc:  # noqa: BLE001 -- a failed pass costs time, never a result
        warnings.warn(
            f"compiling {getattr(tuner.fn, '__name__', 'a kernel')}'s candidates in parallel "
            f"failed ({type(exc).__name__}: {exc}); the autotuner compiles them one by one",
            stacklevel=2,
        )
        return 0
