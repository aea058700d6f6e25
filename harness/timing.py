"""How long a call takes and how much memory it needs: GPU and CPU timers, host time, peak.

- GPU time: median over CUDA-event-timed iterations with an L2 flush before each
  (the method of ``triton.testing.do_bench``). CPU time: ``time.perf_counter``
  median, which is CPU wall-clock and labelled so.
- Host time (GPU only, ``track_host_ms``): ``time.perf_counter`` around each of the
  first timed calls, no sync (:func:`step_timing`). A row whose host ms reaches its
  ms is bound by Python and launches, and moves with the host.
- Graph time (GPU only, ``track_graph_ms``, :func:`graph_timing`): the same step
  captured once in a ``torch.cuda.CUDAGraph`` and replayed, CUDA events and an L2 flush
  around each replay as for the GPU time. No Python and no launches in it: the kernels'
  time, where the eager GPU time of a short step is the host's (docs/design.md trap 13).
- Peak memory: ``torch.cuda.max_memory_allocated`` during one call, minus what
  was allocated before it (the inputs): :func:`peak_mib`, or :func:`eager_samples` on
  the calls of its estimate. CPU has no such counter: None there.
- Samples: every timer keeps its per-call samples; :func:`summarize` reduces them to
  median, q25, q75, n, min, max and a 99% interval of the median (what a Record keeps of
  them; the runner writes it into asv's stats columns).

No function here is named ``time_*``: imported into a bench_suite module, asv would take
it for a benchmark. torch is imported inside the functions.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

# asv runs: ~100 ms of timed iterations after ~25 ms of warm-up (do_bench's defaults);
# BENCH_SUITE_REP_MS lowers it for smoke runs.
DEFAULT_REP_MS = float(os.environ.get("BENCH_SUITE_REP_MS", "100"))
DEFAULT_WARMUP_MS = 25.0
MIN_ITERS = 5  # a median of fewer is noise
MAX_ITERS = 1000
# A step of SLOW_STEP_MS or more is GPU-bound and steady: on the H200 (b48f541) the 33
# eager and graph rows of >= 30 ms had interquartile ranges of at most 0.76% of their
# median (most under 0.1%), so 3 calls give its median. It is the math and unfused
# baselines at Long and Grid (30-300 ms a call): with 5 eager calls, 5 replays and the
# calls around them they were 60% of a warm grid's measuring.
SLOW_STEP_MS = 30.0
MIN_ITERS_SLOW = 3
# A call this long is timed once for the estimate that sets the number of calls (the mean
# of three shorter ones otherwise): its launch overhead is < 1% of it.
ONE_CALL_ESTIMATE_MS = 5.0
L2_FLUSH_BYTES = 256 * 2**20  # > H100's 50 MB L2, as do_bench
# The flush buffer of each device, allocated once: every timer used to allocate its own,
# and free_memory's empty_cache between measurements handed it back, so each of the ~500
# eager and graph timings of a GPU grid paid a 256 MiB cudaMalloc (and the free a sync).
_FLUSH: dict = {}


def _flush_buffer():
    """This device's L2 flush buffer (``L2_FLUSH_BYTES``), kept for the process. Allocated
    before a timer reads its memory baseline, so peaks never include it."""
    import torch

    device = torch.cuda.current_device()
    if device not in _FLUSH:
        _FLUSH[device] = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    return _FLUSH[device]


# Host time of a call: perf_counter around the call alone (no sync), median of the first
# HOST_SAMPLES timed calls, which start on an idle GPU. Later calls of a GPU-bound step
# can block once the launch queue is full, which would count GPU time as host time:
# 20 calls of a grad-grad step are ~500 launches, under the ~1000 a queue holds.
HOST_SAMPLES = 20

# A step whose host time per call reaches this share of its GPU time is host-bound: the GPU
# waits on Python and launches, so its eager ms is the host's and cannot rank kernels
# (harness/measure.py picks SDPA's backend on graph ms then; reports/metrics.py gives such
# rows the host-bound noise). E.g. the H200's Seed grad-grad in recompute mode: 3.17 ms,
# host 2.97 ms, graph 3.08 ms, 3.54 ms in the next run of the same kernels.
HOST_BOUND_SHARE = 0.8

# What a Record keeps of a timer's samples (:func:`summarize`).
SUMMARY_KEYS = ("median", "q25", "q75", "n", "min", "max", "ci99_lo", "ci99_hi")


def median_ci_rank(n: int, alpha: float = 0.01) -> int | None:
    """The 1-based rank r such that (x_(r), x_(n+1-r)) of n sorted samples covers the
    median with probability >= 1 - alpha; None when no pair of samples does (n < 8 at 99%).

    Order statistics of the median: x_(r) <= median <= x_(n+1-r) unless fewer than r or
    more than n-r samples fall below it, K ~ Binomial(n, 1/2), so the coverage is
    1 - 2 P(K <= r - 1); the largest r that keeps it >= 1 - alpha gives the narrowest such
    interval (asv's statistics.quantile_ci uses the same property). Exact integers.
    """
    limit = alpha / 2 * 2**n  # P(K <= r-1) * 2^n may not pass this
    cum, term, r = 0, 1, 0
    for k in range(n // 2 + 1):
        cum += term  # sum of C(n, j), j <= k
        if cum > limit:
            break
        r = k + 1
        term = term * (n - k) // (k + 1)
    return r or None


def summarize(samples) -> dict | None:
    """{median, q25, q75, n, min, max, ci99_lo, ci99_hi} of ``samples`` (ms); None when
    there are none.

    Quartiles interpolate linearly between the sorted samples (numpy's default,
    ``statistics.quantiles(method="inclusive")``), so one sample gives itself everywhere.
    ci99_lo/ci99_hi: a distribution-free 99% interval of the median from two order
    statistics (:func:`median_ci_rank`); None for fewer than 8 samples.
    """
    xs = sorted(float(x) for x in samples)
    if not xs:
        return None
    r = median_ci_rank(len(xs))

    def quantile(p: float) -> float:
        pos = p * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {
        "median": quantile(0.5),
        "q25": quantile(0.25),
        "q75": quantile(0.75),
        "n": len(xs),
        "min": xs[0],
        "max": xs[-1],
        "ci99_lo": xs[r - 1] if r else None,
        "ci99_hi": xs[len(xs) - r] if r else None,
    }


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
    got = eager_samples(fn, device, iters=iters, rep_ms=rep_ms, warmup_ms=warmup_ms)
    return statistics.median(got.ms), None if got.host is None else statistics.median(got.host)


class EagerSamples(NamedTuple):
    """What :func:`eager_samples` found: ms of every timed call, host ms of the first
    ``HOST_SAMPLES`` (None on CPU), and the peak memory of the estimate's calls (MiB above
    what was allocated before them; None on CPU or unless asked)."""

    ms: list[float]
    host: list[float] | None
    peak_mib: float | None = None


def eager_samples(
    fn: Callable,
    device,
    *,
    iters: int | None = None,
    rep_ms: float | None = None,
    warmup_ms: float = DEFAULT_WARMUP_MS,
    warm: bool = False,
    peak: bool = False,
) -> EagerSamples:
    """The samples behind :func:`step_timing`: ms of every timed call, host ms of the first
    ``HOST_SAMPLES`` of them (None on CPU), and with ``peak`` on a GPU the peak memory of
    one call measured on the estimate's calls: what :func:`peak_mib` gives (each call drops
    its outputs before the next, the flush buffer is allocated before the baseline),
    without a call of its own; a 300 ms step (Long grad-grad) saves 300 ms.

    ``warm``: ``fn`` ran already (compiled, tuned), so on a GPU the untimed first call is
    skipped; the estimate's calls and the warm-up follow as ever."""
    import torch

    rep_ms = DEFAULT_REP_MS if rep_ms is None else rep_ms
    if torch.device(device).type == "cuda":
        return EagerSamples(*_cuda_samples(fn, iters, rep_ms, warmup_ms, warm, peak))
    return EagerSamples(_cpu_samples(fn, iters, rep_ms, warmup_ms), None)


