"""The asv suite and its runner: the asv classes, benchmark selection, asv end to end.

CPU only, except the ``gpu``-marked case. The asv runs use the CPU preset (run_commit's
own path: existing environment, --set-commit-hash, pinned machine, forkserver) into
temporary folders; BENCH_SUITE_REP_MS shortens the timing loops. What the classes
measure with is tested in tests/test_harness.py.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import itertools
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench_suite import base, bench_backward, bench_forward, bench_gradgrad
from harness import flops, grid, measure, parity
from runner import asv_process, asv_run, progress

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {"forward": bench_forward, "backward": bench_backward, "gradgrad": bench_gradgrad}
# No TFLOP/s track (issue 15 item 3): asv reads a track as lower-is-better; the reports
# derive it from ms (reports/derived.py).
METRICS = ("ms", "peak_mib", "parity", "host_ms", "graph_ms")
UNITS = ("ms", "MiB", "ratio", "host ms", "graph ms")
QUICK_ENV = {"BENCH_SUITE_REP_MS": "5"}


# --- the asv classes ------------------------------------------------------------------


def test_every_file_has_every_preset_with_the_contract_params():
    for path, module in FAMILIES.items():
        for preset in grid.PRESETS.values():
            cls = getattr(module, preset.class_name)
            assert cls.param_names == ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]
            assert cls.params == grid.asv_params(preset.name, path)
            assert cls.path == path and cls.preset == preset.name
            assert "setup_cache" in vars(cls), "asv keys setup_cache by source line: own one"
            for metric, unit in zip(METRICS, UNITS, strict=True):
                assert getattr(cls, f"track_{metric}").unit == unit
            assert not [m for m in dir(cls) if m.startswith("track_") and "flops" in m]
            for cfg in preset.configs():  # every T and mask parses
                assert cfg.tq <= cfg.tk
    assert "sdpa" not in grid.PRESETS["seed"].modes_for("gradgrad")
    assert "sdpa" in grid.PRESETS["seed"].modes_for("backward")
    assert "flash" not in grid.PRESETS["seed"].modes_for("gradgrad")
    assert "flash" in grid.PRESETS["grid"].modes_for("forward")
    for preset in grid.PRESETS.values():  # asv needs at least one value on every axis
        for path in grid.PATHS:
            assert all(grid.asv_params(preset.name, path)), (preset.name, path)


def test_class_lookups_skip_fail_and_pass():
    cls = bench_backward.CPU
    key = (1, 2, "128", 64, "float32", "none")
    cache = {
        key + ("math",): measure.Record("ok", ms=1.5, tflops=0.1, peak_mib=None, parity=0.7),
        key + ("compiled",): measure.Record("fail", "parity 9 > 2", parity=9.0),
    }
    bench = cls()
    bench.setup(cache, *key, "math")
    assert bench.track_ms(cache, *key, "math") == 1.5
    assert bench.track_parity(cache, *key, "math") == 0.7
    with pytest.raises(base.SkipNotImplemented):  # no GPU memory counter on CPU
        bench.track_peak_mib(cache, *key, "math")
    with pytest.raises(base.SkipNotImplemented):  # CPU wall-clock already is host time
        bench.track_host_ms(cache, *key, "math")
    bench.setup(cache, *key, "compiled")
    with pytest.raises(RuntimeError, match="parity"):  # a wrong kernel is never timed
        bench.track_ms(cache, *key, "compiled")
    assert bench.track_parity(cache, *key, "compiled") == 9.0  # the evidence is kept
    skipped = {key + ("math",): measure.Record("skip", "out of memory")}
    with pytest.raises(NotImplementedError, match="out of memory"):
        bench.setup(skipped, *key, "math")
    with pytest.raises(NotImplementedError, match="no CUDA"):
        bench.setup({"unavailable": "no CUDA device"}, *key, "math")


def test_host_time_is_recorded_and_shown_where_there_is_one():
    key = (1, 2, "128", 64, "float32", "none", "math")
    rec = measure.Record("ok", ms=0.5, tflops=1.0, peak_mib=3.0, parity=0.7, host_ms=0.62)
    bench = bench_backward.CPU()
    bench.setup({key: rec}, *key)
    assert bench.track_host_ms({key: rec}, *key) == 0.62
    assert rec.line().startswith("0.5 ms (host 0.62 ms), ")
    assert "host" not in dataclasses.replace(rec, host_ms=None).line()


def test_graph_time_is_a_metric_of_its_own_that_skips_with_the_reason():
    key = (1, 2, "128", 64, "float32", "none", "fused")
    ok = measure.Record("ok", ms=1.6, tflops=1.0, peak_mib=3.0, parity=0.7, host_ms=1.5)
    cache = {
        key: dataclasses.replace(ok, graph_ms=0.66),
        key[:-1] + ("math",): dataclasses.replace(ok, graph_reason="capture failed: X"),
        key[:-1] + ("sdpa",): dataclasses.replace(ok, graph_reason="no CUDA"),
        key[:-1] + ("flash",): measure.Record("fail", "parity 9 > 2", parity=9.0),
    }
    bench = bench_backward.CPU()
    bench.setup(cache, *key)
    assert bench.track_graph_ms(cache, *key) == 0.66
    assert bench.track_ms(cache, *key) == 1.6  # the eager time stays what it was
    for mode, reason in (("math", "capture failed: X"), ("sdpa", "no CUDA")):
        bench.setup(cache, *key[:-1], mode)
        with pytest.raises(base.SkipNotImplemented, match=reason):
            bench.track_graph_ms(cache, *key[:-1], mode)
    bench.setup(cache, *key[:-1], "flash")
    with pytest.raises(RuntimeError, match="parity"):  # a wrong kernel: failed, as track_ms
        bench.track_graph_ms(cache, *key[:-1], "flash")


_DISCOVER = r"""
import io, json, sys
from asv_runner.discovery import list_benchmarks
out = io.StringIO()
list_benchmarks(sys.argv[1], out)
print(json.dumps({b["name"]: b for b in json.loads(out.getvalue())}))
"""


def test_graph_time_adds_benchmarks_and_changes_no_committed_version():
    """asv sets a result of another version aside (bench_suite/base.py): every benchmark in
    the committed results/benchmarks.json keeps its name, params, unit and version; the
    track_graph_ms benchmarks are new, one per class, with track_ms's params."""
    proc = subprocess.run(
        [sys.executable, "-c", _DISCOVER, str(REPO / "bench_suite")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    committed = json.loads((REPO / "results" / "benchmarks.json").read_text())
    committed = {k: v for k, v in committed.items() if isinstance(v, dict)}
    assert committed
    for name, old in committed.items():
        assert name in found, name
        for field in ("params", "param_names", "unit", "version", "type"):
            assert found[name][field] == old[field], (name, field)
    graph = {n for n in found if n.endswith(".track_graph_ms")}
    assert len(graph) == len(grid.PATHS) * len(grid.PRESETS)
    peak = {"bench_peak.Peak.track_ms"}  # the card's ceilings (issue 17): new too
    assert set(found) - set(committed) <= graph | peak  # nothing else new, nothing renamed
    assert found["bench_peak.Peak.track_ms"]["unit"] == "ms"
    assert found["bench_peak.Peak.track_ms"]["param_names"] == ["op"]
    assert found["bench_peak.Peak.track_ms"]["params"] == [[repr(op) for op in flops.PEAK_OPS]]
    for name in graph:
        assert found[name]["unit"] == "graph ms"
        assert found[name]["params"] == found[name.replace("_graph_ms", "_ms")]["params"]


# --- runner: names, grids, regexes ----------------------------------------------------


def test_bench_regex_selects_classes_by_grid():
    names = [
        f"bench_{f}.{p.class_name}.track_{m}"
        for f in grid.PATHS
        for p in grid.PRESETS.values()
        for m in METRICS
    ]

    names.append("bench_peak.Peak.track_ms")  # the card's ceilings: every GPU run

    def picked(regex):
        return {n.split(".")[1] for n in names if re.search(regex, n)}

    gpu = {"Seed", "TTT", "Long", "Grid", "Short"}
    assert picked(asv_run.bench_regex("gpu")) == gpu | {"Peak"}
    assert picked(asv_run.bench_regex("gpu", peak=False)) == gpu
    assert picked(asv_run.bench_regex("cpu")) == {"CPU"}
    assert picked(asv_run.bench_regex("gpu", ["seed", "TTT"])) == {"Seed", "TTT", "Peak"}
    assert picked(asv_run.bench_regex("gpu", ["short"])) == {"Short", "Peak"}
    assert all(re.search(asv_run.bench_regex("cpu"), n) for n in names if ".CPU." in n)
    with pytest.raises(ValueError, match="not in the gpu grid"):
        asv_run.bench_regex("gpu", ["cpu"])
    with pytest.raises(ValueError, match="grid"):
        asv_run.bench_regex("tpu")


def test_preset_chunks_are_one_asv_run_per_preset():
    chunks = asv_run.preset_chunks("gpu")
    assert [label for label, _ in chunks] == list(grid.GRIDS["gpu"])
    for i, (label, regex) in enumerate(chunks):  # the card's ceilings in the first only
        assert regex == asv_run.bench_regex("gpu", [label], peak=i == 0)
    peak = "bench_peak.Peak.track_ms(" + "'matmul_bf16_8192')"
    assert [bool(re.search(regex, peak)) for _, regex in chunks] == [True] + [False] * 4
    two = asv_run.preset_chunks("gpu", ["TTT", "seed"])
    assert [label for label, _ in two] == ["ttt", "seed"]
    assert [bool(re.search(regex, peak)) for _, regex in two] == [True, False]
    assert not any(re.search(regex, peak) for _, regex in asv_run.preset_chunks("cpu"))
    with pytest.raises(ValueError, match="not in the gpu grid"):
        asv_run.preset_chunks("gpu", ["cpu"])


# --- asv itself -----------------------------------------------------------------------


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


def asv_result_rows(result_json) -> list[dict]:
    """The test's own look into an asv result file: one row per combination and metric,
    value a float, "skipped" (asv's NaN) or "failed" (asv's null)."""
    data = json.loads(Path(result_json).read_text())
    rows = []
    for name, entry in data["results"].items():
        family, klass, metric = re.fullmatch(r"bench_(\w+)\.(\w+)\.track_(\w+)", name).groups()
        fields = dict(zip(data["result_columns"], entry))
        axes = [[json.loads(v.replace("'", '"')) for v in axis] for axis in fields["params"]]
        combos = list(itertools.product(*axes))
        values = fields["result"]
        if not isinstance(values, list):  # one null when every combination failed
            values = [values] * len(combos)
        for combo, value in zip(combos, values):
            if value is None:
                value = "failed"
            elif isinstance(value, float) and math.isnan(value):
                value = "skipped"
            row = dict(zip(grid.PARAM_NAMES, combo))
            row.update(family=family, preset=klass, metric=metric, value=value)
            rows.append(row)
    return rows


def test_asv_run_cpu_end_to_end(tmp_path, capfd):
    env = dict(os.environ, **QUICK_ENV)
    events: list[dict] = []
    result = asv_run.run_commit(
        "HEAD", machine="pytest-cpu", results_dir=tmp_path, grid="cpu", env=env, events=events
    )
    out = capfd.readouterr().out
    assert result.parent == tmp_path / "pytest-cpu"
    data = json.loads(result.read_text())
    assert data["version"] == 2 and result.name.startswith(data["commit_hash"][:8] + "-existing-")
    expected = {f"bench_{f}.CPU.track_{m}" for f in grid.PATHS for m in METRICS}
    assert set(data["results"]) == expected
    machine = json.loads((tmp_path / "pytest-cpu" / "machine.json").read_text())
    # The installed distribution's version (a CUDA wheel's torch.__version__ may carry a
    # local "+cu130" that its metadata lacks: seen on the lent H100).
    assert machine["machine"] == "pytest-cpu"
    assert machine["torch"] == importlib.metadata.version("torch")
    assert machine["where"] == "local" and machine["python_version"] == platform.python_version()
    assert data["params"]["where"] == "local"  # asv copies the machine file into params
    assert (tmp_path / "benchmarks.json").is_file()
    # the noise of every CPU timing in asv's stats columns (runner/noise.py): 99% interval
    # of the median around it, quartiles, n; host/graph time: skipped on a CPU, no stats
    cols = {c: i for i, c in enumerate(data["result_columns"])}
    for f in grid.PATHS:
        row = data["results"][f"bench_{f}.CPU.track_ms"]
        stats = {k: row[cols[f"stats_{k}"]] for k in ("ci_99_a", "ci_99_b", "q_25", "repeat")}
        for i, value in enumerate(row[cols["result"]]):
            if isinstance(value, float) and stats["repeat"][i] and stats["repeat"][i] > 1:
                assert stats["ci_99_a"][i] <= value <= stats["ci_99_b"][i]
        assert any(n and n > 1 for n in stats["repeat"])
        for metric in ("host_ms", "graph_ms"):
            assert len(data["results"][f"bench_{f}.CPU.track_{metric}"]) <= cols["stats_ci_99_a"]

    rows = asv_result_rows(result)
    n_params = {
        f: len(grid.preset_configs("cpu")) * len(grid.PRESETS["cpu"].modes_for(f))
        for f in grid.PATHS
    }
    assert len(rows) == len(METRICS) * sum(n_params.values())
    by = {(r["family"], r["metric"], r["T"], r["mask"], r["bwd_mode"]): r["value"] for r in rows}
    for f in grid.PATHS:
        for cfg in grid.preset_configs("cpu"):
            ms = by[(f, "ms", cfg.T, cfg.mask, "math")]
            assert isinstance(ms, float) and ms > 0
            assert by[(f, "parity", cfg.T, cfg.mask, "math")] <= parity.PARITY_LIMIT
            assert by[(f, "peak_mib", cfg.T, cfg.mask, "math")] == "skipped"  # no CPU counter
            assert by[(f, "host_ms", cfg.T, cfg.mask, "math")] == "skipped"  # wall clock is
            assert by[(f, "graph_ms", cfg.T, cfg.mask, "math")] == "skipped"  # no CUDA
    # the progress lines streamed while asv ran, and the kernels came from this checkout
    assert f"kernels from {REPO / 'kernels'}" in out
    assert "asv wall time" in out
    progress.print_table(events)  # the runner's table, built from the suite's records
    table = capfd.readouterr().out
    assert "forward CPU B1 H2 T128 D64 float32 none" in table and "compiled" in table


def test_an_interrupted_run_keeps_the_parts_that_finished(tmp_path, monkeypatch, capfd):
    """Two asv runs merge into the commit's one result file; Ctrl-C in the third keeps both."""
    parts = [
        (f"cpu-{family}", rf"^bench_{family}\.CPU\.track_") for family in grid.PATHS
    ]  # forward, backward, gradgrad: three asv runs
    monkeypatch.setattr(asv_run, "preset_chunks", lambda grid, presets=None: parts)
    real_run = asv_process.subprocess.run  # asv is started there (runner/asv_process.py)
    asv_runs = []

    def run(cmd, *args, **kwargs):
        if "--bench" in cmd:
            asv_runs.append(cmd[cmd.index("--bench") + 1])
            if len(asv_runs) == 3:
                raise KeyboardInterrupt
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(asv_process.subprocess, "run", run)
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
    # what the run spent is recorded too, marked interrupted (runs.jsonl, runner/costs.py)
    (line,) = (tmp_path / "pytest-cpu" / "runs.jsonl").read_text().splitlines()
    cost = json.loads(line)
    assert cost["interrupted"] is True and cost["asv_runs"] == 3
    assert cost["presets"][:1] == ["cpu"] and cost["wall_s"] > 0


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
    # good~1..bad must hold exactly good and bad, whatever HEAD is (a merge commit's
    # first-parent range would also hold the merged branch's commits)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "good")
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
    rows = asv_result_rows(files[bad[:8]])
    assert len(rows) == len(grid.preset_configs("cpu")) and {r["value"] for r in rows} == {"failed"}
    assert not list((clone / ".asv" / "worktrees").iterdir())  # worktrees cleaned up


# --- GPU: one real preset -------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("path", grid.PATHS)
def test_seed_preset_on_the_gpu(path):
    records = measure.measure_preset("seed", path)
    assert "unavailable" not in records
    for key, rec in records.items():
        mode = key[-1]
        if mode in ("math", "sdpa"):
            assert rec.status == "ok", (key, rec)
        assert rec.status in ("ok", "skip"), (key, rec)  # a failure is a kernel bug
        if rec.status == "ok":
            assert rec.ms > 0 and rec.peak_mib > 0 and rec.parity <= parity.PARITY_LIMIT
            assert 0 < rec.host_ms < 100 * rec.ms  # measured: a launch takes microseconds
            assert math.isfinite(rec.tflops)
            assert rec.ms_summary["n"] >= 5 and rec.host_ms_summary["n"] >= 5
            assert rec.graph_ms is not None or rec.graph_reason, (key, rec)
            if mode in ("fused", "sdpa", "flash"):  # all captured on the H200, 2026-12-01
                assert rec.graph_ms is not None, (key, rec.graph_reason)
                assert 0 < rec.graph_ms < 1.2 * rec.ms, (key, rec.graph_ms, rec.ms)
                assert rec.graph_ms == rec.graph_ms_summary["median"]
