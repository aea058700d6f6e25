"""The harness package: FLOP model, presets, inputs, references, parity gate, timers.

CPU only. The asv classes and the runner built on it are tests/test_bench_suite.py, the
quick CLI tests/test_harness_quick.py.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import flops, grid, impls, measure, parity, timing
from kernels import reference

REPO = Path(__file__).resolve().parents[1]


# --- imports ----------------------------------------------------------------------------


def test_the_suite_and_the_harness_import_no_torch():
    """asv's forkserver imports the suite before it forks: nothing may touch the GPU then."""
    modules = [f"harness.{m}" for m in ("grid", "flops", "impls", "parity", "timing")]
    modules += ["harness.measure", "harness.quick", "bench_suite.base"]
    modules += [f"bench_suite.bench_{path}" for path in grid.PATHS]
    code = (
        f"import sys, {', '.join(modules)}; print(sorted({{'torch', 'triton'}} & set(sys.modules)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- FLOP model -----------------------------------------------------------------------


def brute_force_visible(tq, tk, mask):
    causal, window = grid.parse_mask(mask)
    m = reference.visible_mask(tq, tk, causal=causal, window=window)
    return tq * tk if m is None else int(m.sum())


@pytest.mark.parametrize(
    "tq, tk, mask, visible",
    [
        (4, 4, "none", 16),
        (4, 4, "causal", 10),  # 1 + 2 + 3 + 4
        (2, 5, "causal", 9),  # rows at positions 3, 4 see 4 and 5 keys
        (5, 5, "window3", 12),  # 1 + 2 + 3 + 3 + 3
        (3, 7, "window4", 12),  # rows at 4, 5, 6 see 4 keys each
        (1024, 9216, "window8192", 1024 * 8192),  # TTT: every query sees a full window
    ],
)
def test_visible_pairs_by_hand(tq, tk, mask, visible):
    assert flops.visible_pairs(tq, tk, mask) == visible
    if tq * tk <= 10_000:
        assert brute_force_visible(tq, tk, mask) == visible


def test_visible_pairs_match_the_mask_everywhere():
    for tq in (1, 2, 7, 16):
        for tk in (tq, tq + 1, tq + 9):
            for mask in ("none", "causal", "window1", "window3", "window8", "window40"):
                assert flops.visible_pairs(tq, tk, mask) == brute_force_visible(tq, tk, mask)


def test_flops_hand_counts():
    # square, no mask: 2 matmuls x 2*T*T*D per head
    assert flops.flops("forward", 2, 4, 2048, 2048, 128, "none") == 4 * 2 * 4 * 2048**2 * 128
    # square causal: (T+1)/(2T) of that
    f = flops.flops("forward", 1, 8, 8192, 8192, 128, "causal")
    assert f == 4 * 8 * 8192**2 * 128 * (8192 + 1) / (2 * 8192)
    # TTT: 1024 queries each see 8192 keys
    assert flops.flops("forward", 1, 12, 1024, 9216, 64, "window8192") == 4 * 12 * 1024 * 8192 * 64
    # Tq < Tk causal (rows see Tk-Tq+1 .. Tk keys)
    assert flops.flops("forward", 1, 1, 2, 5, 8, "causal") == 4 * (4 + 5) * 8
    for args in [(2, 4, 2048, 2048, 128, "none"), (1, 12, 1024, 9216, 80, "window8192")]:
        fwd = flops.flops("forward", *args)
        assert flops.flops("backward", *args) == 3.5 * fwd  # forward + 2.5x forward
        assert flops.flops("gradgrad", *args) == 14 * fwd  # (2 + 5 + 21) matmuls / 2
    with pytest.raises(ValueError, match="path"):
        flops.flops("sideways", 1, 1, 4, 4, 8, "none")
    with pytest.raises(ValueError, match="mask"):
        flops.flops("forward", 1, 1, 4, 4, 8, "window0")


# --- presets and timers ---------------------------------------------------------------


def test_short_preset_is_the_issue6_target_grid_at_2048():
    """Issue 6: fused fwd+bwd >= 1.0x SDPA flash for T >= 2048, D 64/128, causal and not, bf16."""
    short = grid.PRESETS["short"]
    assert short.class_name == "Short" and short.device == "cuda"
    assert "short" in grid.GRIDS["gpu"]
    targets = {("2048", d, "bfloat16", m) for d in (64, 128) for m in ("none", "causal")}
    assert {(c.T, c.D, c.dtype, c.mask) for c in short.configs()} == targets
    assert len(short.configs()) == len(targets)  # one B and H: 4 configs, cheap
    assert {"fused", "flash", "sdpa"} <= set(short.modes_for("backward"))
    assert set(short.modes_for("forward")) == set(short.modes_for("backward"))
    # no SDPA double backward: grad-grad keeps fused alone, still a valid (non-empty) axis
    assert short.modes_for("gradgrad") == ("fused",)
    assert grid.asv_params("short", "gradgrad")[-1] == ["fused"]
    # Seed (fp16, one D, no mask) does not cover these shapes; Grid is T=4096 only
    seed = {(c.T, c.D, c.dtype, c.mask) for c in grid.PRESETS["seed"].configs()}
    assert not seed & targets
    assert grid.PRESETS["grid"].T == ("4096",)


def test_flash_baseline_is_sdpa_pinned_to_flash_and_needs_cuda():
    cfg = grid.preset_configs("seed")[0]
    with pytest.raises(NotImplementedError, match="CUDA"):
        impls.implementations("flash", cfg, "cpu")
    assert grid.PRESETS["cpu"].modes_for("gradgrad") == ("math",)


def test_step_timing_has_no_host_time_on_cpu():
    calls = []
    ms, host = timing.step_timing(lambda: calls.append(1), "cpu", iters=7, warmup_ms=0.0)
    assert host is None and ms >= 0.0
    assert len(calls) == 1 + 1 + 7  # estimate, one warm-up, the timed calls
    assert timing.median_ms(lambda: None, "cpu", iters=3) >= 0.0


# --- references and the parity gate ---------------------------------------------------


@pytest.mark.parametrize("mask", ["none", "causal", "window5"])
@pytest.mark.parametrize("path", grid.PATHS)
def test_chunked_reference_is_the_whole_problem(path, mask):
    cfg = grid.Config(2, 2, "13/21" if mask != "none" else "17", 16, "float32", mask)
    inp = impls.make_inputs(cfg, "cpu")
    whole = [t.double() for t in parity.reference_outputs(path, cfg, inp, torch.float64)]
    rows_per_chunk = 3
    chunked = parity.reference_outputs(
        path, cfg, inp, torch.float64, chunk_scores=rows_per_chunk * cfg.B * cfg.H * cfg.tk
    )
    direct = impls.run_path(path, impls.math_attention(cfg), _as_fp64(inp))
    for a, b, c in zip(whole, chunked, direct):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a, c.detach(), rtol=1e-10, atol=1e-12)


