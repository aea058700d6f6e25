"""Sharded runs (runner/shards.py, runner/merge.py, runner/local_gpus.py, modal_runner.py).

CPU and offline. Most tests drive a small throw-away asv project (a git repo with a
fake suite of the contract's shape: bench_<family>.py files, one class per preset) through
real `asv run`, so sharding, the shard folders, merging and asv reading the result back
are all exercised for real in a few seconds; the fake part is only what is measured. One
test runs the real suite's CPU grid through runner.asv_run when both exist.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from runner import git, local_gpus, merge, progress, shards

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
FAMILIES = ("bench_forward", "bench_backward", "bench_gradgrad")
PRESETS = ("CPU", "Seed")
FAKE_GRID_REGEX = r"^bench_\w+\.CPU\."

FAKE_BENCH = """
class {preset}:
    params = [[1, 2], ["float32"], ["math", "recompute"]]
    param_names = ["B", "dtype", "bwd_mode"]

    def setup_cache(self):
        # what the real suite measures here; fake numbers derived from the params
        return {{(b, m): {scale} * b * (1 + len(m)) for b in (1, 2) for m in ("math", "recompute")}}

    def track_ms(self, cache, B, dtype, bwd_mode):
        return cache[(B, bwd_mode)]

    track_ms.unit = "ms"

    def track_peak_mib(self, cache, B, dtype, bwd_mode):
        return 10.0 * B

    track_peak_mib.unit = "MiB"
