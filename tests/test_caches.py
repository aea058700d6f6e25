"""Issue 20's run-time cuts, CPU and offline: Triton's cache keying (runner/caches.py), the
records a run's measuring process hands to asv (harness/records.py, harness/worker.py,
runner/measurer.py, runner/asv_inproc.py), and the runner's use of them.

The reference cache's keys and corrupt entries are tests/test_refcache.py's; the Modal
Volume's caches are tested there too.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from bench_suite import bench_peak
from harness import flops, grid, measure, peak, records, worker
from runner import asv_run, caches, costs, shards
from runner.measurer import Measurer

REPO = Path(__file__).resolve().parents[1]


# --- Triton's cache: one folder per Triton version and card ---------------------------


def test_the_triton_folder_is_keyed_by_triton_version_and_card(tmp_path):
    h100 = caches.triton_cache_dir(tmp_path, "3.6.0", "NVIDIA H100 80GB HBM3")
    assert h100 == tmp_path / "3.6.0-NVIDIA-H100-80GB-HBM3"
    assert caches.triton_cache_dir(tmp_path, "3.6.0", "NVIDIA H100 80GB HBM3") == h100
    assert caches.triton_cache_dir(tmp_path, "3.7.0", "NVIDIA H100 80GB HBM3") != h100
    # both sm_90: Triton's own key (the target is the architecture) would share tunings
    assert caches.triton_cache_dir(tmp_path, "3.6.0", "NVIDIA H200") != h100


def test_a_run_gets_the_folder_of_its_machine_file_unless_the_user_set_one(tmp_path):
    info = {"triton": "3.6.0", "gpu": "NVIDIA H200", "arch": "x86_64"}
    got = caches.run_triton_dir({}, info, root=tmp_path)
    assert got == str(tmp_path / "3.6.0-NVIDIA-H200")
    assert caches.run_triton_dir({"TRITON_CACHE_DIR": "/mine"}, info, root=tmp_path) == "/mine"
    cpu = caches.run_triton_dir({}, {"triton": "3.9.0", "gpu": "-", "arch": "x86_64"}, tmp_path)
    assert cpu == str(tmp_path / "3.9.0-cpu-x86_64")


# Every autotuned kernel's JITFunction.cache_key: the part of Triton's compile and autotune
# keys that comes from our code (the rest: Triton's own files, the target, the options).
_KERNEL_KEYS = """
import json, kernels.forward as f, kernels.fused_backward as b, kernels.fused_gradgrad as g
from triton.runtime.jit import JITFunction
def unwrap(k):
    while not isinstance(k, JITFunction):
        k = k.fn
    return k
print(json.dumps({f"{m.__name__}.{n}": unwrap(k).cache_key
                  for m in (f, b, g) for n, k in m.AUTOTUNED.items()}))
"""


def kernel_keys(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the GPU's path
    env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [sys.executable, "-c", _KERNEL_KEYS], cwd=tree, env=env, capture_output=True,
        text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def copy_kernels(dest: Path) -> Path:
    shutil.copytree(REPO / "kernels", dest / "kernels", ignore=shutil.ignore_patterns("__py*"))
    return dest


def test_worktrees_share_triton_keys_and_a_kernel_edit_misses(tmp_path):
    """make bench-history's worktrees: the same kernels under other folders have the same
    keys (no path enters them), so the second commit compiles and tunes nothing; an edit
    of a kernel, or of a jit helper it calls, changes that kernel's key."""
    a = kernel_keys(copy_kernels(tmp_path / "a"))
    b = kernel_keys(copy_kernels(tmp_path / "deeper" / "worktrees" / "b"))
    assert len(a) == 5 and a == b
    edited = copy_kernels(tmp_path / "c")
    fwd = edited / "kernels" / "forward.py"
    text = fwd.read_text()
    assert text.count("/ 1.4426950408889634") == 1
    fwd.write_text(text.replace("/ 1.4426950408889634", "* 0.6931471805599453"))
    c = kernel_keys(edited)
    assert c["kernels.forward.forward"] != a["kernels.forward.forward"]
    assert {k: v for k, v in c.items() if "forward.forward" not in k} == {
        k: v for k, v in a.items() if "forward.forward" not in k
    }
    helper = copy_kernels(tmp_path / "d")
    common = helper / "kernels" / "_triton_common.py"
    jit_helpers = common.read_text()
    if "@triton.jit" in jit_helpers:  # a helper every kernel calls (mm, visible, ...)
        common.write_text(jit_helpers.replace("@triton.jit\n", "@triton.jit\n# edited\n", 1))
        d = kernel_keys(helper)
        assert d != a