def _as_fp64(inp):
    leaf = lambda t: t.detach().double().requires_grad_()
    return impls.Inputs(
        leaf(inp.q), leaf(inp.k), leaf(inp.v), inp.do.double(), tuple(t.double() for t in inp.r)
    )


def test_inputs_are_seeded_and_never_zero():
    cfg = grid.Config(1, 2, "8/12", 16, "bfloat16", "causal")
    a, b = impls.make_inputs(cfg, "cpu"), impls.make_inputs(cfg, "cpu")
    for x, y in zip((a.q, a.k, a.v, a.do, *a.r), (b.q, b.k, b.v, b.do, *b.r)):
        assert torch.equal(x, y) and x.abs().sum() > 0 and x.dtype == torch.bfloat16
    assert a.q.shape == (1, 2, 8, 16) and a.k.shape == (1, 2, 12, 16)
    assert a.q.requires_grad and not a.do.requires_grad


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", grid.PATHS)
def test_parity_gate_rejects_a_wrong_kernel_and_accepts_math(path, dtype, monkeypatch):
    cfg = grid.Config(1, 2, "24/40", 16, dtype, "causal")
    inp = impls.make_inputs(cfg, "cpu")
    ref64 = parity.parity_reference(path, cfg, inp)
    math_same, which = parity.math_denominators(path, cfg, inp, ref64)
    assert which == "math"

    good = measure.measure_mode(path, cfg, "math", inp, ref64, math_same, "cpu", iters=2)
    assert good.status == "ok" and good.parity <= parity.PARITY_LIMIT and good.ms > 0

    def five_percent_off(q, k, v):  # plausible-looking output, 7x the bf16 math error
        return reference.attention(q * 1.05, k, v, causal=True)

    def ignores_the_mask(q, k, v):
        return reference.attention(q, k, v, causal=False)

    for wrong in (five_percent_off, ignores_the_mask):
        monkeypatch.setattr(impls, "implementations", lambda *a, w=wrong: [("wrong", w)])
        rec = measure.measure_mode(path, cfg, "recompute", inp, ref64, math_same, "cpu", iters=2)
        assert rec.status == "fail", (wrong.__name__, rec)
        assert rec.parity > parity.PARITY_LIMIT and rec.ms is None and rec.tflops is None