"""


def fake_run_commit(
    commit="HEAD",
    *,
    machine,
    results_dir="results",
    bench=None,
    grid=None,
    python=sys.executable,
    env=None,
    worktree=None,
    extra_args=(),
    events=None,
):
    """runner.asv_run.run_commit's signature over the fake project (its repo in FAKE_ASV_REPO):
    passed to the code under test as a plain callable."""
    repo = Path(os.environ["FAKE_ASV_REPO"])
    results_dir = Path(results_dir).resolve()
    home = results_dir.parent / ".asvhome"  # one per shard: parallel shards never share it
    home.mkdir(parents=True, exist_ok=True)
    conf = json.loads((repo / "asv.conf.json").read_text())
    conf.update(
        repo=str(repo),
        results_dir=str(results_dir),
        benchmark_dir=str(repo / "fakebench"),
        html_dir=str(results_dir / "html"),
    )
    conf_path = results_dir.parent / "asv.conf.json"
    conf_path.write_text(json.dumps(conf))
    run_env = dict(env or os.environ, HOME=str(home))
    asv = [python, "-m", "asv"]
    subprocess.run(
        asv + ["machine", "--yes", "--machine", machine, "--config", str(conf_path)],
        env=run_env,
        check=True,
        capture_output=True,
    )
    cmd = asv + ["run", "--config", str(conf_path), "--machine", machine, "-E"]
    cmd += [f"existing:{python}", "--set-commit-hash", commit, "--launch-method", "forkserver"]
    cmd += ["--show-stderr"] + (["--bench", bench] if bench else [])
    slow = os.environ.get("FAKE_ASV_SLOW_UNIT")
    if slow and re.escape(slow) in bench:  # a shard that takes long: to interrupt
        time.sleep(60)
    subprocess.run(cmd + list(extra_args), env=run_env, check=True, cwd=repo)
    with open(os.environ["FAKE_ASV_CALLS"], "a") as f:  # which shards ran, on which device
        wt = str(worktree) if worktree else None
        record = {
            "bench": bench,
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "commit": commit,
            "worktree": wt,
            "worktree_checked_out": bool(wt) and (Path(wt) / "fakebench").is_dir(),
        }
        f.write(json.dumps(record) + "\n")
    if events is not None:  # what the real suite's progress file holds, one record
        config = {"B": 1, "H": 1, "T": "8", "D": 4, "dtype": "float32", "mask": "none"}
        record = {"status": "ok", "ms": 1.0, "tflops": 2.0, "parity": 0.5}
        events.append({"event": "record", "tag": "forward/cpu", "config": config,
                       "mode": "math", "record": record})  # fmt: skip
    return results_dir / machine


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """A git repo with a fake asv suite."""
    root = tmp_path_factory.mktemp("fake_asv")
    repo = root / "repo"
    suite = repo / "fakebench"
    suite.mkdir(parents=True)
    (suite / "__init__.py").write_text("")
    for i, family in enumerate(FAMILIES):
        body = "".join(FAKE_BENCH.format(preset=p, scale=i + 1) for p in PRESETS)
        (suite / f"{family}.py").write_text(textwrap.dedent(body))
    (repo / "asv.conf.json").write_text(
        json.dumps(
            {
                "version": 1,
                "project": "fake",
                "repo": ".",
                "environment_type": "existing",
                "benchmark_dir": "fakebench",
                "results_dir": "results",
                "html_dir": "html",
                "branches": ["main"],
            }
        )
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "fake suite"], check=True)
    commit = subprocess.run(
        git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    names = shards.list_benchmarks(suite)
    return {
        "root": root,
        "repo": repo,
        "suite": suite,
        "commit": commit,
        "names": names,
    }


@pytest.fixture
def fake_env(fake, tmp_path, monkeypatch):
    """Environment for the fake runner, in this process and in children."""
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_ASV_REPO", str(fake["repo"]))
    monkeypatch.setenv("FAKE_ASV_CALLS", str(calls))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return calls


def read_calls(calls: Path) -> list[dict]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def cpu_names(fake) -> set[str]:
    return {n for n in fake["names"] if re.search(FAKE_GRID_REGEX, n)}


def load_with_asv(path: Path, machine: str):
    from asv.results import Results

    return Results.load(str(path), machine_name=machine)


# --- sharding ---------------------------------------------------------------------------------


def test_fake_suite_names_follow_the_contract(fake):
    assert "bench_gradgrad.CPU.track_ms" in fake["names"]
    assert len(fake["names"]) == len(FAMILIES) * len(PRESETS) * 2


GPU_CLASSES = ("Seed", "TTT", "Long", "Grid", "Short")
ALL_UNITS = [f"{f}.{p}" for f in FAMILIES for p in (*GPU_CLASSES, "CPU")]
# Random subsets (seeded) plus the edges: one unit, all units, more shards than units.
UNIT_CASES = [(ALL_UNITS[:1], 1), (ALL_UNITS, 1), (ALL_UNITS, 8), (ALL_UNITS[:3], 20)] + [
    (rng.sample(ALL_UNITS, rng.randint(1, len(ALL_UNITS))), rng.randint(1, 20))
    for rng in [random.Random(0)]
    for _ in range(40)
]


@pytest.mark.parametrize("units,n_shards", UNIT_CASES)
def test_shards_cover_every_unit_exactly_once(units, n_shards):
    plan = shards.plan_shards(units, n_shards)
    assigned = [u for s in plan for u in s.units]
    assert sorted(assigned) == sorted(units)  # every unit, none twice
    assert len(plan) == min(n_shards, len(units)) and all(s.units for s in plan)
    # and each shard's regex selects exactly its own units' benchmarks
    names = [f"{u}.{m}" for u in units for m in ("track_ms", "track_tflops")]
    for shard in plan:
        regex = shards.units_regex(shard.units)
        assert {n for n in names if re.search(regex, n)} == {
            n for n in names if shards.unit_of(n) in shard.units
        }


def test_plan_puts_the_heaviest_unit_alone_and_is_deterministic():
    units = [f"{f}.{p}" for f in FAMILIES for p in GPU_CLASSES]
    plan = shards.plan_shards(units, 8)
    assert plan[0].units == ("bench_gradgrad.Long",)
    assert plan == shards.plan_shards(list(reversed(units)), 8)
    assert max(s.cost for s in plan) == shards.estimated_unit_cost("bench_gradgrad.Long")
    with pytest.raises(ValueError, match="n_shards"):
        shards.plan_shards(units, 0)


def test_every_preset_class_has_a_cost_estimate():
    from harness import grid  # standard library only at import time

    classes = {p.class_name for p in grid.PRESETS.values()}
    assert set(shards.COST_BY_PRESET) == classes
    assert {grid.PRESETS[p].class_name for p in grid.GRIDS["gpu"]} == set(GPU_CLASSES)


def test_measured_durations_replace_the_estimate(tmp_path):
    machine = "m"
    (tmp_path / machine).mkdir()
    row = lambda seconds: [[1.0], [], "v", 0, seconds]  # noqa: E731  (result..duration)
    (tmp_path / machine / "abcd1234-env.json").write_text(
        json.dumps(
            {
                "result_columns": ["result", "params", "version", "started_at", "duration"],
                "results": {
                    "bench_forward.Seed.track_ms": row(1.0),
                    "bench_gradgrad.Seed.track_ms": row(2.0),
                },
                "durations": {"<setup_cache bench_forward:3>": 100.0},
                "version": 2,
            }
        )
    )
    (tmp_path / "benchmarks.json").write_text(
        json.dumps(
            {"bench_forward.Seed.track_ms": {"setup_cache_key": "bench_forward:3"}, "version": 2}
        )
    )
    units = ["bench_forward.Seed", "bench_gradgrad.Seed"]
    assert shards.costs_for(units, tmp_path, machine) == {
        "bench_forward.Seed": 101.0,
        "bench_gradgrad.Seed": 2.0,
    }
    # one unit without a measurement: the whole table falls back to the estimate
    assert shards.costs_for(units + ["bench_backward.Seed"], tmp_path, machine) == {
        u: shards.estimated_unit_cost(u) for u in units + ["bench_backward.Seed"]
    }


def _result_file(path, started_at, durations, setup_caches):
    """An asv result file: ``durations`` name -> seconds, each row started at ``started_at``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "result_columns": ["result", "params", "version", "started_at", "duration"],
                "results": {
                    name: [[1.0], [], "v", started_at, seconds]
                    for name, seconds in durations.items()
                },
                "durations": {f"<setup_cache {k}>": v for k, v in setup_caches.items()},
                "version": 2,
            }
        )
    )


@pytest.fixture
def two_class_suite(tmp_path):
    (tmp_path / "benchmarks.json").write_text(
        json.dumps(
            {
                "bench_forward.Seed.track_ms": {"setup_cache_key": "bench_forward:3"},
                "bench_forward.TTT.track_ms": {"setup_cache_key": "bench_forward:9"},
                "version": 2,
            }
        )
    )
    return tmp_path


