"""Measuring a preset: the body of every asv class's ``setup_cache``, and its progress.

Why one process measures a whole preset
---------------------------------------
asv runs every benchmark *and every parameter combination* in a fresh process.
Measuring in those processes would pay torch/CUDA start-up and Triton compilation
hundreds of times (docs/design.md trap 10). So each asv class (one preset x one path)
measures all of its combinations once (:func:`measure_preset`). Under the runner, one
process measures every class of a commit (harness/worker.py) and the class's
``setup_cache`` only reads what it recorded (harness/records.py); a plain ``asv run``
measures in the ``setup_cache`` process itself. Either way: inputs, fp64 reference and
the same-dtype math path's errors against it (from
harness/refcache.py's cache when an earlier run computed them), parity gate, first call
(compile / autotune), memory, timing. It returns a dict keyed by the asv
parameter tuple. ``setup`` then raises ``NotImplementedError`` for skipped
combinations (asv records "skipped") and the ``track_*`` methods are one-line
lookups run in cheap forks (``--launch-method forkserver``; this package imports
only the standard library at import time, torch is imported inside functions).

Rules every measurement follows
-------------------------------
- Parity gate first (harness.parity): a combination above ``PARITY_LIMIT`` is
  recorded as FAILED: ``track_ms``/``track_tflops``/``track_peak_mib`` raise,
  ``track_parity`` returns the ratio (the evidence). It is never timed.
- Then peak memory and time (harness.timing), and TFLOP/s from harness.flops.
- Then, on a GPU, the kept implementation's step captured in a CUDA graph and its
  replays timed (``graph_ms``, harness.timing.graph_timing): the kernels' time where
  the eager ms of a short step is the host's (docs/design.md trap 13). A step that
  cannot be captured (or replays wrong) keeps its eager numbers and says why in
  ``graph_reason``.
- Every timing keeps a summary of its samples (``*_summary``: median, q25, q75, n,
  min, max; harness.timing.summarize) beside its median.
- Several candidates (SDPA's backends): the fastest correct one is kept, by eager ms, or
  by graph ms where a candidate's eager time is the host's (:func:`_fastest`).
- Combinations that cannot run (mode not landed, out of memory, no CUDA) are
  skipped, never failed; any other exception is a failure.
- Progress: see :func:`measure_preset`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import sys
import time

from harness import impls, records, timing
from harness.flops import config_flops
from harness.grid import PROGRESS_ENV, check_path, get_preset
from harness.impls import make_inputs, run_path
from harness.parity import (
    PARITY_LIMIT,
    REFERENCE_CHUNK_SCORES,
    Denominator,
    kept_dtype,
    math_denominators,
    parity,
    parity_reference,
)
from harness.timing import (
    HOST_BOUND_SHARE,
    eager_samples,
    free_memory,
    graph_timing,
    summarize,
)


@dataclasses.dataclass
class Record:
    """What one (config, mode) measured. status: "ok", "skip" or "fail"."""

    status: str
    reason: str = ""
    ms: float | None = None
    tflops: float | None = None
    peak_mib: float | None = None
    parity: float | None = None
    host_ms: float | None = None  # host time per call (step_timing); None on CPU
    impl: str = ""  # which candidate (sdpa backend) was kept
    first_call_s: float = 0.0  # first call: compilation, autotuning, caches
    measure_s: float = 0.0  # parity check, memory and timing (graph replays included)
    # of measure_s: the parity check, and the CUDA-graph capture, check and replays
    parity_s: float = 0.0
    graph_s: float = 0.0
    # median ms per CUDA-graph replay of the step (graph_timing); None on CPU, for a step
    # that cannot be captured, and for skipped or failed rows
    graph_ms: float | None = None
    graph_reason: str = ""  # why graph_ms is None, for an "ok" row ("no CUDA" on CPU)
    # samples of each timing: {median, q25, q75, n, min, max} (timing.summarize), or None
    ms_summary: dict | None = None
    host_ms_summary: dict | None = None
    graph_ms_summary: dict | None = None

    def line(self) -> str:
        if self.status == "skip":
            return f"skipped: {self.reason}"
        if self.status == "fail":
            par = "" if self.parity is None else f" (parity {self.parity:.3g})"
            return f"FAILED{par}: {self.reason}"
        mem = "" if self.peak_mib is None else f", {self.peak_mib:.1f} MiB"
        impl = f" [{self.impl}]" if self.impl else ""
        notes = f" (also tried: {self.reason})" if self.reason else ""
        tflops = f"{self.tflops:.4g} TFLOP/s"
        side = [] if self.host_ms is None else [f"host {self.host_ms:.3g} ms"]
        if self.graph_ms is not None:
            side.append(f"graph {self.graph_ms:.3g} ms")
        side = f" ({', '.join(side)})" if side else ""
        graph = ""
        if self.graph_ms is None and self.graph_reason and self.graph_reason != NO_CUDA:
            graph = f" (no graph: {self.graph_reason})"
        return (
            f"{self.ms:.4g} ms{side}, {tflops}{mem}, parity {self.parity:.3g}{impl}{notes}{graph}"
        )


NO_CUDA = "no CUDA"  # graph_reason on a CPU (timing.graph_timing)
SEED = 0  # make_inputs' seed: part of the reference cache's key


def measure_mode(
    path, cfg, mode, inp, ref64, math_same, device, *, iters=None, rep_ms=None, graph=True
):
    """Parity gate, then memory and time, for every candidate of ``mode``; keep the fastest.
    Then (``graph``) the kept one's step replayed from a CUDA graph (:func:`_graph_time`)."""
    best, attn = _measure_candidates(
        path, cfg, mode, inp, ref64, math_same, device, iters=iters, rep_ms=rep_ms, graph=graph
    )
    if graph and best.status == "ok" and best.graph_ms is None and not best.graph_reason:
        _graph_time(best, path, attn, inp, device, iters, rep_ms)
    return best


