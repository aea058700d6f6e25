"""How long a call takes and how much memory it needs: GPU and CPU timers, host time, peak.

- GPU time: median over CUDA-event-timed iterations with an L2 flush before each
  (the method of ``triton.testing.do_bench``). CPU time: ``time.perf_counter``
  median, which is CPU wall-clock and labelled so.
- Host time (GPU only, ``track_host_ms``): ``time.perf_counter`` around each of the
  first timed calls, no sync (:func:`step_timing`). A row whose host ms reaches its
  ms is bound by Python and launches, and moves with the host.
- Peak memory: ``torch.cuda.max_memory_allocated`` during one call, minus what
  was allocated before it (the inputs). CPU has no such counter: None there.

No function here is named ``time_*``: imported into a bench_suite module, asv would take
it for a benchmark. torch is imported inside the functions.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable

# asv runs: ~100 ms of timed iterations after ~25 ms of warm-up (do_bench's defaults);
# BENCH_SUITE_REP_MS lowers it for smoke runs.
DEFAULT_REP_MS = float(os.environ.get("BENCH_SUITE_REP_MS", "100"))
DEFAULT_WARMUP_MS = 25.0
MIN_ITERS = 5  # a median of fewer is noise; a 150 ms call still costs < 1 s
MAX_ITERS = 1000
L2_FLUSH_BYTES = 256 * 2**20  # > H100's 50 MB L2, as do_bench


# Host time of a call: perf_counter around the call alone (no sync), median of the first
# HOST_SAMPLES timed calls, which start on an idle GPU. Later calls of a GPU-bound step
# can block once the launch queue is full, which would count GPU time as host time:
# 20 calls of a grad-grad step are ~500 launches, under the ~1000 a queue holds.
HOST_SAMPLES = 20


def median_ms(
    fn: Callable,
    device,
    *,
    iters: int | None = None,
    rep_ms: float | None = None,
    warmup_ms: float = DEFAULT_WARMUP_MS,
) -> float:
    """Median milliseconds per call: CUDA events on a GPU, perf_counter (CPU wall-clock) else.

    (Not named time_*: asv would take it for a benchmark, see the module docstring.)

    ``iters`` fixes the number of timed calls; by default it follows from ``rep_ms``.
    """
    return step_timing(fn, device, iters=iters, rep_ms=rep_ms, warmup_ms=warmup_ms)[0]


def step_timing(
    fn: Callable,
    device,
    *,
    iters: int | None = None,
    rep_ms: float | None = None,
    warmup_ms: float = DEFAULT_WARMUP_MS,
) -> tuple[float, float | None]:
    """(median ms per call, median host ms per call): :func:`median_ms` and, on a GPU, the
    host time of the same timed calls (``HOST_SAMPLES``); None on CPU, where the wall
    clock already is the host's.

    Where the host ms reaches the GPU ms, the step waits on Python and launches, not on
    kernels, and its ms moves with the host (README, "Results on one H100").
    """
    import torch

    rep_ms = DEFAULT_REP_MS if rep_ms is None else rep_ms
    if torch.device(device).type == "cuda":
        return _cuda_timing(fn, iters, rep_ms, warmup_ms)
    return _cpu_median_ms(fn, iters, rep_ms, warmup_ms), None


def _n_iters(iters, rep_ms, estimate_ms):
    if iters is not None:
        return max(1, int(iters))
    return min(MAX_ITERS, max(MIN_ITERS, int(rep_ms / max(estimate_ms, 1e-6))))


def _cuda_timing(fn, iters, rep_ms, warmup_ms):
    import torch

    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        flush.zero_()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = start.elapsed_time(end) / 3
    for _ in range(max(1, int(warmup_ms / max(estimate, 1e-6)))):
        fn()
    torch.cuda.synchronize()  # an empty launch queue for the host samples
    n = _n_iters(iters, rep_ms, estimate)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    host = []
    for i in range(n):
        flush.zero_()  # cold L2 for every call, as triton.testing.do_bench
        starts[i].record()
        t0 = time.perf_counter()
        fn()
        if i < HOST_SAMPLES:
            host.append((time.perf_counter() - t0) * 1e3)
        ends[i].record()
    torch.cuda.synchronize()
    ms = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))
    return ms, statistics.median(host)


def _cpu_median_ms(fn, iters, rep_ms, warmup_ms):
    t0 = time.perf_counter()
    fn()
    estimate = (time.perf_counter() - t0) * 1e3
    for _ in range(max(1, int(warmup_ms / max(estimate, 1e-6)))):
        fn()
    times = []
    for _ in range(_n_iters(iters, rep_ms, estimate)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mib(fn: Callable, device) -> float | None:
    """Peak GPU memory of one call above what was allocated before it (MiB); None on CPU."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return (peak - base) / 2**20


def free_memory():
    """Drop what Python no longer references and hand cached CUDA blocks back, between
    measurements (and after an out-of-memory) so one does not inherit another's."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