def n_iters(iters, rep_ms, estimate_ms, *, gpu: bool = True) -> int:
    """Timed calls: ``iters`` when given, else ``rep_ms`` worth within [floor, MAX_ITERS],
    the floor ``MIN_ITERS`` (on a GPU ``MIN_ITERS_SLOW`` from ``SLOW_STEP_MS``: a CPU's
    wall clock is not that steady)."""
    if iters is not None:
        return max(1, int(iters))
    floor = MIN_ITERS_SLOW if gpu and estimate_ms >= SLOW_STEP_MS else MIN_ITERS
    return min(MAX_ITERS, max(floor, int(rep_ms / max(estimate_ms, 1e-6))))


def n_warmups(warmup_ms, estimate_ms) -> int:
    """Untimed calls before the timed ones: ``warmup_ms`` worth, at least one; none for a
    step longer than ``warmup_ms``, which the estimate's call already warmed."""
    if estimate_ms >= warmup_ms:
        return 0
    return max(1, int(warmup_ms / max(estimate_ms, 1e-6)))


def _estimate_ms(run, flush) -> float:
    """GPU ms of one ``run`` after an L2 flush: one timed call from ``ONE_CALL_ESTIMATE_MS``
    on, else the mean of three more (the flushes included, as triton's do_bench)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    flush.zero_()
    run()
    end.record()
    torch.cuda.synchronize()
    first = start.elapsed_time(end)
    if first >= ONE_CALL_ESTIMATE_MS:
        return first
    start.record()
    for _ in range(3):
        flush.zero_()
        run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 3


def _cuda_samples(fn, iters, rep_ms, warmup_ms, warm=False, peak=False):
    import torch

    flush = _flush_buffer()
    if not warm:
        fn()  # compilation and lazy initialisation stay out of the estimate
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    estimate = _estimate_ms(fn, flush)
    mib = (torch.cuda.max_memory_allocated() - base) / 2**20 if peak else None
    for _ in range(n_warmups(warmup_ms, estimate)):
        fn()
    torch.cuda.synchronize()  # an empty launch queue for the host samples
    n = n_iters(iters, rep_ms, estimate)
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
    return [s.elapsed_time(e) for s, e in zip(starts, ends)], host, mib


def _cpu_samples(fn, iters, rep_ms, warmup_ms):
    t0 = time.perf_counter()
    fn()
    estimate = (time.perf_counter() - t0) * 1e3
    for _ in range(max(1, int(warmup_ms / max(estimate, 1e-6)))):
        fn()
    times = []
    for _ in range(n_iters(iters, rep_ms, estimate, gpu=False)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


class GraphTiming(NamedTuple):
    """What :func:`graph_timing` found: the replays' summary (:func:`summarize`), or None
    and the reason; with ``keep_outputs``, clones of the last replay's outputs."""

    summary: dict | None
    reason: str = ""
    outputs: Any = None