def test_modes_that_cannot_run_are_skipped_not_failed(monkeypatch):
    cfg = grid.Config(1, 1, "8", 16, "float32", "none")
    inp = impls.make_inputs(cfg, "cpu")
    ref64 = parity.parity_reference("backward", cfg, inp)
    math_same, _ = parity.math_denominators("backward", cfg, inp, ref64)

    def not_landed(q, k, v):
        raise NotImplementedError("fused backward not in this build")

    monkeypatch.setattr(impls, "implementations", lambda *a: [("kernels", not_landed)])
    rec = measure.measure_mode("backward", cfg, "fused", inp, ref64, math_same, "cpu")
    assert rec.status == "skip" and "not in this build" in rec.reason

    def crashes(q, k, v):
        raise IndexError("a kernel bug")

    monkeypatch.setattr(impls, "implementations", lambda *a: [("kernels", crashes)])
    rec = measure.measure_mode("backward", cfg, "fused", inp, ref64, math_same, "cpu")
    assert rec.status == "fail" and "IndexError" in rec.reason


# --- sample summaries and the CUDA-graph replay timer ---------------------------------


def test_summaries_are_median_quartiles_n_and_range():
    xs = [0.3, 1.2, 5.0, 2.2, 0.9, 7.0, 3.3, 0.4]
    s = timing.summarize(xs)
    assert tuple(s) == timing.SUMMARY_KEYS
    q25, median, q75 = statistics.quantiles(xs, n=4, method="inclusive")  # numpy's default
    assert s["median"] == pytest.approx(statistics.median(xs)) == pytest.approx(median)
    assert s["q25"] == pytest.approx(q25) and s["q75"] == pytest.approx(q75)
    assert (s["n"], s["min"], s["max"]) == (8, 0.3, 7.0)
    assert (s["ci99_lo"], s["ci99_hi"]) == (0.3, 7.0)  # 8 samples: the range covers 99.2%
    one = dict.fromkeys(timing.SUMMARY_KEYS, 2.5) | {"n": 1, "ci99_lo": None, "ci99_hi": None}
    assert timing.summarize([2.5]) == one
    assert timing.summarize([]) is None
    assert timing.summarize([4, 1, 3, 2])["q25"] == 1.75  # 1 + 0.75 * (2 - 1)


def test_a_failed_capture_is_named_by_its_first_error():
    try:
        try:
            raise RuntimeError(
                "CUDA error: operation not permitted when stream is capturing\nSearch"
            )
        except RuntimeError:
            raise RuntimeError("capture_end: the capture was invalidated") from None
    except RuntimeError as exc:
        root = exc
    # "from None" hides the cause from the traceback but keeps it as __context__
    assert timing._root_cause(root) == (
        "RuntimeError: CUDA error: operation not permitted when stream is capturing"
    )


