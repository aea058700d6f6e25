"""kernels/_compile_ahead.py: which candidates the ahead-of-time pass compiles, once per key,
and that a failure there only costs time (CPU; the GPU speed-up is measured by the runner's
first-call seconds, runs.jsonl)."""

from __future__ import annotations

import warnings

import pytest
import triton
from triton.runtime.autotuner import Autotuner

from kernels import _compile_ahead as ca
from kernels import fused_gradgrad


class FakeJit:
    __name__ = "fake_kernel"

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def warmup(self, *args, grid, **kwargs):
        if self.fail:
            raise RuntimeError("no driver")
        self.calls.append((args, grid, kwargs))


def fake_tuner(fn, configs):
    tuner = object.__new__(ca.CompileAheadAutotuner)  # no Triton constructor: no kernel
    tuner.fn, tuner.configs, tuner.nargs = fn, configs, None
    tuner.arg_names, tuner.keys = ["x", "n", "BLOCK_D"], ["n", "BLOCK_D"]
    # prune as kernels/tuning.py does: by a keyword argument
    tuner.prune_configs = lambda kw: [c for c in configs if c.kwargs["BLOCK_M"] <= kw["BLOCK_D"]]
    return tuner


CONFIGS = [triton.Config({"BLOCK_M": m}, num_warps=4, num_stages=2) for m in (32, 64, 128)]


def test_every_pruned_candidate_compiles_with_the_launch_grid_and_no_launch():
    fn = FakeJit()
    grid = (4, 1)
    n = ca.compile_candidates(
        fake_tuner(fn, CONFIGS), ("x", 7), {"grid": grid, "warmup": False, "BLOCK_D": 64}, 4
    )
    assert n == 2  # BLOCK_M 128 pruned
    assert [c[2]["BLOCK_M"] for c in fn.calls] == [32, 64]
    assert all(args == ("x", 7) and g == grid for args, g, _ in fn.calls)
    assert all("warmup" not in kw and kw["num_stages"] == 2 for *_, kw in fn.calls)


def test_nothing_to_do_for_one_candidate_or_one_thread():
    fn = FakeJit()
    kw = {"grid": (1,), "warmup": False, "BLOCK_D": 32}
    assert ca.compile_candidates(fake_tuner(fn, CONFIGS), ("x", 7), kw, 8) == 0  # one left
    kw["BLOCK_D"] = 128
    assert ca.compile_candidates(fake_tuner(fn, CONFIGS), ("x", 7), kw, 1) == 0
    assert fn.calls == []


def test_a_failed_pass_warns_and_leaves_compiling_to_the_autotuner():
    tuner = fake_tuner(FakeJit(fail=True), CONFIGS)
    with pytest.warns(UserWarning, match="fake_kernel.*RuntimeError: no driver.*one by one"):
        n = ca.compile_candidates(tuner, ("x", 7), {"grid": (1,), "BLOCK_D": 128}, 4)
    assert n == 0 and tuner.nargs is None


def test_the_pass_runs_once_per_tuning_key(monkeypatch):
    runs = []
    monkeypatch.setattr(Autotuner, "run", lambda self, *a, **kw: runs.append(kw["n"]))
    monkeypatch.setenv(ca.THREADS_ENV, "4")
    fn = FakeJit()
    tuner = fake_tuner(fn, CONFIGS)
    for n in (7, 7, 9, 7):
        tuner.run("x", grid=(1,), warmup=False, n=n, BLOCK_D=128)
    assert runs == [7, 7, 9, 7]  # the autotuner itself runs every time
    assert len(fn.calls) == 2 * len(CONFIGS)  # keys 7 and 9, three candidates each


def test_thread_count_from_the_environment():
    assert ca.compile_threads({ca.THREADS_ENV: "3"}) == 3
    assert ca.compile_threads({ca.THREADS_ENV: "0"}) == 1  # off
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert ca.compile_threads({ca.THREADS_ENV: "many"}) == 1
    assert "no integer" in str(seen[0].message)
    assert 1 <= ca.compile_threads({}) <= ca.MAX_DEFAULT_THREADS


def test_the_package_kernels_compile_ahead():
    # Under the interpreter each table has one config, so the pass never starts there; on a
    # GPU the kernels are CompileAheadAutotuners (Triton >= 3.5).
    for kernel in fused_gradgrad.AUTOTUNED.values():
        assert isinstance(kernel, Autotuner)
        if ca.AsyncCompileMode is not None:
            assert type(kernel) is ca.CompileAheadAutotuner
