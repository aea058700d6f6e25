"""The asv suite and its runner: FLOP model, references, parity gate, asv end to end.

CPU only, except the ``gpu``-marked case. The asv runs use the CPU preset (run_commit's
own path: existing environment, --set-commit-hash, pinned machine, forkserver) into
temporary folders; BENCH_SUITE_REP_MS shortens the timing loops.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench_suite import bench_backward, bench_forward, bench_gradgrad, common
from kernels import reference
from runner import asv_run

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {"forward": bench_forward, "backward": bench_backward, "gradgrad": bench_gradgrad}
METRICS = ("ms", "tflops", "peak_mib", "parity", "host_ms")
QUICK_ENV = {"BENCH_SUITE_REP_MS": "5"}


# --- FLOP model -----------------------------------------------------------------------


def brute_force_visible(tq, tk, mask):
    causal, window = common.parse_mask(mask)
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
    assert common.visible_pairs(tq, tk, mask) == visible
    if tq * tk <= 10_000:
        assert brute_force_visible(tq, tk, mask) == visible


def test_visible_pairs_match_the_mask_everywhere():
    for tq in (1, 2, 7, 16):
        for tk in (tq, tq + 1, tq + 9):
            for mask in ("none", "causal", "window1", "window3", "window8", "window40"):
                assert common.visible_pairs(tq, tk, mask) == brute_force_visible(tq, tk, mask)


def test_flops_hand_counts():
    # square, no mask: 2 matmuls x 2*T*T*D per head
    assert common.flops("forward", 2, 4, 2048, 2048, 128, "none") == 4 * 2 * 4 * 2048**2 * 128
    # square causal: (T+1)/(2T) of that
    f = common.flops("forward", 1, 8, 8192, 8192, 128, "causal")
    assert f == 4 * 8 * 8192**2 * 128 * (8192 + 1) / (2 * 8192)
    # TTT: 1024 queries each see 8192 keys
    assert common.flops("forward", 1, 12, 1024, 9216, 64, "window8192") == 4 * 12 * 1024 * 8192 * 64
    # Tq < Tk causal (rows see Tk-Tq+1 .. Tk keys)
    assert common.flops("forward", 1, 1, 2, 5, 8, "causal") == 4 * (4 + 5) * 8
    for args in [(2, 4, 2048, 2048, 128, "none"), (1, 12, 1024, 9216, 80, "window8192")]:
        fwd = common.flops("forward", *args)
        assert common.flops("backward", *args) == 3.5 * fwd  # forward + 2.5x forward
        assert common.flops("gradgrad", *args) == 14 * fwd  # (2 + 5 + 21) matmuls / 2
    with pytest.raises(ValueError, match="path"):
        common.flops("sideways", 1, 1, 4, 4, 8, "none")
    with pytest.raises(ValueError, match="mask"):
        common.flops("forward", 1, 1, 4, 4, 8, "window0")


# --- presets, params, the asv classes ---------------------------------------------------


def test_every_file_has_every_preset_with_the_contract_params():
    for path, module in FAMILIES.items():
        for preset in common.PRESETS.values():
            cls = getattr(module, preset.class_name)
            assert cls.param_names == ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]
            assert cls.params == common.asv_params(preset.name, path)
            assert cls.path == path and cls.preset == preset.name
            assert "setup_cache" in vars(cls), "asv keys setup_cache by source line: own one"
            for metric, unit in zip(
                METRICS, ("ms", "TFLOP/s", "MiB", "ratio", "host ms"), strict=True
            ):
                assert getattr(cls, f"track_{metric}").unit == unit
            for cfg in preset.configs():  # every T and mask parses
                assert cfg.tq <= cfg.tk
    assert "sdpa" not in common.PRESETS["seed"].modes_for("gradgrad")
    assert "sdpa" in common.PRESETS["seed"].modes_for("backward")
    assert "flash" not in common.PRESETS["seed"].modes_for("gradgrad")
    assert "flash" in common.PRESETS["grid"].modes_for("forward")
    for preset in common.PRESETS.values():  # asv needs at least one value on every axis
        for path in common.PATHS:
            assert all(common.asv_params(preset.name, path)), (preset.name, path)


def test_short_preset_is_the_issue6_target_grid_at_2048():
    """Issue 6: fused fwd+bwd >= 1.0x SDPA flash for T >= 2048, D 64/128, causal and not, bf16."""
    short = common.PRESETS["short"]
    assert short.class_name == "Short" and short.device == "cuda"
    assert "short" in common.GRIDS["gpu"]
    targets = {("2048", d, "bfloat16", m) for d in (64, 128) for m in ("none", "causal")}
    assert {(c.T, c.D, c.dtype, c.mask) for c in short.configs()} == targets
    assert len(short.configs()) == len(targets)  # one B and H: 4 configs, cheap
    assert {"fused", "flash", "sdpa"} <= set(short.modes_for("backward"))
    assert set(short.modes_for("forward")) == set(short.modes_for("backward"))
    # no SDPA double backward: grad-grad keeps fused alone, still a valid (non-empty) axis
    assert short.modes_for("gradgrad") == ("fused",)
    assert common.asv_params("short", "gradgrad")[-1] == ["fused"]
    # Seed (fp16, one D, no mask) does not cover these shapes; Grid is T=4096 only
    seed = {(c.T, c.D, c.dtype, c.mask) for c in common.PRESETS["seed"].configs()}
    assert not seed & targets
    assert common.PRESETS["grid"].T == ("4096",)


def test_flash_baseline_is_sdpa_pinned_to_flash_and_needs_cuda():
    cfg = common.preset_configs("seed")[0]
    with pytest.raises(NotImplementedError, match="CUDA"):
        common.implementations("flash", cfg, "cpu")
    assert common.PRESETS["cpu"].modes_for("gradgrad") == ("math",)


def test_class_lookups_skip_fail_and_pass():
    cls = bench_backward.CPU
    key = (1, 2, "128", 64, "float32", "none")
    cache = {
        key + ("math",): common.Record("ok", ms=1.5, tflops=0.1, peak_mib=None, parity=0.7),
        key + ("compiled",): common.Record("fail", "parity 9 > 2", parity=9.0),
    }
    bench = cls()
    bench.setup(cache, *key, "math")
    assert bench.track_ms(cache, *key, "math") == 1.5
    assert bench.track_parity(cache, *key, "math") == 0.7
    with pytest.raises(common.SkipNotImplemented):  # no GPU memory counter on CPU
        bench.track_peak_mib(cache, *key, "math")
    with pytest.raises(common.SkipNotImplemented):  # CPU wall-clock already is host time
        bench.track_host_ms(cache, *key, "math")
    bench.setup(cache, *key, "compiled")
    with pytest.raises(RuntimeError, match="parity"):  # a wrong kernel is never timed
        bench.track_ms(cache, *key, "compiled")
    assert bench.track_parity(cache, *key, "compiled") == 9.0  # the evidence is kept
    skipped = {key + ("math",): common.Record("skip", "out of memory")}
    with pytest.raises(NotImplementedError, match="out of memory"):
        bench.setup(skipped, *key, "math")
    with pytest.raises(NotImplementedError, match="no CUDA"):
        bench.setup({"unavailable": "no CUDA device"}, *key, "math")


def test_host_time_is_recorded_and_shown_where_there_is_one():
    key = (1, 2, "128", 64, "float32", "none", "math")
    rec = common.Record("ok", ms=0.5, tflops=1.0, peak_mib=3.0, parity=0.7, host_ms=0.62)
    bench = bench_backward.CPU()
    bench.setup({key: rec}, *key)
    assert bench.track_host_ms({key: rec}, *key) == 0.62
    assert rec.line().startswith("0.5 ms (host 0.62 ms), ")
    assert "host" not in dataclasses.replace(rec, host_ms=None).line()


def test_step_timing_has_no_host_time_on_cpu():
    calls = []
    ms, host = common.step_timing(lambda: calls.append(1), "cpu", iters=7, warmup_ms=0.0)
    assert host is None and ms >= 0.0
    assert len(calls) == 1 + 1 + 7  # estimate, one warm-up, the timed calls
    assert common.median_ms(lambda: None, "cpu", iters=3) >= 0.0


# --- references and the parity gate -------------------------------------------------------


@pytest.mark.parametrize("mask", ["none", "causal", "window5"])
@pytest.mark.parametrize("path", common.PATHS)
def test_chunked_reference_is_the_whole_problem(path, mask):
    cfg = common.Config(2, 2, "13/21" if mask != "none" else "17", 16, "float32", mask)
    inp = common.make_inputs(cfg, "cpu")
    whole = [t.double() for t in common.reference_outputs(path, cfg, inp, torch.float64)]
    rows_per_chunk = 3
    chunked = common.reference_outputs(
        path, cfg, inp, torch.float64, chunk_scores=rows_per_chunk * cfg.B * cfg.H * cfg.tk
    )
    direct = common.run_path(path, common.math_attention(cfg), _as_fp64(inp))
    for a, b, c in zip(whole, chunked, direct):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a, c.detach(), rtol=1e-10, atol=1e-12)


def _as_fp64(inp):
    leaf = lambda t: t.detach().double().requires_grad_()
    return common.Inputs(
        leaf(inp.q), leaf(inp.k), leaf(inp.v), inp.do.double(), tuple(t.double() for t in inp.r)
    )


def test_inputs_are_seeded_and_never_zero():
    cfg = common.Config(1, 2, "8/12", 16, "bfloat16", "causal")
    a, b = common.make_inputs(cfg, "cpu"), common.make_inputs(cfg, "cpu")
    for x, y in zip((a.q, a.k, a.v, a.do, *a.r), (b.q, b.k, b.v, b.do, *b.r)):
        assert torch.equal(x, y) and x.abs().sum() > 0 and x.dtype == torch.bfloat16
    assert a.q.shape == (1, 2, 8, 16) and a.k.shape == (1, 2, 12, 16)
    assert a.q.requires_grad and not a.do.requires_grad


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", common.PATHS)
def test_parity_gate_rejects_a_wrong_kernel_and_accepts_math(path, dtype, monkeypatch):
    cfg = common.Config(1, 2, "24/40", 16, dtype, "causal")
    inp = common.make_inputs(cfg, "cpu")
    ref64 = common.reference_outputs(path, cfg, inp, torch.float64)
    math_same, which = common.same_dtype_math_outputs(path, cfg, inp)
    assert which == "math"

    good = common.measure_mode(path, cfg, "math", inp, ref64, math_same, "cpu", iters=2)
    assert good.status == "ok" and good.parity <= common.PARITY_LIMIT and good.ms > 0

    def five_percent_off(q, k, v):  # plausible-looking output, 7x the bf16 math error
        return reference.attention(q * 1.05, k, v, causal=True)

    def ignores_the_mask(q, k, v):
        return reference.attention(q, k, v, causal=False)

    for wrong in (five_percent_off, ignores_the_mask):
        monkeypatch.setattr(common, "implementations", lambda *a, w=wrong: [("wrong", w)])
        rec = common.measure_mode(path, cfg, "recompute", inp, ref64, math_same, "cpu", iters=2)
        assert rec.status == "fail", (wrong.__name__, rec)
        assert rec.parity > common.PARITY_LIMIT and rec.ms is None and rec.tflops is None


def test_modes_that_cannot_run_are_skipped_not_failed(monkeypatch):
    cfg = common.Config(1, 1, "8", 16, "float32", "none")
    inp = common.make_inputs(cfg, "cpu")
    ref64 = common.reference_outputs("backward", cfg, inp, torch.float64)
    math_same, _ = common.same_dtype_math_outputs("backward", cfg, inp)

    def not_landed(q, k, v):
        raise NotImplementedError("fused backward not in this build")

    monkeypatch.setattr(common, "implementations", lambda *a: [("kernels", not_landed)])
    rec = common.measure_mode("backward", cfg, "fused", inp, ref64, math_same, "cpu")
    assert rec.status == "skip" and "not in this build" in rec.reason

    def crashes(q, k, v):
        raise IndexError("a kernel bug")

    monkeypatch.setattr(common, "implementations", lambda *a: [("kernels", crashes)])
    rec = common.measure_mode("backward", cfg, "fused", inp, ref64, math_same, "cpu")
    assert rec.status == "fail" and "IndexError" in rec.reason


# --- runner: names, grids, regexes ---------------------------------------------------------


def test_machine_names(monkeypatch):
    assert asv_run.gpu_slug("NVIDIA H100 80GB HBM3", 81559) == "h100-sxm-80gb"
    assert asv_run.gpu_slug("NVIDIA H100 PCIe", 81559) == "h100-pcie-80gb"
    assert asv_run.gpu_slug("NVIDIA H100 NVL", 95830) == "h100-nvl-94gb"
    assert asv_run.gpu_slug("NVIDIA H200", 143771) == "h200-sxm-140gb"
    assert asv_run.gpu_slug("NVIDIA A100-SXM4-80GB", 81920) == "a100-sxm-80gb"
    monkeypatch.setattr(asv_run, "_nvidia_smi_gpus", lambda: [("NVIDIA H100 80GB HBM3", 81559)])
    assert asv_run.machine_name() == "h100-sxm-80gb"
    assert asv_run.machine_name(n_gpus=1) == "h100-sxm-80gb"
    assert asv_run.machine_name(n_gpus=2) == "h100-sxm-80gb-x2"
    assert asv_run.default_grid() == "gpu"
    monkeypatch.setattr(asv_run, "_nvidia_smi_gpus", lambda: [])
    monkeypatch.setattr(asv_run.platform, "machine", lambda: "x86_64")
    assert asv_run.machine_name() == "cpu-x86_64"


def test_bench_regex_selects_classes_by_grid():
    names = [
        f"bench_{f}.{p.class_name}.track_{m}"
        for f in common.PATHS
        for p in common.PRESETS.values()
        for m in METRICS
    ]

    def picked(regex):
        return {n.split(".")[1] for n in names if re.search(regex, n)}

    assert picked(asv_run.bench_regex("gpu")) == {"Seed", "TTT", "Long", "Grid", "Short"}
    assert picked(asv_run.bench_regex("cpu")) == {"CPU"}
    assert picked(asv_run.bench_regex("gpu", ["seed", "TTT"])) == {"Seed", "TTT"}
    assert picked(asv_run.bench_regex("gpu", ["short"])) == {"Short"}
    assert all(re.search(asv_run.bench_regex("cpu"), n) for n in names if ".CPU." in n)
    with pytest.raises(ValueError, match="not in the gpu grid"):
        asv_run.bench_regex("gpu", ["cpu"])
    with pytest.raises(ValueError, match="grid"):
        asv_run.bench_regex("tpu")


def test_preset_chunks_are_one_asv_run_per_preset():
    chunks = asv_run.preset_chunks("gpu")
    assert [label for label, _ in chunks] == list(common.GRIDS["gpu"])
    for label, regex in chunks:
        assert regex == asv_run.bench_regex("gpu", [label])
    assert [label for label, _ in asv_run.preset_chunks("gpu", ["TTT", "seed"])] == [
        "ttt",
        "seed",
    ]
    with pytest.raises(ValueError, match="not in the gpu grid"):
        asv_run.preset_chunks("gpu", ["cpu"])


# --- asv itself ------------------------------------------------------------------------------


def test_asv_check_discovers_the_suite(tmp_path):
    conf = asv_run._write_run_conf(REPO, tmp_path / "results", tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asv",
            "check",
            "--config",
            str(conf),
            "-E",
            f"existing:{sys.executable}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=asv_run._source_env(REPO, None, None),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Discovering benchmarks" in proc.stdout


def test_asv_run_cpu_end_to_end(tmp_path, capfd):
    env = dict(os.environ, **QUICK_ENV)
    result = asv_run.run_commit(
        "HEAD", machine="pytest-cpu", results_dir=tmp_path, grid="cpu", env=env
    )
    out = capfd.readouterr().out
    assert result.parent == tmp_path / "pytest-cpu"
    data = json.loads(result.read_text())
    assert data["version"] == 2 and result.name.startswith(data["commit_hash"][:8] + "-existing-")
    expected = {f"bench_{f}.CPU.track_{m}" for f in common.PATHS for m in METRICS}
    assert set(data["results"]) == expected
    machine = json.loads((tmp_path / "pytest-cpu" / "machine.json").read_text())
    # The installed distribution's version (a CUDA wheel's torch.__version__ may carry a
    # local "+cu130" that its metadata lacks: seen on the lent H100).
    assert machine["machine"] == "pytest-cpu"
    assert machine["torch"] == importlib.metadata.version("torch")
    assert (tmp_path / "benchmarks.json").is_file()

    rows = asv_run.load_rows(result)
    n_params = {
        f: len(common.preset_configs("cpu")) * len(common.PRESETS["cpu"].modes_for(f))
        for f in common.PATHS
    }
    assert len(rows) == len(METRICS) * sum(n_params.values())
    by = {(r["family"], r["metric"], r["T"], r["mask"], r["bwd_mode"]): r["value"] for r in rows}
    for f in common.PATHS:
        for cfg in common.preset_configs("cpu"):
            ms = by[(f, "ms", cfg.T, cfg.mask, "math")]
            tflops = by[(f, "tflops", cfg.T, cfg.mask, "math")]
            assert isinstance(ms, float) and ms > 0
            assert tflops == pytest.approx(common.config_flops(f, cfg) / ms / 1e9, rel=1e-9)
            assert by[(f, "parity", cfg.T, cfg.mask, "math")] <= common.PARITY_LIMIT
            assert by[(f, "peak_mib", cfg.T, cfg.mask, "math")] == "skipped"  # no CPU counter
            assert by[(f, "host_ms", cfg.T, cfg.mask, "math")] == "skipped"  # wall clock is
    # the progress lines streamed while asv ran, and the kernels came from this checkout
    assert f"kernels from {REPO / 'kernels'}" in out
    assert "asv wall time" in out
    asv_run.print_table(result)
    table = capfd.readouterr().out
    assert "forward CPU B1 H2 T128 D64 float32 none" in table and "compiled" in table


def test_an_interrupted_run_keeps_the_parts_that_finished(tmp_path, monkeypatch, capfd):
    """Two asv runs merge into the commit's one result file; Ctrl-C in the third keeps both."""
    parts = [
        (f"cpu-{family}", rf"^bench_{family}\.CPU\.track_") for family in common.PATHS
    ]  # forward, backward, gradgrad: three asv runs
    monkeypatch.setattr(asv_run, "preset_chunks", lambda grid, presets=None: parts)
    real_run = asv_run.subprocess.run
    asv_runs = []

    def run(cmd, *args, **kwargs):
        if "--bench" in cmd:
            asv_runs.append(cmd[cmd.index("--bench") + 1])
            if len(asv_runs) == 3:
                raise KeyboardInterrupt
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(asv_run.subprocess, "run", run)
    env = dict(os.environ, **QUICK_ENV)
    with pytest.raises(KeyboardInterrupt):
        asv_run.run_commit("HEAD", machine="pytest-cpu", results_dir=tmp_path, grid="cpu", env=env)
    out = capfd.readouterr().out
    assert asv_runs == [regex for _, regex in parts]
    assert "[2/3 cpu-backward]" in out
    assert "interrupted while measuring cpu-gradgrad" in out
    assert "kept cpu-forward, cpu-backward" in out
    assert "--presets cpu-gradgrad" in out  # the command that measures the rest
    (result,) = (tmp_path / "pytest-cpu").glob("*-existing-*.json")
    measured = {name.split(".")[0] for name in json.loads(result.read_text())["results"]}
    assert measured == {"bench_forward", "bench_backward"}