def test_eager_samples_keep_every_timed_call():
    ms, host, _ = timing.eager_samples(lambda: None, "cpu", iters=9, warmup_ms=0.0)
    assert len(ms) == 9 and all(x >= 0.0 for x in ms) and host is None


def test_call_counts_follow_the_estimate():
    # fast steps: rep_ms worth of calls (>= 5) after warmup_ms worth of untimed ones
    assert timing.n_iters(None, 100.0, 0.05) == 1000  # capped
    assert timing.n_iters(None, 100.0, 2.0) == 50
    assert timing.n_iters(None, 100.0, 29.0) == timing.MIN_ITERS == 5
    # GPU-bound steps from SLOW_STEP_MS on: 3 calls, and no warm-up past the estimate's
    assert timing.n_iters(None, 100.0, timing.SLOW_STEP_MS) == timing.MIN_ITERS_SLOW == 3
    assert timing.n_iters(None, 100.0, 200.0) == 3
    assert timing.n_iters(None, 100.0, 200.0, gpu=False) == 5  # a CPU's clock: 5 still
    assert timing.n_iters(7, 100.0, 200.0) == 7  # an explicit count wins
    assert timing.n_warmups(25.0, 0.5) == 50
    assert timing.n_warmups(25.0, 24.0) == 1
    assert timing.n_warmups(25.0, 25.0) == timing.n_warmups(25.0, 140.0) == 0


def test_eager_samples_have_no_peak_on_cpu():
    calls = []
    got = timing.eager_samples(lambda: calls.append(1), "cpu", iters=4, warmup_ms=0.0, peak=True)
    assert len(got.ms) == 4 and got.host is None and got.peak_mib is None
    assert len(calls) == 1 + 1 + 4  # the estimate, at least one warm-up, the timed calls


def test_graph_timing_needs_cuda():
    calls = []
    gt = timing.graph_timing(lambda: calls.append(1), "cpu", iters=3)
    assert gt == timing.GraphTiming(None, "no CUDA", None) and not calls


def test_records_keep_sample_summaries_and_say_why_there_is_no_graph_time():
    cfg = grid.Config(1, 2, "16", 16, "float32", "causal")
    inp = impls.make_inputs(cfg, "cpu")
    ref64 = parity.parity_reference("gradgrad", cfg, inp)
    math_same, _ = parity.math_denominators("gradgrad", cfg, inp, ref64)
    rec = measure.measure_mode("gradgrad", cfg, "math", inp, ref64, math_same, "cpu", iters=6)
    assert rec.status == "ok" and rec.ms_summary["n"] == 6
    assert rec.ms == rec.ms_summary["median"]
    assert rec.ms_summary["min"] <= rec.ms_summary["q25"] <= rec.ms <= rec.ms_summary["max"]
    assert rec.host_ms is None and rec.host_ms_summary is None  # CPU: wall clock is host
    assert rec.graph_ms is None and rec.graph_ms_summary is None
    assert rec.graph_reason == measure.NO_CUDA == "no CUDA"
    assert "graph" not in rec.line()  # a CPU row does not repeat "no CUDA"
    gpu = dataclasses.replace(rec, host_ms=0.9, graph_ms=0.25, graph_reason="")
    assert gpu.line().startswith(f"{rec.ms:.4g} ms (host 0.9 ms, graph 0.25 ms), ")
    nograph = dataclasses.replace(rec, host_ms=0.9, graph_reason="capture failed: X")
    assert nograph.line().endswith("(no graph: capture failed: X)")