def _graph_time(rec, path, attn, inp, device, iters, rep_ms):
    """Fill rec.graph_ms (and its summary) or rec.graph_reason; after the eager timing and
    the memory, so that a failed capture cannot disturb them (graph_timing cleans up)."""
    t0 = time.perf_counter()
    gt = graph_timing(lambda: run_path(path, attn, inp), device, iters=iters, rep_ms=rep_ms)
    if gt.summary is not None:
        rec.graph_ms, rec.graph_ms_summary = gt.summary["median"], gt.summary
    else:
        rec.graph_reason = gt.reason
    free_memory()
    rec.graph_s += time.perf_counter() - t0
    rec.measure_s += time.perf_counter() - t0


def host_bound(rec: Record) -> bool:
    """The eager time of this step is the host's (its host ms reaches HOST_BOUND_SHARE of
    its ms): it cannot rank kernels."""
    return rec.host_ms is not None and rec.host_ms >= HOST_BOUND_SHARE * rec.ms


def _fastest(path, candidates, recs, inp, device, iters, rep_ms, graph):
    """The kept candidate among the correct ones: the lowest eager ms, or, when an eager time
    is the host's and graph replays are on, the lowest graph ms (the kernels' time).

    Why: at the seed shape SDPA's backward with cuDNN replays in 0.128 ms and with flash in
    0.237 ms, but both spend 0.2-0.46 ms of host time a call, so eager timing picked cuDNN
    in one H200 run and flash in the next: the sdpa row's graph ms doubled and its memory
    moved by a third between runs of the same commit.
    """
    ok = [(lbl, attn, r) for (lbl, attn), r in zip(candidates, recs) if r.status == "ok"]
    if graph and len(ok) > 1 and any(host_bound(r) for _, _, r in ok):
        for _, attn, r in ok:
            _graph_time(r, path, attn, inp, device, iters, rep_ms)
        if all(r.graph_ms is not None for _, _, r in ok):
            return min((r for _, _, r in ok), key=lambda r: r.graph_ms)
    return min((r for _, _, r in ok), key=lambda r: r.ms)


def _measure_candidates(
    path, cfg, mode, inp, ref64, math_same, device, *, iters, rep_ms, graph=True
):
    """(the kept Record, its attn): every candidate gated and timed, the fastest kept."""
    t0 = time.perf_counter()
    try:
        candidates = impls.implementations(mode, cfg, device)  # looked up late: tests replace it
    except NotImplementedError as exc:
        return Record("skip", str(exc) or type(exc).__name__), None
    setup_s = time.perf_counter() - t0  # imports (torch._dynamo for compiled), wrappers
    recs = []
    for label, attn in candidates:
        rec = _measure_candidate(
            path, cfg, label, attn, inp, ref64, math_same, device, iters, rep_ms
        )
        recs.append((label, rec))
        free_memory()
    ok = [r for _, r in recs if r.status == "ok"]
    if len(recs) == 1:
        best = recs[0][1]
    elif ok:  # several candidates (SDPA backends): the fastest correct one, others noted
        best = _fastest(path, candidates, [r for _, r in recs], inp, device, iters, rep_ms, graph)
        best.reason = "; ".join(f"{lbl}: {r.line()}" for lbl, r in recs if r is not best)
    else:  # none usable: a failure if one gave a wrong answer, else a skip
        wrong = [r for _, r in recs if r.status == "fail"]
        best = Record(
            "fail" if wrong else "skip", "; ".join(f"{lbl}: {r.reason}" for lbl, r in recs)
        )
        best.parity = min((r.parity for r in wrong if r.parity is not None), default=None)
    # time accounting covers every candidate tried
    best.first_call_s = setup_s + sum(r.first_call_s for _, r in recs)
    best.measure_s = sum(r.measure_s for _, r in recs)
    best.parity_s = sum(r.parity_s for _, r in recs)
    best.graph_s = sum(r.graph_s for _, r in recs)
    attn = next((a for (_, a), (_, r) in zip(candidates, recs) if r is best), None)
    return best, attn