def test_each_unit_costs_what_its_newest_measurement_says(two_class_suite):
    root = two_class_suite
    seed, ttt = "bench_forward.Seed.track_ms", "bench_forward.TTT.track_ms"
    both = {"bench_forward:3": 10.0, "bench_forward:9": 30.0}
    # file names sort opposite to start times: the times decide, not the names
    _result_file(root / "m" / "ffff-env.json", 100, {seed: 1.0, ttt: 1.0}, both)
    _result_file(root / "m" / "0000-env.json", 200, {seed: 2.0}, {"bench_forward:3": 20.0})
    assert shards.measured_unit_costs(root, "m") == {
        "bench_forward.Seed": 22.0,  # the newer run of Seed alone
        "bench_forward.TTT": 31.0,  # still known from the older, complete run
    }


def test_a_unit_whose_setup_cache_was_renamed_is_not_measured(two_class_suite):
    root = two_class_suite
    seed, ttt = "bench_forward.Seed.track_ms", "bench_forward.TTT.track_ms"
    # measured when TTT's setup_cache sat on another line of the file
    _result_file(root / "m" / "a-env.json", 100, {seed: 1.0, ttt: 1.0}, {"bench_forward:3": 5.0})
    assert shards.measured_unit_costs(root, "m") == {"bench_forward.Seed": 6.0}


def test_a_first_multi_gpu_run_is_balanced_by_the_one_gpu_costs(two_class_suite):
    root = two_class_suite
    seed, ttt = "bench_forward.Seed.track_ms", "bench_forward.TTT.track_ms"
    both = {"bench_forward:3": 10.0, "bench_forward:9": 30.0}
    _result_file(root / "m" / "a-env.json", 100, {seed: 1.0, ttt: 1.0}, both)
    units = ["bench_forward.Seed", "bench_forward.TTT"]
    assert shards.base_machine("m-x2") == "m" and shards.base_machine("m") == "m"
    assert shards.costs_for(units, root, "m-x2") == {units[0]: 11.0, units[1]: 31.0}
    # once the multi-GPU machine has measured everything itself, its own costs win
    _result_file(root / "m-x2" / "b-env.json", 300, {seed: 3.0, ttt: 3.0}, both)
    assert shards.costs_for(units, root, "m-x2") == {units[0]: 13.0, units[1]: 33.0}


def test_user_filter_is_anded_with_the_units():
    regex = shards.units_regex(["bench_forward.TTT", "bench_gradgrad.TTT"], bench="^bench_grad")
    assert re.search(regex, "bench_gradgrad.TTT.track_ms")
    assert re.search(regex, "bench_gradgrad.TTT.track_ms(1, 'x')")
    assert not re.search(regex, "bench_forward.TTT.track_ms")
    assert not re.search(regex, "bench_gradgrad.TTTx.track_ms")


def test_resolve_commits(fake):
    assert git.resolve_commits("HEAD", fake["repo"]) == [fake["commit"]]
    assert git.resolve_commits(f"{fake['commit'][:8]}", fake["repo"]) == [fake["commit"]]
    assert git.resolve_commit(fake["commit"][:8], fake["repo"]) == fake["commit"]
    with pytest.raises(ValueError, match="empty"):
        git.resolve_commits("HEAD..HEAD", fake["repo"])
    with pytest.raises(ValueError, match="nosuchref"):
        git.resolve_commits("nosuchref", fake["repo"])
    with pytest.raises(git.GitError):
        git.resolve_commit("HEAD", fake["root"])  # not a repository


# --- the machine and the end-of-run table ----------------------------------------------------


def test_machine_names(monkeypatch):
    from runner import machine

    assert machine.gpu_slug("NVIDIA H100 80GB HBM3", 81559) == "h100-sxm-80gb"
    assert machine.gpu_slug("NVIDIA H100 PCIe", 81559) == "h100-pcie-80gb"
    assert machine.gpu_slug("NVIDIA H100 NVL", 95830) == "h100-nvl-94gb"
    assert machine.gpu_slug("NVIDIA H200", 143771) == "h200-sxm-140gb"
    assert machine.gpu_slug("NVIDIA A100-SXM4-80GB", 81920) == "a100-sxm-80gb"
    monkeypatch.setattr(machine, "_nvidia_smi_gpus", lambda: [("NVIDIA H100 80GB HBM3", 81559)])
    assert machine.machine_name() == "h100-sxm-80gb"
    assert machine.machine_name(n_gpus=1) == "h100-sxm-80gb"
    assert machine.machine_name(n_gpus=2) == "h100-sxm-80gb-x2"
    assert machine.default_grid() == "gpu"
    monkeypatch.setattr(machine, "_nvidia_smi_gpus", lambda: [])
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.machine_name() == "cpu-x86_64"


