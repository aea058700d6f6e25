"""The card's own ceilings (issue 17 item 1): bench_suite/bench_peak.py, harness/peak.py,
the ops' FLOPs and bytes in harness/flops.py, and how the runner selects the class.

CPU: the skip path, the class's lookups, the timing loop with stand-ins for CUDA's events
(the ops themselves run small on the CPU), asv's discovery and the runner's selection
(once per GPU run, never in the CPU grid). ``pytest --gpu``: the real ops on the card.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_suite import bench_peak
from harness import flops, grid, peak
from runner import asv_run, shards

REPO = Path(__file__).resolve().parents[1]


def test_peak_ops_carry_their_size_and_their_work():
    assert list(flops.PEAK_OPS) == ["matmul_bf16_8192", "matmul_fp16_8192", "copy_2GiB"]
    bf16 = flops.PEAK_OPS[flops.PEAK_MATMUL_OP]
    assert (bf16.kind, bf16.dtype, bf16.n) == ("matmul", "bfloat16", 8192)
    assert bf16.flops == 2 * 8192**3
    assert bf16.bytes == 3 * 8192**2 * 2  # A, B read and C written, once each
    copy = flops.PEAK_OPS[flops.PEAK_COPY_OP]
    assert copy.flops == 0 and copy.bytes == 2 * 2 * 2**30  # read 2 GiB, write 2 GiB
    # the reports' conversions: 1.1e12 FLOP in 1.39 ms ~ 791 TFLOP/s; 4.3e9 B in 1.3 ms
    assert flops.tflops_of(bf16.flops, 1.39) == pytest.approx(791.0, rel=1e-3)
    assert flops.gbps_of(copy.bytes, 1.3) == pytest.approx(3303.8, rel=1e-3)
    assert flops.peak_op("nope") is None and flops.peak_op("copy_2GiB") is copy


def test_the_class_skips_without_cuda_and_looks_values_up():
    bench = bench_peak.Peak()
    assert bench_peak.Peak.params == [list(flops.PEAK_OPS)]
    assert bench_peak.Peak.track_ms.unit == "ms"
    cache = bench.setup_cache() if not _cuda() else {"unavailable": peak.NO_CUDA}
    assert cache == {"unavailable": "no CUDA"}
    with pytest.raises(NotImplementedError, match="no CUDA"):  # asv: skipped, not failed
        bench.setup(cache, "matmul_bf16_8192")
    cache = {
        "device": "NVIDIA H200",
        "matmul_bf16_8192": {"ms": 1.4, "ms_summary": {"n": 30}},
        "copy_2GiB": {"skip": "out of memory: x"},
    }
    bench.setup(cache, "matmul_bf16_8192")
    assert bench.track_ms(cache, "matmul_bf16_8192") == 1.4
    with pytest.raises(NotImplementedError, match="out of memory"):
        bench.setup(cache, "copy_2GiB")
    with pytest.raises(NotImplementedError, match="not measured"):
        bench.setup(cache, "matmul_fp16_8192")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class _FakeEvent:
    """torch.cuda.Event's timing surface on the host clock."""

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