def _measure_candidate(path, cfg, label, attn, inp, ref64, math_same, device, iters, rep_ms):
    import torch

    def call():
        return run_path(path, attn, inp)

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    oom = False
    try:
        t0 = time.perf_counter()
        outs = call()
        sync()
        first_call_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = parity(path, outs, ref64, math_same, cfg.torch_dtype)
        parity_s = time.perf_counter() - t0
        del outs
        if not par.passed:
            return Record(
                "fail",
                f"parity {par.ratio:.3g} > {PARITY_LIMIT} on {par.worst} ({par.detail})",
                parity=par.ratio,
                impl=label,
                first_call_s=first_call_s,
            )
        # peak memory on the estimate's calls: no call of its own (timing.eager_samples)
        eager = eager_samples(call, device, iters=iters, rep_ms=rep_ms, warm=True, peak=True)
        ms_samples, host_samples, mib = eager
        measure_s = time.perf_counter() - t0
    except NotImplementedError as exc:
        return Record("skip", f"{label}: {exc}" if str(exc) else f"{label}: not implemented")
    except torch.cuda.OutOfMemoryError:
        oom = True  # free outside the except block: the traceback pins the tensors
    except Exception as exc:  # noqa: BLE001 -- any other error is this kernel's failure
        if isinstance(exc, RuntimeError) and _OOM_MESSAGES.search(str(exc)):
            oom = True  # cuBLAS / cuDNN workspaces fail as RuntimeError, not OutOfMemoryError
        elif _is_sdpa_refusal(label, exc):
            return Record("skip", f"{label} refused this problem: {_short(exc)}")
        else:
            return Record("fail", f"{type(exc).__name__}: {_short(exc)}", impl=label)
    if oom:
        free_memory()
        where = "host"
        if torch.device(device).type == "cuda":
            where = f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB card"
        return Record("skip", f"out of memory ({where})", impl=label)
    ms_summary = summarize(ms_samples)
    host_summary = None if host_samples is None else summarize(host_samples)
    ms = ms_summary["median"]
    tflops = config_flops(path, cfg) / (ms * 1e-3) / 1e12
    return Record(
        "ok",
        ms=ms,
        tflops=tflops,
        peak_mib=mib,
        parity=par.ratio,
        host_ms=None if host_summary is None else host_summary["median"],
        ms_summary=ms_summary,
        host_ms_summary=host_summary,
        impl=label if label.startswith("sdpa(") else "",
        first_call_s=first_call_s,
        measure_s=measure_s,
        parity_s=parity_s,
    )


_OOM_MESSAGES = re.compile(r"out of memory|ALLOC_FAILED", re.IGNORECASE)


def _is_sdpa_refusal(label: str, exc: Exception) -> bool:
    """SDPA backends raise RuntimeError('No available kernel...') for problems they do not take."""
    return label.startswith("sdpa(") and isinstance(exc, RuntimeError)


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def measure_preset(preset: str, path: str, *, iters=None, rep_ms=None, modes=None) -> dict:
    """Measure every (config, mode) of a preset for one path: the asv ``setup_cache`` body.

    Returns {asv param tuple: Record}, plus "unavailable": reason when the preset's
    device is missing. Progress goes to stderr and, as JSON lines, to the file named
    by grid.PROGRESS_ENV (runner/asv_run.py prints it while asv runs): asv itself
    shows a setup_cache's output only after it ends, and only with --show-stderr.
    """
    tag = f"{path}/{preset}"
    if modes is None and iters is None and rep_ms is None:
        # measured already by this run's measuring process (harness/worker.py): read, no
        # torch; a failure there is raised again here (asv records the class as failed)
        done = records.recorded(preset, path)
        if done is not None:
            return done
    try:
        return _measure_preset(tag, get_preset(preset), path, iters, rep_ms, modes)
    except BaseException as exc:
        _progress(
            tag,
            f"setup_cache FAILED: {type(exc).__name__}: {_short(exc, 2000)}",
            event="class_failed",
        )
        raise