def test_table_and_failures_come_from_the_suites_records(capsys):

    config = {"B": 2, "H": 4, "T": "2048", "D": 128, "dtype": "float16", "mask": "causal"}
    ok = {"status": "ok", "ms": 2.0, "tflops": 50.0, "peak_mib": 10.0, "parity": 0.5}
    events = [
        {"event": "record", "tag": "gradgrad/seed", "config": config, "mode": "math",
         "record": {**ok, "ms": 4.0}},
        {"event": "record", "tag": "gradgrad/seed", "config": config, "mode": "fused",
         "record": ok},
        {"event": "record", "tag": "gradgrad/seed", "config": config, "mode": "recompute",
         "record": {"status": "fail", "reason": "parity", "parity": 9.0}},
        {"event": "record", "tag": "gradgrad/seed", "config": config, "mode": "flash",
         "record": {"status": "skip", "reason": "n/a"}},
        {"event": "class_done", "tag": "gradgrad/seed", "measure_s": 1.0},
    ]  # fmt: skip
    progress.print_table(events, "m/abcd1234-env.json")
    out = capsys.readouterr().out
    assert "m/abcd1234-env.json" in out and "gradgrad Seed B2 H4 T2048 D128 float16 causal" in out
    assert re.search(r"fused\s+2\s+2\.00x\s+10\.0\s+50\s+0\.50", out)
    assert re.search(r"recompute\s+failed\s+\(parity 9\)", out)
    assert re.search(r"flash\s+skipped", out)
    assert progress.failures(events) == 1
    broken = [{"event": "class_failed", "tag": "forward/ttt", "msg": "setup_cache FAILED: X"}]
    progress.print_table(broken)
    assert "forward TTT: setup_cache FAILED: X" in capsys.readouterr().out
    assert progress.failures(broken) == 1
    assert progress.failures([{"event": "asv_failed"}]) == 1 and progress.failures(events[:2]) == 0


# --- merging ----------------------------------------------------------------------------------


def synthetic_result(machine: str, commit: str, names: dict[str, float]) -> dict:
    columns = ["result", "params", "version", "started_at", "duration"]
    return {
        "commit_hash": commit,
        "env_name": "existing-py",
        "date": 1700000000000,
        "params": {"machine": machine, "python": "3.12"},
        "python": "3.12",
        "requirements": {},
        "env_vars": {},
        "result_columns": columns,
        "results": {
            n: [[v, 2 * v], [["1", "2"]], "h" * 64, 1700000000000, 0.5] for n, v in names.items()
        },
        "durations": {"<build>": 1.0, f"<setup_cache {next(iter(names))}>": 3.0},
        "version": 2,
    }


def write_shard(folder: Path, data: dict) -> Path:
    machine = data["params"]["machine"]
    (folder / machine).mkdir(parents=True)
    (folder / machine / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    path = folder / machine / f"{data['commit_hash'][:8]}-{data['env_name']}.json"
    path.write_text(json.dumps(data))
    (folder / "benchmarks.json").write_text(
        json.dumps({n: {"name": n, "unit": "ms"} for n in data["results"]} | {"version": 2})
    )
    return path


def test_merge_of_synthetic_shards_is_read_back_by_asv(tmp_path):
    commit, machine = "0123456789abcdef" * 2 + "01234567", "h100-sxm-80gb-x2"
    a = write_shard(
        tmp_path / "a", synthetic_result(machine, commit, {"bench_forward.TTT.track_ms": 1.0})
    )
    write_shard(
        tmp_path / "b",
        synthetic_result(
            machine,
            commit,
            {"bench_gradgrad.Long.track_ms": 9.0, "bench_gradgrad.Long.track_peak_mib": 7.0},
        ),
    )
    report = merge.merge_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "results")
    (target,) = report.written
    assert target == tmp_path / "results" / machine / a.name
    loaded = load_with_asv(target, machine)
    assert set(loaded.get_all_result_keys()) == {
        "bench_forward.TTT.track_ms",
        "bench_gradgrad.Long.track_ms",
        "bench_gradgrad.Long.track_peak_mib",
    }
    assert loaded.get_result_value("bench_gradgrad.Long.track_ms", [["1", "2"]]) == [9.0, 18.0]
    assert loaded.commit_hash == commit
    merged = json.loads(target.read_text())
    assert merged["version"] == 2 and merged["durations"]["<build>"] == 1.0
    assert len([k for k in merged["durations"] if k.startswith("<setup_cache")]) == 2
    assert (tmp_path / "results" / machine / "machine.json").is_file()
    bench = json.loads((tmp_path / "results" / "benchmarks.json").read_text())
    assert set(bench) - {"version"} == set(merged["results"])

    # a later shard of the same commit: merged into the file, replacing its own rows only
    write_shard(
        tmp_path / "c", synthetic_result(machine, commit, {"bench_forward.TTT.track_ms": 2.0})
    )
    report = merge.merge_shards([tmp_path / "c"], tmp_path / "results")
    assert report.replaced[target] == ["bench_forward.TTT.track_ms"]
    loaded = load_with_asv(target, machine)
    assert loaded.get_result_value("bench_forward.TTT.track_ms", [["1", "2"]]) == [2.0, 4.0]
    assert len(loaded.get_all_result_keys()) == 3


def test_merge_refuses_a_benchmark_measured_twice_differently(tmp_path):
    commit, machine = "f" * 40, "m"
    write_shard(
        tmp_path / "a", synthetic_result(machine, commit, {"bench_forward.TTT.track_ms": 1.0})
    )
    write_shard(
        tmp_path / "b", synthetic_result(machine, commit, {"bench_forward.TTT.track_ms": 1.5})
    )
    with pytest.raises(merge.MergeConflict, match="bench_forward.TTT.track_ms"):
        merge.merge_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "results")
    assert not (tmp_path / "results" / machine).exists()  # nothing half-written
    other = synthetic_result(machine, commit, {"bench_gradgrad.TTT.track_ms": 1.0})
    other["result_columns"] = other["result_columns"][:4]
    write_shard(tmp_path / "c", other)
    with pytest.raises(merge.MergeConflict, match="result_columns"):
        merge.merge_shards([tmp_path / "a", tmp_path / "c"], tmp_path / "results")