def test_sigterm_stops_main_like_ctrl_c(monkeypatch):
    def interrupted(commit, **kw):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler turns it into KeyboardInterrupt
        raise AssertionError("not reached")

    monkeypatch.setattr(asv_run, "run_commit", interrupted)
    before = signal.getsignal(signal.SIGTERM)
    assert asv_run.main(["--grid", "cpu", "--machine", "pytest-cpu"]) == 130
    assert signal.getsignal(signal.SIGTERM) is before


def test_history_measures_each_commit_from_its_own_worktree(tmp_path):
    """Two commits of a clone, the second with a broken kernels/reference.py: the first's
    results are numbers, the second's are failures, each from its own worktree."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    git = lambda *a: subprocess.run(
        ["git", "-C", str(clone), *a], check=True, capture_output=True, text=True
    ).stdout.strip()
    good = git("rev-parse", "HEAD")
    ref_py = clone / "kernels" / "reference.py"
    with open(ref_py, "a") as f:  # a later definition replaces the math path
        f.write('\n\ndef attention(*args, **kwargs):\n    raise RuntimeError("broken here")\n')
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "break the reference")
    bad = git("rev-parse", "HEAD")
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.asv_run",
            "--range",
            f"{good}~1..{bad}",
            "--grid",
            "cpu",
            "--bench",
            r"^bench_gradgrad\.CPU\.track_ms",
            "--results-dir",
            str(results),
            "--machine",
            "pytest-history",
        ],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, **QUICK_ENV),
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]  # the bad commit failed
    for sha in (good, bad):
        assert re.search(
            rf"kernels from {clone}/\.asv/worktrees/{sha[:8]}-\w+/kernels", proc.stdout
        )
    files = {p.name[:8]: p for p in (results / "pytest-history").glob("*-existing-*.json")}
    assert set(files) == {good[:8], bad[:8]}
    values = {
        sha: json.loads(files[sha[:8]].read_text())["results"]["bench_gradgrad.CPU.track_ms"][0]
        for sha in (good, bad)
    }
    assert all(isinstance(v, float) and v > 0 for v in values[good])
    assert values[bad] is None  # setup_cache failed: asv records every combination as failed
    rows = asv_run.load_rows(files[bad[:8]])
    assert len(rows) == len(common.preset_configs("cpu")) and {r["value"] for r in rows} == {
        "failed"
    }
    assert not list((clone / ".asv" / "worktrees").iterdir())  # worktrees cleaned up


# --- the quick CLI ---------------------------------------------------------------------------


def run_quick(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "bench_suite.quick", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_quick_cli_on_cpu():
    out = run_quick(
        "--b",
        "1",
        "--h",
        "2",
        "--t",
        "32",
        "--d",
        "16",
        "--dtype",
        "fp32",
        "--iters",
        "3",
        "--device",
        "cpu",
    )
    assert "CPU (wall-clock" in out
    assert "triton: skipped on CPU" in out
    for path in common.PATHS:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"math {path}:"))
        assert float(line.split()[2]) > 0 and line.split()[3] == "ms"


def test_quick_cli_interpreter_is_not_a_speed():
    out = run_quick(
        "--b",
        "1",
        "--h",
        "1",
        "--t",
        "16",
        "--tk",
        "24",
        "--window",
        "8",
        "--d",
        "16",
        "--dtype",
        "bf16",
        "--iters",
        "1",
        "--device",
        "cpu",
        "--interpret",
        "--mode",
        "fwd",
    )
    line = next(ln for ln in out.splitlines() if ln.startswith("triton forward:"))
    assert "interpreter, not a speed" in line and "vs math" not in line


def test_quick_cli_rejects_bad_input():
    proc = subprocess.run(
        [sys.executable, "-m", "bench_suite.quick", "--t", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--t must be >= 1" in proc.stderr


# --- GPU: one real preset ---------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("path", common.PATHS)
def test_seed_preset_on_the_gpu(path):
    records = common.measure_preset("seed", path)
    assert "unavailable" not in records
    for key, rec in records.items():
        mode = key[-1]
        if mode in ("math", "sdpa"):
            assert rec.status == "ok", (key, rec)
        assert rec.status in ("ok", "skip"), (key, rec)  # a failure is a kernel bug
        if rec.status == "ok":
            assert rec.ms > 0 and rec.peak_mib > 0 and rec.parity <= common.PARITY_LIMIT
            assert 0 < rec.host_ms < 100 * rec.ms  # measured: a launch takes microseconds
            assert math.isfinite(rec.tflops)