def test_measure_times_every_op_with_events_after_warmup(monkeypatch, tmp_path):
    """The GPU path on the CPU: CUDA's events, sync and device calls stood in for, the ops
    (a small bf16 and fp16 matmul, a 4 MiB copy) run as torch ops on the CPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv(grid.PROGRESS_ENV, str(progress))
    ops = {
        "matmul_bf16_64": flops.PeakOp("matmul", "bfloat16", 64),
        "matmul_fp16_64": flops.PeakOp("matmul", "float16", 64),
        "copy_4MiB": flops.PeakOp("copy", "uint8", 4 * 2**20),
    }
    calls = []
    real_make = peak._make

    def make(op, device):
        fn = real_make(op, device)
        return lambda: calls.append(op.kind) or fn()

    monkeypatch.setattr(peak, "_make", make)
    out = peak.measure(reps=7, warmup_s=0.0, ops=ops, device="cpu")
    assert out["device"] == "Fake GPU"
    for name in ops:
        assert out[name]["ms"] > 0 and out[name]["ms_summary"]["n"] == 7
        assert out[name]["ms"] == out[name]["ms_summary"]["median"]
    assert calls.count("copy") == 3 + 7  # at least 3 warm-up calls, then the timed ones
    *events, done = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [e["op"] for e in events] == list(ops)
    assert all(e["event"] == "peak" and e["tag"] == "peak" for e in events)
    assert "TFLOP/s on Fake GPU" in events[0]["msg"] and "GB/s" in events[2]["msg"]
    # what measuring took: the runner's setup_cache duration where asv only read the records
    assert done["event"] == "peak_done" and done["tag"] == "peak" and done["total_s"] > 0


def test_the_ops_compute_what_they_claim_on_the_cpu():
    import torch

    mm = peak._make(flops.PeakOp("matmul", "float16", 32), "cpu")
    c = mm()
    assert c.dtype == torch.float16 and c.shape == (32, 32)
    cp = peak._make(flops.PeakOp("copy", "uint8", 1024), "cpu")
    dst = cp()
    assert dst.dtype == torch.int32 and dst.numel() == 256 and bool((dst == 1).all())
    with pytest.raises(ValueError, match="kind"):
        peak._make(flops.PeakOp("fft", "float32", 8), "cpu")


def test_out_of_memory_skips_that_op_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    real_make = peak._make

    def make(op, device):
        if op.kind == "copy":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real_make(op, device)

    monkeypatch.setattr(peak, "_make", make)
    ops = {"m": flops.PeakOp("matmul", "bfloat16", 16), "c": flops.PeakOp("copy", "uint8", 64)}
    out = peak.measure(reps=3, warmup_s=0.0, ops=ops, device="cpu")
    assert out["m"]["ms"] > 0 and out["c"]["skip"].startswith("out of memory")


def test_asv_discovers_the_class_and_every_gpu_run_selects_it_once():
    """asv's own discovery; the regexes the runner hands asv (one run per preset, or one
    sharded plan): the Peak unit once in a GPU run, never in the CPU grid."""
    found = shards.list_benchmarks(REPO / "bench_suite")
    assert found["bench_peak.Peak.track_ms"] == [[repr(op) for op in flops.PEAK_OPS]]
    chunks = asv_run.preset_chunks("gpu")
    per_chunk = [set(shards.select_units(found, regex)) for _, regex in chunks]
    assert [grid.PEAK_CLASS in units for units in per_chunk] == [True] + [False] * 4
    assert grid.PEAK_CLASS in shards.select_units(found, asv_run.bench_regex("gpu", ["ttt"]))
    assert grid.PEAK_CLASS in shards.select_units(found, asv_run.bench_regex("gpu"))
    assert grid.PEAK_CLASS not in shards.select_units(found, asv_run.bench_regex("cpu"))
    # a user's own --bench filter on a sharded run: only when it asks for it
    assert grid.PEAK_CLASS not in shards.select_units(found, asv_run.bench_regex("gpu"), "TTT")


def test_the_module_imports_without_torch():
    """asv imports every bench_suite module in each process: nothing touches torch before a
    benchmark asks (bench_suite/__init__.py)."""
    code = "import sys; import bench_suite.bench_peak, harness.peak; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.gpu
def test_peak_on_the_gpu():
    out = peak.measure(reps=10, warmup_s=0.2)
    for name, op in flops.PEAK_OPS.items():
        ms = out[name]["ms"]
        if op.kind == "matmul":  # H100/H200 dense bf16/fp16: ~600-990 TFLOP/s
            assert 100 < flops.tflops_of(op.flops, ms) < 2000, (name, ms)
        else:  # HBM3/3e: 3.35-4.8 TB/s peak, a copy reaches most of it
            assert 500 < flops.gbps_of(op.bytes, ms) < 10000, (name, ms)


def test_asv_runs_the_class_on_a_cpu_and_records_skips_not_failures(tmp_path):
    """The command that runs the Peak benchmark alone, through the runner and asv itself;
    on a machine without CUDA every op is asv's skip (NaN), not a failure (null)."""
    import math

    result = asv_run.run_commit(
        "HEAD",
        machine="pytest-cpu",
        results_dir=tmp_path,
        bench=r"^bench_peak\.Peak\.track_",
        grid="cpu",
    )
    data = json.loads(result.read_text())
    assert list(data["results"]) == ["bench_peak.Peak.track_ms"]
    row = dict(zip(data["result_columns"], data["results"]["bench_peak.Peak.track_ms"]))
    assert row["params"] == [[repr(op) for op in flops.PEAK_OPS]]
    assert len(row["result"]) == 3 and all(math.isnan(v) for v in row["result"])
    meta = json.loads((tmp_path / "benchmarks.json").read_text())["bench_peak.Peak.track_ms"]
    assert meta["unit"] == "ms" and meta["param_names"] == ["op"]