# --- one shard, in-process through Modal's .local() ---------------------------------------


def test_app_imports_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
    code = (
        "import modal_runner as m; "
        "print(m.app.name, m.GPU, type(m.run_shard).__name__, m.VOLUME_MOUNT)"
    )
    proc = subprocess.run(
        [PY, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["gradgrad-attention-bench", "H100!", "Function", "/shards"]


def test_shard_function_runs_locally_and_skips_a_finished_shard(fake, fake_env, tmp_path):
    modal_runner = pytest.importorskip("modal_runner")
    units = ["bench_backward.CPU", "bench_forward.CPU"]
    kwargs = dict(
        grid="cpu",
        out_root=str(tmp_path / "vol"),
        machine="cpu-test",
        run_commit=fake_run_commit,
    )
    with pytest.warns(UserWarning, match="locally"):  # modal: no Volume under .local()
        manifest = modal_runner.run_shard.local(fake["commit"], units, **kwargs)
    assert manifest["skipped"] is False and manifest["units"] == units
    folder = tmp_path / "vol" / fake["commit"] / manifest["shard"]
    (result_file,) = shards.result_files(folder / shards.SHARD_RESULTS)
    want = {n for n in cpu_names(fake) if shards.unit_of(n) in units}
    assert set(load_with_asv(result_file, "cpu-test").get_all_result_keys()) == want
    assert len(read_calls(fake_env)) == 1

    with pytest.warns(UserWarning, match="locally"):
        again = modal_runner.run_shard.local(fake["commit"], list(reversed(units)), **kwargs)
    assert again["skipped"] is True and again["shard"] == manifest["shard"]
    assert len(read_calls(fake_env)) == 1  # asv did not run again


def test_a_shard_that_died_midway_is_redone(fake, fake_env, tmp_path):
    units = ["bench_gradgrad.CPU"]
    folder = shards.shard_dir(tmp_path, fake["commit"], shards.Shard(tuple(units)))
    (folder / "results").mkdir(parents=True)  # partial output, no manifest
    (folder / "results" / "junk.json").write_text("{")
    run_commit = fake_run_commit
    result = shards.run_shard(
        fake["commit"], units, tmp_path, machine="cpu-test", grid="cpu", run_commit=run_commit
    )
    assert not result.skipped and not (folder / "results" / "junk.json").exists()
    assert shards.read_manifest(folder)["units"] == units


def test_a_shard_missing_benchmarks_gets_no_manifest(fake, fake_env, tmp_path):
    run_commit = fake_run_commit

    def drops_a_benchmark(commit, **kw):  # asv "succeeded" but one benchmark is not there
        out = run_commit(commit, **kw)
        (path,) = [p for p in out.glob("*.json") if p.name != "machine.json"]
        data = json.loads(path.read_text())
        data["results"].pop("bench_forward.CPU.track_ms")
        path.write_text(json.dumps(data))
        return out

    with pytest.raises(shards.ShardIncomplete, match="bench_forward.CPU.track_ms"):
        shards.run_shard(
            fake["commit"],
            ["bench_forward.CPU"],
            tmp_path,
            machine="cpu-test",
            grid="cpu",
            run_commit=drops_a_benchmark,
        )
    assert shards.completed_shards(tmp_path, fake["commit"]) == {}


# --- the Modal fan-out up to the network, with the Volume replaced by a folder ----------------


class FakeVolume:
    """modal.Volume's read API (listdir, read_file, read_file_into_fileobj) over a folder."""

    def __init__(self, root: Path):
        self.root = root

    def listdir(self, path, recursive=False):
        from modal.volume import FileEntry, FileEntryType

        base = self.root / path
        if not base.exists():
            import modal

            raise modal.exception.NotFoundError(f"{path} not found")
        return [
            FileEntry(
                path=str(p.relative_to(self.root)),
                type=FileEntryType.FILE if p.is_file() else FileEntryType.DIRECTORY,
                mtime=0,
                size=p.stat().st_size,
            )
            for p in sorted(base.rglob("*") if recursive else base.iterdir())
        ]

    def read_file(self, path):
        yield (self.root / path).read_bytes()

    def read_file_into_fileobj(self, path, fileobj):
        return fileobj.write((self.root / path).read_bytes())


def test_fan_out_merges_and_reruns_only_the_missing_shard(fake, fake_env, tmp_path):
    import modal_runner

    store = modal_runner.LocalStore(tmp_path / "vol")
    runs = []

    def run_many(calls):
        runs.append(calls)
        out = []
        for commit, units in calls:
            result = shards.run_shard(
                commit,
                units,
                store.root,
                machine="cpu-test",
                grid="cpu",
                run_commit=fake_run_commit,
            )
            out.append({**result.manifest, "skipped": result.skipped})
        return out

    results = tmp_path / "results"
    kwargs = dict(
        store=store,
        run_many=run_many,
        results_dir=results,
        grid="cpu",
        grid_regex=FAKE_GRID_REGEX,
        bench_dir=fake["suite"],
        build_report=False,
        repo=fake["repo"],
    )
    assert modal_runner.orchestrate("HEAD", 2, **kwargs) == 0
    (first,) = runs
    assert len(first) == 2 and sorted(u for _, us in first for u in us) == [
        f"{f}.CPU" for f in sorted(FAMILIES)
    ]
    (merged,) = [p for p in (results / "cpu-test").glob("*.json") if p.name != "machine.json"]
    assert set(load_with_asv(merged, "cpu-test").get_all_result_keys()) == cpu_names(fake)

    # a container lost after asv ran but before its manifest: its units alone rerun (split
    # over up to SHARDS new shards), nothing of the finished shard runs again
    manifests = store.manifests(fake["commit"])
    lost_key = max(manifests, key=lambda k: len(manifests[k]["units"]))
    (store.root / fake["commit"] / lost_key / shards.MANIFEST).unlink()
    assert modal_runner.orchestrate("HEAD", 2, **kwargs) == 0
    assert {c for c, _ in runs[1]} == {fake["commit"]}
    assert sorted(u for _, us in runs[1] for u in us) == manifests[lost_key]["units"]
    assert set(load_with_asv(merged, "cpu-test").get_all_result_keys()) == cpu_names(fake)

    # everything done: nothing runs, the merge is redone from the stored shards
    assert modal_runner.orchestrate("HEAD", 2, **kwargs) == 0
    assert len(runs) == 2

    # the same shards read through VolumeStore (the Modal path) from a stand-in Volume with
    # modal's listdir/read_file API: downloaded, merged, the same benchmarks
    volume_results = tmp_path / "results_via_volume"
    volume_store = modal_runner.VolumeStore(FakeVolume(store.root), staging=tmp_path / "dl")
    kwargs.update(store=volume_store, results_dir=volume_results)
    assert modal_runner.orchestrate("HEAD", 2, **kwargs) == 0
    assert len(runs) == 2
    (via_volume,) = (volume_results / "cpu-test").glob("*-*.json")
    assert (
        json.loads(via_volume.read_text())["results"] == json.loads(merged.read_text())["results"]
    )

    # asv itself lists the merged commit for the machine (what `asv show` / `compare` use)
    conf = tmp_path / "asv.conf.json"
    conf.write_text(
        json.dumps(
            {
                "version": 1,
                "project": "fake",
                "repo": str(fake["repo"]),
                "results_dir": str(results),
                "environment_type": "existing",
                "branches": ["main"],
            }
        )
    )
    proc = subprocess.run(
        [
            PY,
            "-m",
            "asv",
            "show",
            "--config",
            str(conf),
            "--machine",
            "cpu-test",
            fake["commit"][:8],
        ],
        capture_output=True,
        text=True,
        cwd=fake["repo"],
        env=dict(os.environ, HOME=str(tmp_path)),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in cpu_names(fake):
        assert name in proc.stdout


def test_a_filtered_run_then_a_full_run_merge_each_benchmark_once(fake, fake_env, tmp_path):
    run_commit = fake_run_commit
    import modal_runner

    store = modal_runner.LocalStore(tmp_path / "vol")

    def runner_for(bench):
        def run_many(calls):
            return [
                shards.run_shard(
                    c, u, store.root, machine="cpu-test", bench=bench, run_commit=run_commit
                ).manifest
                for c, u in calls
            ]

        return run_many

    results = tmp_path / "results"
    common = dict(
        store=store,
        results_dir=results,
        grid="cpu",
        grid_regex=FAKE_GRID_REGEX,
        bench_dir=fake["suite"],
        build_report=False,
        repo=fake["repo"],
    )
    only_ms = r"\.track_ms"  # asv matches "name(params)": no $ here
    assert (
        modal_runner.orchestrate("HEAD", 3, run_many=runner_for(only_ms), bench=only_ms, **common)
        == 0
    )
    (merged,) = [p for p in (results / "cpu-test").glob("*.json") if p.name != "machine.json"]
    assert set(json.loads(merged.read_text())["results"]) == {
        n for n in cpu_names(fake) if n.endswith("track_ms")
    }
    # the filtered shards do not count for a full run: all units run again, and the merge
    # takes each unit from the new shards only (no two rows for one benchmark)
    assert modal_runner.orchestrate("HEAD", 3, run_many=runner_for(None), **common) == 0
    assert len(read_calls(fake_env)) == 6
    assert set(load_with_asv(merged, "cpu-test").get_all_result_keys()) == cpu_names(fake)
    # and a full run's shards serve a filtered run: nothing runs
    assert (
        modal_runner.orchestrate("HEAD", 3, run_many=runner_for(only_ms), bench=only_ms, **common)
        == 0
    )
    assert len(read_calls(fake_env)) == 6


def test_no_token_fails_at_once_with_the_setup_hint(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path)  # no ~/.modal.toml
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "-s", "bench-modal", "COMMITS=HEAD", "SHARDS=8"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert proc.returncode != 0
    assert took < 5, f"took {took:.1f} s: the token check must come before any other work"
    for hint in ("modal setup", "modal token new", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        assert hint in proc.stderr + proc.stdout


def test_token_lookup_follows_the_modal_client(tmp_path):
    sys.path.insert(0, str(REPO / "runner"))
    try:
        from modal_token import token_problem
    finally:
        sys.path.remove(str(REPO / "runner"))
    home = {"HOME": str(tmp_path)}
    assert "no such file" in token_problem(home)
    assert token_problem({**home, "MODAL_TOKEN_ID": "ak-1", "MODAL_TOKEN_SECRET": "as-1"}) is None
    (tmp_path / ".modal.toml").write_text(
        '[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n'
        '[work]\nactive = true\ntoken_id = "ak-2"\n'
    )
    assert "profile 'work'" in token_problem(home)  # the active profile lacks its secret
    assert token_problem({**home, "MODAL_PROFILE": "default"}) is None
    assert token_problem({**home, "MODAL_TOKEN_SECRET": "as-2"}) is None


# --- local GPUs: N workers, each pinned to one device -----------------------------------------


def local_gpus_args(fake, tmp_path, *extra, machine="cpu-test-x2"):
    return [
        "--grid",
        "cpu",
        "--grid-regex",
        FAKE_GRID_REGEX,
        "--machine",
        machine,
        "--bench-dir",
        str(fake["suite"]),
        "--results-dir",
        str(tmp_path / "results"),
        "--staging",
        str(tmp_path / "staging"),
        "--repo",
        str(fake["repo"]),
        *extra,
    ]


def run_local_gpus(capsys, fake, tmp_path, *extra, machine="cpu-test-x2"):
    """(exit status, output) of runner.local_gpus.main with the fake runner injected."""
    argv = local_gpus_args(fake, tmp_path, *extra, machine=machine)
    code = local_gpus.main(argv, run_commit=fake_run_commit)
    return code, capsys.readouterr().out


def test_two_fake_gpus_each_run_a_shard_and_the_merge_covers_the_grid(
    fake, fake_env, tmp_path, capsys
):
    code, out = run_local_gpus(capsys, fake, tmp_path, "--gpus", "2", "--keep-staging")
    assert code == 0, out
    calls = read_calls(fake_env)
    assert sorted(c["cuda"] for c in calls) == ["0", "1"]  # one shard per device, both ran
    assert re.search(r"shard 1/2 shard-\w+ on GPU \d", out)
    assert re.search(r"  gpu\d\| ", out)  # the shards' output, prefixed with their GPU
    (merged,) = [
        p for p in (tmp_path / "results" / "cpu-test-x2").glob("*.json") if p.name != "machine.json"
    ]
    keys = json.loads(merged.read_text())["results"]
    assert set(keys) == cpu_names(fake)  # every benchmark; dict keys: none twice
    per_shard = [
        set(json.loads(p.read_text())["results"])
        for p in (tmp_path / "staging").rglob("results/cpu-test-x2/*-*.json")
    ]
    assert len(per_shard) == 2 and not (per_shard[0] & per_shard[1])
    # the table, from the shards' own progress records: the one record of the shard that
    # holds bench_forward.CPU (the other shard's copy of it is not its unit)
    assert out.count("forward CPU B1 H1 T8 D4 float32 none") == 1
    assert re.search(r"math\s+1\s+1\.00x", out)

    # interrupted after one shard: a re-run does only the other one
    commit_dir = tmp_path / "staging" / "cpu-test-x2" / fake["commit"]
    lost = next(p for p in commit_dir.iterdir() if p.is_dir())
    (lost / shards.MANIFEST).unlink()
    code, out = run_local_gpus(capsys, fake, tmp_path, "--gpus", "2", "--no-table")
    assert code == 0, out
    assert len(read_calls(fake_env)) == 3 and "1 shards on GPUs" in out
    assert not commit_dir.exists()  # merged, so the staging folder is gone
    assert set(json.loads(merged.read_text())["results"]) == cpu_names(fake)


def test_an_interrupted_run_keeps_finished_shards_and_reruns_only_the_rest(
    fake, fake_env, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("FAKE_ASV_SLOW_UNIT", "bench_forward.CPU")  # the lightest: last
    commit_dir = tmp_path / "staging" / "cpu-test-x2" / fake["commit"]

    def ctrl_c_during_the_slow_shard():
        deadline = time.monotonic() + 120
        while len(shards.completed_shards(commit_dir.parent, fake["commit"])) < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the slow shard runs

    interrupter = threading.Thread(target=ctrl_c_during_the_slow_shard)
    interrupter.start()
    code, out = run_local_gpus(capsys, fake, tmp_path, "--gpus", "1", "--shards", "3")
    interrupter.join()
    assert code == 130, out
    assert "the same command runs only the 1 unfinished ones" in out
    assert len(shards.completed_shards(commit_dir.parent, fake["commit"])) == 2
    assert not (tmp_path / "results").exists()  # nothing merged from an incomplete commit

    monkeypatch.delenv("FAKE_ASV_SLOW_UNIT")
    code, out = run_local_gpus(capsys, fake, tmp_path, "--gpus", "1", "--shards", "3")
    assert code == 0, out
    assert "2 already done, 1 shards" in out
    ran = [c["bench"] for c in read_calls(fake_env)]
    assert len(ran) == 3 and "bench_forward" in ran[-1]
    (merged,) = (tmp_path / "results" / "cpu-test-x2").glob("*-*.json")
    assert set(json.loads(merged.read_text())["results"]) == cpu_names(fake)


_CTRL_C_ON_NEXT_FORK: list[bool] = []


def _ctrl_c_inside_the_fork_hook():
    """An at-fork hook (the parent's side, as logging's): a SIGINT handled in here raises
    KeyboardInterrupt where Python drops it ('Exception ignored')."""
    if _CTRL_C_ON_NEXT_FORK:
        _CTRL_C_ON_NEXT_FORK.clear()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here


os.register_at_fork(after_in_parent=_ctrl_c_inside_the_fork_hook)


def test_a_ctrl_c_that_lands_on_a_fork_still_stops_the_run(fake, fake_env, tmp_path, capsys):
    """The race behind a flaky run of the test above: the Ctrl-C came as the next shard was
    forked, Python dropped its KeyboardInterrupt, and the run finished with exit 0
    (runner/interrupts.py)."""
    _CTRL_C_ON_NEXT_FORK.append(True)  # the first shard's fork
    try:
        code, out = run_local_gpus(capsys, fake, tmp_path, "--gpus", "1", "--shards", "3")
    finally:
        _CTRL_C_ON_NEXT_FORK.clear()
    assert code == 130, out
    assert "the same command runs only the 3 unfinished ones" in out


def test_an_older_commit_runs_from_one_worktree_shared_by_all_shards(
    fake, fake_env, tmp_path, capsys
):
    other = git.git(
        "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", "HEAD^{tree}", "-p", "HEAD",
        "-m", "side", repo=fake["repo"],
    )  # fmt: skip
    code, out = run_local_gpus(capsys, fake, tmp_path, "--gpus", "2", "--commit", other)
    assert code == 0, out
    calls = read_calls(fake_env)
    assert len(calls) == 2 and {c["commit"] for c in calls} == {other}
    assert len({c["worktree"] for c in calls}) == 1 and all(
        c["worktree_checked_out"] for c in calls
    )
    assert not Path(calls[0]["worktree"]).exists()  # removed afterwards
    merged = tmp_path / "results" / "cpu-test-x2"
    assert [p.name[:8] for p in merged.glob("*-*.json")] == [other[:8]]


def test_no_gpu_and_no_count_is_a_clear_error(tmp_path):
    env = dict(os.environ, PATH="/nonexistent", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [PY, "-m", "runner.local_gpus"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "GPUS=N" in proc.stderr


# --- the real suite's CPU grid through runner.asv_run, when both exist ---------------------


def test_real_cpu_grid_shard_through_asv_run(tmp_path):
    asv_run = pytest.importorskip("runner.asv_run", reason="runner/asv_run.py not there yet")
    import modal_runner

    grid_regex = asv_run.bench_regex("cpu")
    wanted = shards.select_units(shards.list_benchmarks(), grid_regex)
    if not wanted:
        pytest.skip("bench_suite has no CPU-grid classes yet")
    unit = min(wanted, key=lambda u: (not u.startswith("bench_forward"), u))
    commit = git.resolve_commit("HEAD")
    with pytest.warns(UserWarning, match="locally"):
        manifest = modal_runner.run_shard.local(
            commit, [unit], grid="cpu", out_root=str(tmp_path), machine="cpu-shard-test"
        )
    folder = tmp_path / commit / manifest["shard"] / shards.SHARD_RESULTS
    (result_file,) = shards.result_files(folder)
    assert set(load_with_asv(result_file, "cpu-shard-test").get_all_result_keys()) == set(
        wanted[unit]
    )


# --- on a GPU: a sharded run covers what an unsharded run does ------------------------------


@pytest.mark.gpu
def test_one_gpu_sharded_run_covers_what_an_unsharded_run_covers(tmp_path):
    """`pytest --gpu -m gpu -k sharded -s`: the Seed preset unsharded, then via local_gpus."""
    asv_run = pytest.importorskip("runner.asv_run")
    commit, machine = git.resolve_commit("HEAD"), "gpu-shard-check"
    started = time.monotonic()
    unsharded = asv_run.run_commit(
        commit,
        machine=machine,
        results_dir=tmp_path / "unsharded",
        bench=asv_run.bench_regex("gpu", ["seed"]),
        grid="gpu",
    )
    unsharded_s = time.monotonic() - started
    started = time.monotonic()
    proc = subprocess.run(
        [
            PY,
            "-m",
            "runner.local_gpus",
            "--gpus",
            "1",
            "--grid",
            "gpu",
            "--preset",
            "seed",
            "--machine",
            machine,
            "--results-dir",
            str(tmp_path / "sharded"),
            "--staging",
            str(tmp_path / "staging"),
            "--no-table",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    sharded_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sharded,) = [p for p in (tmp_path / "sharded" / machine).glob("*-*.json")]
    a, b = (json.loads(Path(p).read_text()) for p in (unsharded, sharded))
    assert a["result_columns"] == b["result_columns"]
    params = a["result_columns"].index("params")
    assert sorted(a["results"]) == sorted(b["results"])
    for name, row in a["results"].items():
        assert row[params] == b["results"][name][params], name
        skipped = lambda r: [v != v for v in (r[0] or [])]  # noqa: E731  NaN: asv "skipped"
        assert skipped(row) == skipped(b["results"][name]), name
    print(
        f"\nSeed preset on one GPU: unsharded {unsharded_s:.0f} s, sharded (GPUS=1) "
        f"{sharded_s:.0f} s, {len(a['results'])} benchmarks in both"
    )
