"""The card's own ceilings, measured with every GPU run of the suite (issue 17 item 1).

``bench_suite/bench_peak.py`` (class ``Peak``) calls :func:`measure` in its one
``setup_cache``: a dense bf16 and an fp16 N x N x N matmul (``torch.matmul``, cuBLAS) and a
device-to-device copy (``Tensor.copy_``: cudaMemcpyAsync), each timed as the suite times a
kernel: CUDA events around every call, warm-up first, the median of several calls. What each
op does (its FLOPs and bytes) is :data:`harness.flops.PEAK_OPS`; the results keep only the
ms (lower is better, as every other ms row), and the reports derive TFLOP/s and GB/s from it.

Under the runner (runner/asv_run.py) the measuring process (harness/worker.py) calls
:func:`measure` with the first preset of a GPU run and leaves its result in the run's
records (harness/records.py, ``records.PEAK``); the ``setup_cache``'s call then returns
them without importing torch, as the preset classes' do. A plain ``asv run`` measures in
the ``setup_cache``.

No L2 flush: every operand is far larger than the L2 (128 MiB a matmul operand, 2 GiB the
copy), so no call finds its data there. About 1.5 s on an H100 in all, most of it the
warm-up that brings the clocks up. Standard library at import time; torch inside.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from harness import flops, records
from harness.grid import PROGRESS_ENV
from harness.timing import summarize

WARMUP_S = 0.3  # per op: cuBLAS heuristics, and the clocks up from idle
REPS = 30  # timed calls per op: ~45 ms of bf16 matmul on an H100, ~30 ms of copy
NO_CUDA = "no CUDA"
TAG = "peak"


def measure(
    reps: int = REPS, warmup_s: float = WARMUP_S, ops: dict | None = None, device=None
) -> dict:
    """{op name: {"ms": median, "ms_summary": summary} or {"skip": reason}} for every op of
    :data:`harness.flops.PEAK_OPS` (or of ``ops``, name -> PeakOp), on the current CUDA
    device (``device``: the tests' stand-in); ``{"unavailable": "no CUDA"}`` without CUDA
    (asv then skips every row). Called as the ``setup_cache`` calls it (no arguments), it
    returns what this run's measuring process recorded, if anything (raising its failure
    again: records.RecordedFailure)."""
    if reps == REPS and warmup_s == WARMUP_S and ops is None and device is None:
        done = records.recorded(*records.PEAK)
        if done is not None:
            return done
    import torch

    started = time.perf_counter()
    if not torch.cuda.is_available():
        _progress(f"skipped: {NO_CUDA}")
        return {"unavailable": NO_CUDA}
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device())
    out: dict = {"device": torch.cuda.get_device_name(device)}
    for name, op in (ops or flops.PEAK_OPS).items():
        try:
            samples = _time(_make(op, device), reps, warmup_s)
        except torch.cuda.OutOfMemoryError as exc:
            out[name] = {"skip": f"out of memory: {str(exc)[:200]}"}
            _progress(f"{name}: skipped (out of memory)")
            continue
        finally:
            torch.cuda.empty_cache()
        ms = statistics.median(samples)
        out[name] = {"ms": ms, "ms_summary": summarize(samples)}
        msg = f"{name}: {ms:.4g} ms, {_rate(op, ms)} on {out['device']}"
        _progress(msg, op=name, ms=ms, ms_summary=out[name]["ms_summary"])
    took = time.perf_counter() - started  # the setup_cache's duration where it only reads
    _progress(f"done in {took:.1f} s", event="peak_done", total_s=round(took, 3))
    return out


def _rate(op: flops.PeakOp, ms: float) -> str:
    if op.flops:
        return f"{flops.tflops_of(op.flops, ms):.0f} TFLOP/s"
    return f"{flops.gbps_of(op.bytes, ms):.0f} GB/s"


def _make(op: flops.PeakOp, device):
    """The call to time, its operands allocated (and filled: no lazy pages) here."""
    import torch

    if op.kind == "matmul":
        dtype = getattr(torch, op.dtype)
        gen = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(op.n, op.n, device=device, dtype=dtype, generator=gen)
        b = torch.randn(op.n, op.n, device=device, dtype=dtype, generator=gen)
        c = torch.empty(op.n, op.n, device=device, dtype=dtype)
        return lambda: torch.matmul(a, b, out=c)
    if op.kind == "copy":
        # int32 words: the same bytes, and a contiguous same-dtype copy_ is one memcpy
        words = op.n // 4
        src = torch.ones(words, device=device, dtype=torch.int32)
        dst = torch.zeros(words, device=device, dtype=torch.int32)
        return lambda: dst.copy_(src)
    raise ValueError(f"unknown peak op kind {op.kind!r}")


def _time(fn, reps: int, warmup_s: float) -> list[float]:
    """CUDA-event ms of ``reps`` calls after ``warmup_s`` seconds of calls (at least 3)."""
    import torch

    start = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - start < warmup_s:
        fn()
        n += 1
        if n % 8 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(reps)
    ]
    for begin, end in events:
        begin.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [begin.elapsed_time(end) for begin, end in events]


def _progress(msg: str, **data) -> None:
    """One line on stderr and, under the runner, one event in its progress file (it prints
    ``[peak] msg`` live; harness.grid.PROGRESS_ENV)."""
    print(f"[{TAG}] {msg}", file=sys.stderr, flush=True)
    path = os.environ.get(PROGRESS_ENV)
    if path:
        event = {"event": "peak", "tag": TAG, "msg": msg, "time": time.time(), **data}
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")