def _measure_preset(tag, p, path, iters, rep_ms, modes):
    import warnings

    import torch

    check_path(path)
    started = time.perf_counter()
    if p.device == "cuda" and not torch.cuda.is_available():
        _progress(tag, "skipped: no CUDA device", event="unavailable")
        return {"unavailable": "no CUDA device"}
    device = torch.device(p.device)
    if device.type == "cuda":
        torch.cuda.init()
    modes = p.modes_for(path) if modes is None else modes
    kernels_dir = _kernels_dir()
    startup_s = _startup_once()
    _progress(
        tag,
        f"{len(p.configs())} configs x {len(modes)} modes, kernels from {kernels_dir}",
        event="class_start",
        kernels_dir=kernels_dir,
        startup_s=startup_s,
        caches=cache_state(),
    )
    results: dict = {}
    totals = {"reference_s": 0.0, "first_call_s": 0.0, "measure_s": 0.0}
    phases = {"parity_s": 0.0, "graph_s": 0.0}  # parts of measure_s
    freed_before = timing.FREE_MEMORY_S[0]
    ref_counts: dict[str, int] = {}  # reference cache outcomes: hit, miss, skip, corrupt, off
    warnings.filterwarnings("ignore", message=".*[Ff]lash|.*[Mm]emory [Ee]fficient|.*cuDNN")
    # What is alive now (torch, triton, the kernels, earlier classes' survivors: ~10^6
    # objects) is never garbage we wait for; frozen, free_memory's gc.collect (after every
    # candidate, graph and config) scans only what this class made: 0.19 s -> ~0.01 s a
    # call on the dev VM, ~650 calls in a GPU grid.
    gc.freeze()
    configs = list(p.configs())
    pending = None  # the next config's reference, read in the background (refcache.prefetch)
    for i, cfg in enumerate(configs):
        t0 = time.perf_counter()
        try:
            inp = make_inputs(cfg, device, seed=SEED)
            ref64, math_same, which = _references(
                tag, path, cfg, inp, device, ref_counts, prefetched=pending
            )
        except torch.cuda.OutOfMemoryError:
            # Seen on the H100 at forward T=32768 after a fragmented T=16384 config: skip
            # the config (every mode), free the tensors outside the except block, go on.
            inp = ref64 = math_same = None
            which = "oom"
        # read while this config is measured
        pending = (
            _prefetch_reference(path, configs[i + 1], device) if i + 1 < len(configs) else None
        )
        totals["reference_s"] += time.perf_counter() - t0
        if which == "oom":
            free_memory()
            for mode in modes:
                rec = Record("skip", "out of memory computing the parity references")
                results[dataclasses.astuple(cfg) + (mode,)] = rec
                _progress(tag, f"{cfg.label()} {mode}: {rec.line()}", event="record",
                          config=dataclasses.asdict(cfg), mode=mode,
                          record=dataclasses.asdict(rec))  # fmt: skip
            continue
        if which != "math":
            _progress(tag, f"{cfg.label()}: parity denominator from {which}", event="note")
        for mode in modes:
            rec = measure_mode(
                path, cfg, mode, inp, ref64, math_same, device, iters=iters, rep_ms=rep_ms
            )
            totals["first_call_s"] += rec.first_call_s
            totals["measure_s"] += rec.measure_s
            for k in phases:
                phases[k] += getattr(rec, k)
            results[dataclasses.astuple(cfg) + (mode,)] = rec
            _progress(
                tag,
                f"{cfg.label()} {mode}: {rec.line()}",
                event="record",
                config=dataclasses.asdict(cfg),
                mode=mode,
                record=dataclasses.asdict(rec),
            )
        del inp, ref64, math_same
        free_memory()
    total_s = time.perf_counter() - started
    other_s = total_s - sum(totals.values())
    free_s = timing.FREE_MEMORY_S[0] - freed_before  # in measuring and other alike
    _progress(
        tag,
        f"done in {total_s:.1f} s: references {totals['reference_s']:.1f} s, "
        f"first calls {totals['first_call_s']:.1f} s, measuring "
        f"{totals['measure_s']:.1f} s (parity {phases['parity_s']:.1f} s, CUDA graphs "
        f"{phases['graph_s']:.1f} s), other {other_s:.1f} s, freeing memory "
        f"{free_s:.1f} s in all; reference cache "
        + (", ".join(f"{n} {k}" for k, n in sorted(ref_counts.items())) or "unused"),
        event="class_done",
        total_s=total_s,
        startup_s=startup_s,
        ref_cache=ref_counts,
        **totals,
        **phases,
        free_s=free_s,
    )
    return results