# Calls on a side stream before the capture, as PyTorch's CUDA-graph docs require: lazy
# initialisation (cuBLAS handles, autotuning, Triton compilation) must not be captured.
# The step ran eagerly before (graph_timing comes after the eager timing), so what is left
# to initialise is the side stream's (cuBLAS workspaces are per stream), which one call
# does. Should it not, the replay check below says so (the row keeps a reason, no time).
CAPTURE_WARMUP_CALLS = 1
# Replays timed: this many ms of them (at least MIN_ITERS, MIN_ITERS_SLOW from
# SLOW_STEP_MS), half the eager budget and no warm-up: the replays follow the eager timing
# of the same kernels, and a replay has no host in it. On the H200 the graph ms of one
# commit's runs on two loans (6d6d561, 31bd45d: 70 rows, 100 ms of replays) differed by
# 0.15% at the median and 1.31% at most; the gate's floor for graph ms is 8%.
GRAPH_REP_MS = DEFAULT_REP_MS / 2
# A replay must give the eager call's outputs within this fraction of their largest
# magnitude, or its time is not the step's. Not exact: SDPA's backward may accumulate
# with atomics. A graph that replays stale or freed memory is off by far more.
GRAPH_CHECK_RTOL = 1e-2


def graph_timing(
    fn: Callable,
    device,
    *,
    iters: int | None = None,
    rep_ms: float | None = None,
    keep_outputs: bool = False,
) -> GraphTiming:
    """GPU ms per replay of ``fn`` captured once in a CUDA graph, or None and why not.

    (Not named time_*: asv would take it for a benchmark.) ``fn`` may run autograd
    (backward, create_graph backward then a second one): its inputs are the same tensors
    at every call, and what it allocates comes from the graph's private pool. Warm-up
    calls on a side stream, then the capture, then one replay checked against an eager
    call (``GRAPH_CHECK_RTOL``) and timed (the estimate that sets the number of replays,
    with more replays for a short step as :func:`step_timing` does), then replays timed as
    it times calls: CUDA events, L2 flushed before each, the number of replays from
    ``rep_ms`` (default ``GRAPH_REP_MS``), no warm-up (the replays follow the eager timing).
    Any exception (an op that syncs with the host, out of memory) ends in a reason, never
    a raise: the stream is restored, the graph freed and CUDA synchronised, so the next
    measurement starts clean. Run it after the eager timing and the memory measurement.
    CPU: ``GraphTiming(None, "no CUDA")``.
    """
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return GraphTiming(None, "no CUDA")
    rep_ms = GRAPH_REP_MS if rep_ms is None else rep_ms
    prev_stream = torch.cuda.current_stream()
    graph = outs = samples = kept = flush = None
    reason = ""
    try:
        graph, outs = _capture(fn)
        flush = _flush_buffer()
        reason, first_ms = _replay_mismatch(graph, outs, fn, flush)
        if not reason:
            samples = _replay_samples(graph, iters, rep_ms, flush, first_ms)
            if keep_outputs:
                kept = [t.detach().clone() for t in _tensors(outs)]
    except Exception as exc:  # noqa: BLE001 -- any failure to capture is a reason, not an error
        reason = f"{'capture' if graph is None else 'replay'} failed: {_root_cause(exc)}"
    finally:
        torch.cuda.set_stream(prev_stream)  # a failed capture_end leaves the capture stream
    # Outside the except block: its traceback would pin the graph and its pool.
    del outs, flush
    if graph is not None:
        graph.reset()
        del graph
    if samples is None:
        reason += _recover()
        return GraphTiming(None, reason)
    free_memory()
    return GraphTiming(summarize(samples), "", kept)