def triton_entry(root: Path, name: str, files: dict[str, bytes]) -> Path:
    entry = root / name
    entry.mkdir(parents=True)
    for fname, data in files.items():
        (entry / fname).write_bytes(data)
    return entry


def test_a_corrupt_triton_entry_is_removed_with_a_warning(tmp_path):
    good = triton_entry(tmp_path, "GOOD", {"k.autotune.json": b'{"key": [], "configs_timings": []}',
                                           "k.cubin": b"\x7fELF"})  # fmt: skip
    cut = triton_entry(tmp_path, "CUT", {"k.autotune.json": b'{"key": [1, 2'})
    meta = triton_entry(tmp_path, "META", {"k.json": b"\x00\x00", "k.cubin": b"\x7fELF"})
    said: list[str] = []
    removed = caches.scrub_triton_dir(tmp_path, say=said.append)
    assert sorted(removed) == sorted([cut, meta])
    assert good.is_dir() and not cut.exists() and not meta.exists()
    assert len(said) == 2 and all("compiled or tuned again" in s for s in said)
    assert caches.scrub_triton_dir(tmp_path / "missing") == []  # no folder: nothing to do


# --- records: measured once, read by the setup_caches ---------------------------------


def fake_results(preset="cpu", path="forward"):
    cfg = grid.preset_configs(preset)[0]
    mode = grid.PRESETS[preset].modes_for(path)[0]
    key = tuple(getattr(cfg, n) for n in grid.PARAM_NAMES[:-1]) + (mode,)
    return {key: measure.Record("ok", ms=1.5, tflops=2.0, parity=0.9)}


def test_records_round_trip_and_a_failure_is_raised_again(tmp_path):
    results = fake_results()
    records.write(tmp_path, "cpu", "forward", results=results)
    got = records.recorded("cpu", "forward", root=tmp_path)
    assert got == results
    assert records.recorded("cpu", "backward", root=tmp_path) is None  # not measured
    records.write(tmp_path, "cpu", "gradgrad", failed="RuntimeError: broken here")
    with pytest.raises(records.RecordedFailure, match="broken here"):
        records.recorded("cpu", "gradgrad", root=tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "other_tree", "other_params", "other_class"])
def test_unusable_records_are_ignored_with_a_warning(tmp_path, damage):
    file = records.write(tmp_path, "cpu", "forward", results=fake_results())
    data = pickle.loads(file.read_bytes())
    if damage == "garbage":
        file.write_bytes(b"\x80\x05 not a pickle")
    else:
        if damage == "other_tree":
            data["kernels_dir"] = "/elsewhere/kernels"
        elif damage == "other_params":
            data["params"] = [["other"]]
        else:
            data["path"] = "backward"
        file.write_bytes(pickle.dumps(data))
    with pytest.warns(UserWarning, match="measuring"):
        assert records.recorded("cpu", "forward", root=tmp_path) is None


def test_the_setup_cache_returns_the_records_without_measuring(tmp_path, monkeypatch):
    results = fake_results("cpu", "backward")
    records.write(tmp_path, "cpu", "backward", results=results)
    monkeypatch.setenv(records.RECORDS_ENV, str(tmp_path))

    def no_measuring(*args):
        raise AssertionError("measured although the records were there")

    monkeypatch.setattr(measure, "_measure_preset", no_measuring)
    assert measure.measure_preset("cpu", "backward") == results
    # without records (or with explicit arguments) it measures, as a plain asv run does
    monkeypatch.delenv(records.RECORDS_ENV)
    with pytest.raises(AssertionError, match="measured"):
        measure.measure_preset("cpu", "backward")