def _reference_expect(path, cfg) -> list:
    """(shape, dtype) of each kept fp64-reference output of ``path`` at ``cfg``: q's shape,
    and k's and v's for the backward paths (harness.impls.make_inputs: (B, H, T, D))."""
    shapes = [(cfg.B, cfg.H, cfg.tq, cfg.D)]
    if path != "forward":
        shapes += [(cfg.B, cfg.H, cfg.tk, cfg.D)] * 2
    return [(s, kept_dtype(cfg.torch_dtype)) for s in shapes]


def _prefetch_reference(path, cfg, device):
    """Start reading ``cfg``'s fp64-reference entry in the background (refcache.prefetch);
    None when the cache is off."""
    from harness import refcache

    return refcache.prefetch(
        "fp64", path, cfg, device, seed=SEED, chunk_scores=REFERENCE_CHUNK_SCORES,
        expect=_reference_expect(path, cfg),
    )  # fmt: skip


def _references(tag, path, cfg, inp, device, counts, *, prefetched=None):
    """(fp64 reference kept as parity.kept_dtype, the same-dtype math path's errors against
    it as parity.Denominator per output, which math) for one config: from the reference
    cache (harness/refcache.py) or computed and stored; ``counts`` tallies what the cache
    did, and a skipped or corrupt entry is a progress note."""
    import torch

    from harness import refcache

    expect = _reference_expect(path, cfg)  # the prefetch's expectation too: one source
    common = dict(seed=SEED, chunk_scores=REFERENCE_CHUNK_SCORES)
    ref64, _, got64 = refcache.cached_outputs(
        "fp64",
        path,
        cfg,
        device,
        lambda: (parity_reference(path, cfg, inp), "fp64"),
        expect=expect,
        prefetched=prefetched,
        **common,
    )

    def denominators():  # against the kept reference, cold or warm: the same values
        denoms, which = math_denominators(path, cfg, inp, ref64)
        return (torch.tensor(denoms, dtype=torch.float64),), which

    (table,), which, got_den = refcache.cached_outputs(
        "denominators",
        path,
        cfg,
        device,
        denominators,
        expect=[((len(expect), len(Denominator._fields)), torch.float64)],
        **common,
    )
    math_same = tuple(Denominator(*row) for row in table.tolist())
    for what, got in (("fp64 reference", got64), ("parity denominators", got_den)):
        counts[got.status] = counts.get(got.status, 0) + 1
        if got.note:
            _progress(tag, f"{cfg.label()}: {what} {got.note}", event="note")
    return ref64, math_same, which


def cache_state() -> dict:
    """How full the caches a run can reuse are, now: reference cache entries of this
    reference code and Triton cache entries (kernels and autotuning results; Triton's
    default folder unless TRITON_CACHE_DIR). The first class of a run reports the state
    before the run: runner/costs.py calls a run warm or cold from it."""
    from harness import refcache

    root = refcache.cache_root()
    triton_dir = os.environ.get("TRITON_CACHE_DIR") or os.path.join(
        os.environ.get("TRITON_HOME") or os.path.expanduser("~"), ".triton", "cache"
    )
    try:
        triton_entries = sum(1 for _ in os.scandir(triton_dir))
    except OSError:
        triton_entries = 0
    return {
        "refs": refcache.count_entries(root) if root is not None else None,
        "ref_dir": None if root is None else str(root),
        "triton": triton_entries,
        "triton_dir": triton_dir,
    }


def _kernels_dir() -> str:
    import kernels

    return os.path.dirname(os.path.abspath(kernels.__file__))


_STARTED = []  # whether this process's start-up was accounted (by its first class)


def _startup_once() -> float | None:
    """The process's start-up (:func:`_seconds_since_process_start`) for its first class,
    0 for later ones: a measuring process that measures several classes (harness/worker.py)
    started once, and the cost record sums the classes' start-ups."""
    if _STARTED:
        return 0.0
    _STARTED.append(True)
    return _seconds_since_process_start()


def _seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux /proc), to account start-up and imports."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _progress(tag: str, msg: str, **data) -> None:
    line = f"[{tag}] {msg}"
    print(line, file=sys.stderr, flush=True)
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"tag": tag, "msg": msg, "time": time.time(), **data}) + "\n")