# The keys the runner reads from a progress 'record' event before issue 15: unchanged.
RECORD_KEYS_BEFORE_GRAPH = {
    "status", "reason", "ms", "tflops", "peak_mib", "parity", "host_ms", "impl",
    "first_call_s", "measure_s",
}  # fmt: skip
RECORD_KEYS_GRAPH = {"graph_ms", "graph_reason", "ms_summary", "host_ms_summary"}
RECORD_KEYS_GRAPH |= {"graph_ms_summary"}
RECORD_KEYS_PHASES = {"parity_s", "graph_s"}  # parts of measure_s (issue 20)


def test_progress_record_events_carry_graph_time_and_summaries(tmp_path, monkeypatch):
    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv(grid.PROGRESS_ENV, str(progress))
    records = measure.measure_preset("cpu", "forward", iters=3, modes=("math",))
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    recs = [e for e in events if e["event"] == "record"]
    assert len(recs) == len(grid.preset_configs("cpu")) == len(records)
    for e in recs:
        assert set(e["record"]) == RECORD_KEYS_BEFORE_GRAPH | RECORD_KEYS_GRAPH | RECORD_KEYS_PHASES
        r = e["record"]
        assert 0.0 < r["parity_s"] and r["parity_s"] + r["graph_s"] <= r["measure_s"]
        assert r["status"] == "ok" and r["graph_ms"] is None and r["graph_reason"] == "no CUDA"
        assert set(r["ms_summary"]) == set(timing.SUMMARY_KEYS) and r["ms_summary"]["n"] == 3
        assert r["ms"] == r["ms_summary"]["median"]
    (done,) = [e for e in events if e["event"] == "class_done"]
    for phase in RECORD_KEYS_PHASES:  # the class sums its rows' phases
        assert done[phase] == pytest.approx(sum(e["record"][phase] for e in recs))
    assert "(parity " in done["msg"] and "CUDA graphs" in done["msg"]
    assert 0.0 < done["free_s"] < done["total_s"] and "freeing memory" in done["msg"]


@pytest.mark.gpu
def test_graph_replay_of_a_fused_gradgrad_step_is_the_step_without_the_host():
    cfg = grid.Config(1, 2, "256", 64, "float16", "causal")
    inp = impls.make_inputs(cfg, "cuda")
    ((_, attn),) = impls.implementations("fused", cfg, "cuda")

    def step():
        return impls.run_path("gradgrad", attn, inp)

    eager = [t.clone() for t in step()]
    ms, host_ms = timing.step_timing(step, "cuda", iters=30)
    gt = timing.graph_timing(step, "cuda", iters=30, keep_outputs=True)
    assert gt.summary is not None, gt.reason
    assert gt.summary["n"] == 30 and 0 < gt.summary["median"]
    # A step this small waits on Python and launches eagerly (docs/design.md trap 13); the
    # replay has neither, so it is faster than the host-inclusive eager ms.
    assert gt.summary["median"] < ms, (gt.summary, ms, host_ms)
    assert len(gt.outputs) == len(eager) == 3
    for replayed, expected in zip(gt.outputs, eager):  # same kernels, same inputs
        torch.testing.assert_close(replayed, expected, rtol=1e-3, atol=1e-3)
    assert torch.cuda.current_stream() == torch.cuda.default_stream()


@pytest.mark.gpu
def test_a_step_that_cannot_be_captured_gives_a_reason_and_poisons_nothing():
    x = torch.randn(4096, device="cuda")

    def syncs_with_the_host():
        y = x * 2
        if y.sum().item() > 0:  # .item() waits for the GPU: illegal while capturing
            y = y + 1
        return y

    gt = timing.graph_timing(syncs_with_the_host, "cuda", iters=5)
    assert gt.summary is None and gt.reason.startswith("capture failed: "), gt.reason
    assert "CUDA failed after it" not in gt.reason
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    # what follows measures as before: eager timing, memory, another capture
    ms, host_ms = timing.step_timing(lambda: x * 2, "cuda", iters=5)
    assert ms > 0 and host_ms > 0
    assert timing.peak_mib(lambda: x * 2, "cuda") >= 0
    again = timing.graph_timing(lambda: x * 2, "cuda", iters=5, keep_outputs=True)
    assert again.summary is not None, again.reason
    torch.testing.assert_close(again.outputs[0], x * 2)