def _capture(fn):
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(CAPTURE_WARMUP_CALLS):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = fn()
    return graph, outs


def _tensors(outs) -> list:
    import torch

    if isinstance(outs, torch.Tensor):
        return [outs]
    if isinstance(outs, (tuple, list)):
        return [t for o in outs for t in _tensors(o)]
    return []


def _replay_mismatch(graph, outs, fn, flush) -> tuple[str, float]:
    """("" when one replay gives the eager call's outputs, else what differs; the GPU ms
    of that replay with the L2 flush before it, as :func:`_estimate_ms` counts a call)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    flush.zero_()
    graph.replay()
    end.record()
    eager = fn()
    torch.cuda.synchronize()
    first_ms = start.elapsed_time(end)
    replayed, expected = _tensors(outs), _tensors(eager)
    if len(replayed) != len(expected):
        return f"replay gave {len(replayed)} tensors, the eager call {len(expected)}", first_ms
    for i, (a, b) in enumerate(zip(replayed, expected)):
        diff = (a.detach().float() - b.detach().float()).abs().max().item() if a.numel() else 0.0
        scale = b.detach().float().abs().max().item() if b.numel() else 0.0
        if not diff <= GRAPH_CHECK_RTOL * scale:  # NaN fails too
            off = f"output {i} off by {diff:.3g} (max {scale:.3g})"
            return f"replay is not the eager call: {off}", first_ms
    return "", first_ms


def _replay_samples(graph, iters, rep_ms, flush, first_ms) -> list[float]:
    """Timed replays: the checked replay's ms is the estimate from ONE_CALL_ESTIMATE_MS
    on (a Long grad-grad replay is 70-300 ms), else the mean of three more (with their
    flushes, as :func:`_estimate_ms`); then the replays, no warm-up."""
    import torch

    estimate = first_ms
    if first_ms < ONE_CALL_ESTIMATE_MS:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(3):
            flush.zero_()
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        estimate = start.elapsed_time(end) / 3
    n = n_iters(iters, rep_ms, estimate)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        flush.zero_()  # cold L2 for every replay, as for the eager calls
        starts[i].record()
        graph.replay()
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def _root_cause(exc: BaseException, limit: int = 300) -> str:
    """The first exception of a chain (a failed op inside the capture, before capture_end
    failed on the invalidated capture), on one line."""
    seen = [exc]
    while seen[-1].__context__ is not None and len(seen) < 20:
        seen.append(seen[-1].__context__)
    root = seen[-1]
    # the first line: CUDA errors go on with "Search for ..." and "might be asynchronously"
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = lines[0] if lines else type(root).__name__
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(root).__name__}: {text}"


def _recover() -> str:
    """After a failed capture: wait for the GPU, free what the capture held, and check that
    CUDA still works; "" when it does, else a note for the reason."""
    import torch

    try:
        torch.cuda.synchronize()
        free_memory()
        if torch.ones(4, device="cuda").sum().item() != 4.0:
            return "; CUDA gives wrong answers after it"
    except Exception as exc:  # noqa: BLE001
        return f"; CUDA failed after it: {_root_cause(exc, 150)}"
    return ""


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


# Seconds this process spent in free_memory (gc.collect, and empty_cache, which waits for
# the GPU and makes the next allocations cudaMalloc again): harness.measure reports a
# class's share, so that a run says whether freeing between measurements costs much.
FREE_MEMORY_S = [0.0]


def free_memory():
    """Drop what Python no longer references and hand cached CUDA blocks back, between
    measurements (and after an out-of-memory) so one does not inherit another's."""
    import torch

    t0 = time.perf_counter()
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    FREE_MEMORY_S[0] += time.perf_counter() - t0