def test_class_of_maps_asv_names_to_preset_and_path():
    assert records.class_of("bench_forward.Seed.track_ms") == ("seed", "forward")
    assert records.class_of("bench_suite.bench_gradgrad.TTT.track_graph_ms") == ("ttt", "gradgrad")
    assert records.class_of("bench_peak.Seed.track_peak") is None  # not a preset class
    assert records.class_of("bench_peak.Peak.track_ms") == records.PEAK  # the card's ceilings
    assert records.class_of("bench_suite.bench_peak.Peak.track_ms") == records.PEAK
    assert records.class_of("bench_forward.Nope.track_ms") is None


def test_chunk_classes_are_what_the_regex_selects():
    assert asv_run.chunk_classes(asv_run.bench_regex("gpu", ["ttt"])) == [
        ("ttt", p) for p in grid.PATHS
    ]
    assert asv_run.chunk_classes(r"^bench_gradgrad\.CPU\.track_ms") == [("cpu", "gradgrad")]
    assert asv_run.chunk_classes(r"^bench_peak\.") == []


# --- the measuring process -----------------------------------------------------------


class Answers:
    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.append(text)

    def flush(self):
        pass


def test_the_worker_measures_each_class_once_and_stops_after_a_failure(tmp_path, monkeypatch):
    calls = []

    def fake_measure(preset, path):
        calls.append((preset, path))
        if path == "backward":
            raise RuntimeError("CUDA error: an illegal memory access")
        return fake_results(preset, path)

    monkeypatch.setattr(measure, "measure_preset", fake_measure)
    answers = Answers()
    request = json.dumps(
        {"classes": [["cpu", "forward"], ["cpu", "backward"], ["cpu", "gradgrad"]]}
    )
    code = worker.serve(str(tmp_path), iter([request + "\n", request + "\n"]), answers)
    assert code == worker.FAILED_EXIT  # a fresh process for the next request
    assert calls == [("cpu", "forward"), ("cpu", "backward")]  # not gradgrad, not twice
    assert [json.loads(x) for x in answers.lines] == [
        {"done": [["cpu", "forward"]], "failed": [["cpu", "backward"]]}
    ]
    assert records.recorded("cpu", "forward", root=tmp_path) is not None
    with pytest.raises(records.RecordedFailure, match="illegal memory access"):
        records.recorded("cpu", "backward", root=tmp_path)
    assert not records.available("cpu", "gradgrad", root=tmp_path)  # asv measures it in place


def test_the_measurer_restarts_a_dead_worker_and_says_so(tmp_path):
    """A real `python -m harness.worker` for the cpu preset's unavailable-free paths would
    take a minute; a tree whose harness.worker exits at once stands for a crash."""
    tree = tmp_path / "tree"
    (tree / "harness").mkdir(parents=True)
    (tree / "harness" / "__init__.py").write_text("")
    (tree / "harness" / "records.py").write_text("")
    (tree / "harness" / "worker.py").write_text(
        "import sys; print('boom', file=sys.stderr); sys.exit(9)\n"
    )
    said: list[str] = []
    env = dict(os.environ, PYTHONPATH=str(tree))
    with Measurer(
        sys.executable, tree, env, tmp_path / "rec", tmp_path / "log", say=said.append
    ) as m:
        assert m.measure([("cpu", "forward")]) == ([], [])
        assert m.measure([("cpu", "backward")]) == ([], [])
        assert m.started == 2
    assert len(said) == 2 and "died (exit 9)" in said[0] and "boom" in said[0]