@pytest.mark.gpu
def test_eager_samples_measure_the_peak_of_one_call():
    """The peak taken on the estimate's calls is peak_mib's: each call's own allocation,
    not the sum over the calls, and not the flush buffer."""
    x = torch.randn(1024, 1024, device="cuda")

    def step():
        return x.repeat(16, 1)  # 64 MiB a call, dropped by the caller

    alone = timing.peak_mib(step, "cuda")
    # a step this short: the estimate is four calls, each dropping its output
    got = timing.eager_samples(step, "cuda", iters=3, warm=True, peak=True)
    assert got.peak_mib == pytest.approx(alone, rel=0.01), (got.peak_mib, alone)
    assert 63.9 <= alone <= 64.1
    assert timing.eager_samples(step, "cuda", iters=3).peak_mib is None  # not asked


@pytest.mark.gpu
def test_timers_share_one_flush_buffer_that_freeing_memory_keeps():
    x = torch.randn(1024, device="cuda")
    timing.step_timing(lambda: x * 2, "cuda", iters=3)
    first = timing._flush_buffer()
    timing.free_memory()
    gt = timing.graph_timing(lambda: x * 2, "cuda", iters=3)
    assert gt.summary is not None, gt.reason
    again = timing._flush_buffer()
    assert again.data_ptr() == first.data_ptr() and again.numel() == timing.L2_FLUSH_BYTES


@pytest.mark.gpu
def test_graph_timing_runs_the_step_three_times_and_replays_the_rest():
    """One warm-up on a side stream, the capture, the eager call the first replay is
    checked against: what a slow step costs beyond its replays."""
    x = torch.randn(4096, device="cuda")
    calls = []

    def step():
        calls.append(1)
        return x * 2

    gt = timing.graph_timing(step, "cuda", iters=7)
    assert gt.summary is not None and gt.summary["n"] == 7, gt.reason
    assert len(calls) == timing.CAPTURE_WARMUP_CALLS + 2 == 3


def test_a_host_bound_backend_pick_is_made_on_the_kernels_time(monkeypatch):
    """SDPA's candidates: when eager timing is the host's, the pick is the lowest graph ms
    (H200, seed backward: flash 0.28 ms eager / 0.237 replayed, cuDNN 0.36 / 0.128)."""
    flash = measure.Record("ok", ms=0.28, host_ms=0.31, parity=0.1)
    cudnn = measure.Record("ok", ms=0.36, host_ms=0.45, parity=0.1)
    replayed = {id(flash): 0.237, id(cudnn): 0.128}
    calls = []

    def fake_graph_time(rec, *args):
        calls.append(rec)
        rec.graph_ms = replayed[id(rec)]

    monkeypatch.setattr(measure, "_graph_time", fake_graph_time)
    cands = [("sdpa(flash)", None), ("sdpa(cudnn)", None)]
    args = ("backward", cands)
    assert measure._fastest(*args, [flash, cudnn], None, "cuda", None, None, True) is cudnn
    assert calls == [flash, cudnn]
    # GPU-bound candidates: the eager ms decides, nothing replayed
    calls.clear()
    a = measure.Record("ok", ms=3.4, host_ms=0.4, parity=0.1)
    b = measure.Record("ok", ms=3.7, host_ms=0.4, parity=0.1)
    assert measure._fastest(*args, [b, a], None, "cuda", None, None, True) is a and not calls
    # no graph replays (CPU, or graph=False): the eager ms
    flash.graph_ms = cudnn.graph_ms = None
    assert measure._fastest(*args, [flash, cudnn], None, "cpu", None, None, False) is flash
    assert not calls
    # a candidate that cannot be captured: back to the eager ms
    monkeypatch.setattr(measure, "_graph_time", lambda rec, *a: setattr(rec, "graph_reason", "x"))
    assert measure._fastest(*args, [cudnn, flash], None, "cuda", None, None, True) is flash