def test_a_finished_measurer_exits_without_being_waited_for_and_is_reaped(tmp_path):
    """finish(): EOF, no wait (its teardown overlaps the last asv run); close() reaps it; a
    later request gets a fresh process. The stand-in worker answers, and takes 2 s to exit."""
    tree = tmp_path / "tree"
    (tree / "harness").mkdir(parents=True)
    (tree / "harness" / "__init__.py").write_text("")
    (tree / "harness" / "records.py").write_text("")
    (tree / "harness" / "worker.py").write_text(
        "import sys, time\n"
        "for line in sys.stdin:\n"
        '    print(\'{"done": [], "failed": []}\', flush=True)\n'
        "time.sleep(2)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tree))
    m = Measurer(sys.executable, tree, env, tmp_path / "rec", tmp_path / "log")
    assert m.measure([("cpu", "forward")]) == ([], [])
    first = m.proc
    t0 = time.monotonic()
    m.finish()
    assert time.monotonic() - t0 < 1.0 and first.poll() is None  # told, not waited for
    assert m.measure([("cpu", "backward")]) == ([], []) and m.started == 2 and m.proc is not first
    m.close()
    assert first.returncode == 0 and m.proc is None and not m._exiting


def test_the_measuring_process_is_finished_before_the_last_asv_run(tmp_path, monkeypatch):
    calls: list = []

    class FakeMeasurer:
        started = 1

        def measure(self, classes, peak=False):
            calls.append(("measure", [p for p, _ in classes][:1], peak))

        def finish(self):
            calls.append("finish")

        def close(self):
            calls.append("close")

    monkeypatch.setattr(asv_run, "_measurer", lambda *a: FakeMeasurer())
    monkeypatch.setattr(asv_run, "_run_asv", lambda cmd, cwd, env: calls.append("asv") or 0)
    monkeypatch.setattr(asv_run, "_merge_private", lambda *a: [])
    monkeypatch.setattr(asv_run, "_result_file", lambda written, sha, folder: folder / sha)
    asv_run.run_commit(
        "HEAD", machine="pytest-cpu", results_dir=tmp_path, grid="gpu", presets=["seed", "short"]
    )
    assert calls == [
        ("measure", ["seed"], True),  # the card's ceilings with the first preset
        "asv",
        ("measure", ["short"], False),
        "finish",  # no more requests: it exits while asv reads the last preset
        "asv",
        "close",
    ]


def test_the_cost_record_counts_asv_runs_and_measuring_processes():
    events = [{"event": "run_info", "asv_runs": 5, "measuring_processes": 1}]
    rec = costs.build_record(events, commit="abc", machine="m", wall_s=1.0)
    assert rec["asv_runs"] == 5 and rec["measuring_processes"] == 1
    assert costs.build_record([], commit="abc", machine="m", wall_s=1.0)["asv_runs"] is None


def test_setup_cache_durations_become_the_measuring_time(tmp_path):
    private = tmp_path / "private"
    (private / "m").mkdir(parents=True)
    (private / "benchmarks.json").write_text(json.dumps({
        "bench_forward.CPU.track_ms": {"setup_cache_key": "bench_forward:57"},
        "bench_backward.CPU.track_ms": {"setup_cache_key": "bench_backward:57"},
        "bench_peak.Peak.track_ms": {"setup_cache_key": "bench_peak:22"},
        "version": 2,
    }))  # fmt: skip
    result = private / "m" / "abc-existing-py3.json"
    fwd, bwd = "<setup_cache bench_forward:57>", "<setup_cache bench_backward:57>"
    card = "<setup_cache bench_peak:22>"
    result.write_text(json.dumps({"durations": {fwd: 0.01, bwd: 50.0, card: 0.002}}))
    events = [
        {"event": "class_done", "tag": "forward/cpu", "total_s": 12.5},
        {"event": "class_done", "tag": "backward/cpu", "total_s": 30.0},  # measured in place
        {"event": "peak_done", "tag": "peak", "total_s": 1.6},  # the ceilings, in the worker
    ]
    costs.setup_cache_durations(private, events)
    durations = json.loads(result.read_text())["durations"]
    assert durations == {fwd: 12.5, bwd: 50.0, card: 1.6}


def test_a_cpu_run_measures_in_one_process_and_forks_no_benchmark(tmp_path, capfd):
    """The whole CPU grid through the runner: one measuring process, every setup_cache and
    track_* served in asv's process (the forkserver never starts), one Triton folder."""
    env = dict(os.environ, BENCH_SUITE_REP_MS="5", TRITON_CACHE_DIR=str(tmp_path / "triton"))
    events: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asv_run.run_commit(
            "HEAD", machine="pytest-cpu", results_dir=tmp_path, grid="cpu", env=env, events=events
        )
    done = [e for e in events if e.get("event") == "class_done"]
    assert len(done) == 3 and sum(1 for e in done if e.get("startup_s")) == 1
    starts = [e for e in events if e.get("event") == "class_start"]
    assert {e["caches"]["triton_dir"] for e in starts} == {str(tmp_path / "triton")}
    (line,) = (tmp_path / "pytest-cpu" / "runs.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["measuring_processes"] == 1 and rec["asv_runs"] == 1 and rec["classes"] == 3
    assert 0 < rec["asv_s"] < rec["process_asv_s"]  # asv's own share of the rest
    out = capfd.readouterr().out
    assert "asv: 3 classes read from the measured records in asv's process, 0 set up" in out


def test_history_gives_every_commit_the_same_triton_folder(tmp_path, monkeypatch):
    """make bench-history: each commit runs from its own worktree with one Triton folder
    (with the keys above: a commit that leaves kernels/ alone compiles and tunes nothing)."""
    seen = []

    def fake_asv(cmd, cwd, env):
        seen.append((Path(cwd), env[caches.TRITON_CACHE_ENV]))
        return 0

    monkeypatch.setattr(asv_run, "_run_asv", fake_asv)
    monkeypatch.setattr(asv_run, "_measurer", lambda *a: None)
    monkeypatch.setattr(asv_run, "_merge_private", lambda *a: [])
    monkeypatch.setattr(asv_run, "_result_file", lambda written, sha, folder: folder / sha)
    monkeypatch.setattr(asv_run.noise, "fill_results_dir", lambda *a: None)
    env = {k: v for k, v in os.environ.items() if k != caches.TRITON_CACHE_ENV}
    asv_run.run_history(
        "HEAD~2..HEAD", machine="pytest-cpu", results_dir=tmp_path, grid="cpu", env=env
    )
    # HEAD~2..HEAD holds 2 commits, or more when HEAD merges a branch: one worktree each
    assert len(seen) >= 2 and len({cwd for cwd, _ in seen}) == len(seen)
    assert len({folder for _, folder in seen}) == 1  # one Triton folder for every commit
    assert "3." in Path(seen[0][1]).name  # <triton>-<card>


def test_lookups_in_asvs_process_hash_each_benchmarks_source_once(monkeypatch):
    """The Benchmark a lookup builds (asv_runner's get_benchmark_from_name, as a child
    does) is the same with the memoized source hashing, and the source is read once."""
    from asv_runner import discovery
    from asv_runner.benchmarks import _base

    for name in ("get_source_code", "get_setup_cache_key", "code_fingerprint"):
        monkeypatch.setattr(_base, name, getattr(_base, name))  # restored afterwards
    root = str(REPO / "bench_suite")
    names = ["bench_forward.CPU.track_ms-3", "bench_gradgrad.CPU.track_parity-1"]

    def built():
        out = []
        for name in names:
            b = discovery.get_benchmark_from_name(root, name)
            out.append((b.name, b.version, b.version_alts, b.code, b.setup_cache_key, b.params,
                        b._current_params))  # fmt: skip
        return out

    plain = built()
    inproc = load_inproc()
    reads = []
    real = _base.get_source_code
    monkeypatch.setattr(_base, "get_source_code", lambda items: reads.append(1) or real(items))
    inproc.memoize_source_hashing()
    assert built() == plain and built() == plain
    assert len(reads) == len(names)  # once per benchmark, not once per lookup
    first, second = (discovery.get_benchmark_from_name(root, names[0]) for _ in range(2))
    assert first is not second and first.func.__self__ is not second.func.__self__  # fresh


def load_inproc():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_inproc_test", REPO / "runner/asv_inproc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the card's ceilings (bench_peak.Peak) in the measuring process ---------------------


def fake_peak() -> dict:
    op = next(iter(flops.PEAK_OPS))
    return {"device": "Fake GPU", op: {"ms": 1.4, "ms_summary": {"n": 30, "median": 1.4}}}


def test_the_worker_measures_the_ceilings_after_the_classes_when_asked(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(measure, "measure_preset", lambda *c: calls.append(c) or fake_results(*c))
    monkeypatch.setattr(peak, "measure", lambda: calls.append("peak") or fake_peak())
    answers = Answers()
    first = json.dumps({"classes": [["cpu", "forward"]], "peak": True})
    second = json.dumps({"classes": [["cpu", "backward"]]})  # no "peak": not again
    assert worker.serve(str(tmp_path), iter([first + "\n", second + "\n"]), answers) == 0
    assert calls == [("cpu", "forward"), "peak", ("cpu", "backward")]
    assert json.loads(answers.lines[0]) == {"done": [["cpu", "forward"], list(records.PEAK)],
                                            "failed": []}  # fmt: skip
    assert records.recorded(*records.PEAK, root=tmp_path) == fake_peak()


def test_a_failed_class_leaves_the_ceilings_to_asv_and_a_failed_ceiling_is_recorded(
    tmp_path, monkeypatch
):
    def broken(preset, path):
        raise RuntimeError("CUDA error: out of resources")

    monkeypatch.setattr(measure, "measure_preset", broken)
    request = json.dumps({"classes": [["cpu", "forward"]], "peak": True}) + "\n"
    assert worker.serve(str(tmp_path), iter([request]), Answers()) == worker.FAILED_EXIT
    assert not records.available(*records.PEAK, root=tmp_path)  # asv measures it in place

    def broken_peak():
        raise RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED")

    monkeypatch.setattr(peak, "measure", broken_peak)
    request = json.dumps({"classes": [], "peak": True}) + "\n"
    assert worker.serve(str(tmp_path), iter([request]), Answers()) == worker.FAILED_EXIT
    with pytest.raises(records.RecordedFailure, match="CUBLAS"):
        records.recorded(*records.PEAK, root=tmp_path)


def test_the_peak_setup_cache_returns_the_records_and_measures_without_them(tmp_path, monkeypatch):
    records.write(tmp_path, *records.PEAK, results=fake_peak())
    monkeypatch.setenv(records.RECORDS_ENV, str(tmp_path))
    assert bench_peak.Peak().setup_cache() == fake_peak()  # what asv's process runs
    # a plain asv run (no records folder) measures: on this CPU, "no CUDA"
    monkeypatch.delenv(records.RECORDS_ENV)
    if not _cuda():
        assert bench_peak.Peak().setup_cache() == {"unavailable": peak.NO_CUDA}
    # records for other ops (another PEAK_OPS) are not used
    data = pickle.loads(records.records_file(tmp_path, *records.PEAK).read_bytes())
    data["params"] = [["matmul_bf16_4096"]]
    records.records_file(tmp_path, *records.PEAK).write_bytes(pickle.dumps(data))
    with pytest.warns(UserWarning, match="other asv params"):
        assert records.recorded(*records.PEAK, root=tmp_path) is None


def test_the_runner_asks_for_the_ceilings_where_asv_reads_them():
    chunks = asv_run.preset_chunks("gpu")
    assert [asv_run.chunk_peak(regex) for _, regex in chunks] == [True] + [False] * 4
    assert not asv_run.chunk_peak(asv_run.bench_regex("cpu"))
    assert asv_run.chunk_peak(r"^bench_peak\.Peak\.track_")
    assert asv_run.chunk_peak(shards.units_regex([grid.PEAK_CLASS]))  # a shard's unit


def test_peak_is_read_in_asvs_process_with_the_same_results_as_measured_in_its_own(tmp_path, capfd):
    """The Peak benchmark alone through the runner and asv: served from the measuring
    process's records in asv's process (no process of its own imports torch for it), and
    the same benchmark, version and values as when asv measures it in its own process
    (BENCH_SUITE_WORKER=0, how it ran before)."""
    regex = r"^bench_peak\.Peak\.track_"
    got = {}
    for worker_on in ("1", "0"):
        env = dict(os.environ, **{asv_run.WORKER_ENV: worker_on})
        out_dir = tmp_path / worker_on
        result = asv_run.run_commit(
            "HEAD", machine="pytest-cpu", results_dir=out_dir, bench=regex, grid="cpu", env=env
        )
        data = json.loads(result.read_text())
        row = dict(zip(data["result_columns"], data["results"]["bench_peak.Peak.track_ms"]))
        meta = json.loads((out_dir / "benchmarks.json").read_text())["bench_peak.Peak.track_ms"]
        got[worker_on] = (row["params"], [repr(v) for v in row["result"]], meta)
        out = capfd.readouterr().out
        if worker_on == "1":
            assert "asv: 1 classes read from the measured records in asv's process, 0 set" in out
    assert got["1"] == got["0"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- one benchmark discovery per commit -------------------------------------------------

TINY_SUITE = """
import os
import sys

if "discover" in sys.argv:  # asv's discovery process: asv/benchmark.py discover DIR OUT
    with open(os.environ["TINY_DISCOVERIES"], "a") as f:
        f.write("discovered\\n")


class A:
    def track_a(self):
        return 1.0


class B:
    def track_b(self):
        return 2.0
"""


def test_a_commits_asv_runs_share_one_discovery_and_save_what_they_would_alone(
    tmp_path, monkeypatch, capfd
):
    """Two asv runs of one commit (one per preset, here one per class of a tiny suite):
    asv's discovery process runs once, the second run reads its list, and results/ holds
    both classes with the benchmarks.json a discovery of its own writes."""
    src = tmp_path / "tree"
    (src / "bench_suite").mkdir(parents=True)
    shutil.copy(REPO / "asv.conf.json", src / "asv.conf.json")
    (src / "bench_suite" / "__init__.py").write_text("")
    (src / "bench_suite" / "bench_tiny.py").write_text(TINY_SUITE)
    chunks = [("a", r"^bench_tiny\.A\."), ("b", r"^bench_tiny\.B\.")]
    monkeypatch.setattr(asv_run, "preset_chunks", lambda grid, presets=None: chunks)
    count = tmp_path / "discoveries"
    env = dict(os.environ, TINY_DISCOVERIES=str(count))
    out_dir = tmp_path / "results"
    result = asv_run.run_commit(
        "HEAD", machine="pytest-cpu", results_dir=out_dir, grid="cpu", env=env, worktree=src
    )
    assert count.read_text().splitlines() == ["discovered"]  # not once per asv run
    assert (
        "Discovering benchmarks: this commit's first asv run found them" in capfd.readouterr().out
    )
    data = json.loads(result.read_text())
    assert sorted(data["results"]) == ["bench_tiny.A.track_a", "bench_tiny.B.track_b"]
    # a single asv run with its own discovery writes the same benchmarks.json
    alone = tmp_path / "alone"
    asv_run.run_commit(
        "HEAD", machine="pytest-cpu", results_dir=alone, bench="^bench_tiny", env=env, worktree=src
    )
    assert count.read_text().splitlines() == ["discovered"] * 2
    shared = json.loads((out_dir / "benchmarks.json").read_text())
    assert shared == json.loads((alone / "benchmarks.json").read_text())
