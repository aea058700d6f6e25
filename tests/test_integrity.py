"""Results integrity (issue 16; docs/design.md trap 12): results/ is never emptied or shrunk,
concurrent writers lose nothing, interrupts leave no process behind, no host paths in names.

CPU and offline. The interrupt tests run the real suite's CPU grid through
``python -m runner.asv_run`` and interrupt it at a moment found by polling (asv's private
benchmarks.json appearing; the suite's first progress line); the concurrency tests use a
throw-away two-class suite (a few seconds an ``asv run``). Every process a test starts
carries a marker in its environment (inherited by asv, its forkserver and the benchmark
processes), so leftovers are found in /proc and killed at the end whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from runner import git, integrity, merge

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
MARK_ENV = "INTEGRITY_TEST_MARK"


# --- processes ------------------------------------------------------------------------------


def marked(mark: str) -> list[int]:
    """Live processes whose environment holds MARK_ENV=mark (zombies have no environment)."""
    needle = f"{MARK_ENV}={mark}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    out.append(int(entry))
        except OSError:
            continue
    return out


def poll(predicate, timeout: float, what: str, interval: float = 0.02, proc=None):
    """Wait for ``predicate()``; fail at once if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read()
            raise AssertionError(f"the runner ended (exit {proc.returncode}) before {what}:\n{out}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def short_tmp():
    """TMPDIR for a runner: short, as asv's forkserver socket path must be (AF_UNIX: 108)."""
    path = Path(tempfile.mkdtemp(prefix="ig", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mark():
    """A marker for this test's processes; whatever carries it is killed afterwards."""
    value = uuid.uuid4().hex
    yield value
    for _ in range(50):
        pids = marked(value)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def start(cmd: list[str], tmp: Path, mark: str, extra_env=None, **kw) -> subprocess.Popen:
    """A runner in a session of its own (a signal to its group is a terminal's Ctrl-C)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1", **{MARK_ENV: mark})
    env.update(extra_env or {})
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"runner did not end within {timeout} s:\n{out[-3000:]}") from None
    return out


def seeded_results(tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A results folder holding a copy of the committed benchmarks.json and a result file."""
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(REPO / "results" / "benchmarks.json", results / "benchmarks.json")
    shutil.copytree(REPO / "results" / "h200-sxm-140gb", results / "h200-sxm-140gb")
    return results, {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}


def assert_untouched(results: Path, before: dict[Path, bytes]) -> None:
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} changed"
    json.loads((results / "benchmarks.json").read_text())
    assert not list(results.rglob("*.tmp")), "a temporary file was left"


def runner_cmd(results: Path, machine: str) -> list[str]:
    return [
        PY,
        "-m",
        "runner.asv_run",
        "--grid",
        "cpu",
        "--results-dir",
        str(results),
        "--machine",
        machine,
    ]


# --- item 1: benchmarks.json is never emptied or shrunk -------------------------------------


def test_sigkill_of_the_group_while_asv_writes_benchmarks_json(tmp_path, mark, short_tmp):
    """asv rewrites benchmarks.json at the start of every run: the group is SIGKILLed the
    moment asv's (private) benchmarks.json appears; results/ must be byte-identical."""
    results, before = seeded_results(tmp_path)
    tmp = short_tmp
    proc = start(runner_cmd(results, "cpu-integrity"), tmp, mark)
    try:
        poll(
            lambda: list(tmp.glob("asv-run-*/results-*/benchmarks.json")),
            240,
            "asv to write its benchmarks.json",
            interval=0.005,
            proc=proc,
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    assert_untouched(results, before)
    # asv dies with the runner (PDEATHSIG), its children with asv
    poll(lambda: not marked(mark), 30, "the run's processes to end")


def test_benchmarks_json_is_merged_never_shrunk(tmp_path):
    """An older commit's suite (fewer benchmarks) adds and updates entries, drops none."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "benchmarks.json").write_text(json.dumps({"a": {"v": 1}, "b": {"v": 1}}))
    src = tmp_path / "private"
    src.mkdir()
    (src / "benchmarks.json").write_text(json.dumps({"b": {"v": 2}, "c": {"v": 2}}))
    merge.merge_benchmarks_json(results, [src / "benchmarks.json"])
    got = json.loads((results / "benchmarks.json").read_text())
    assert got == {"a": {"v": 1}, "b": {"v": 2}, "c": {"v": 2}}
    (src / "benchmarks.json").write_text("")  # an emptied source is refused, nothing written
    with pytest.raises(ValueError):
        merge.merge_benchmarks_json(results, [src / "benchmarks.json"])
    assert json.loads((results / "benchmarks.json").read_text()) == got


# --- item 3: an interrupt ends the whole process tree ----------------------------------------


def _interrupt_mid_benchmark(tmp, mark, cmd, results, before, send, extra_env=None, least=3):
    """``least``: the run's processes expected while measuring: the runner, asv, a
    forkserver, a benchmark (3+ when classes measure in asv's processes); the runner and
    the measuring process, harness/worker.py (2, the default way since issue 20)."""
    proc = start(cmd, tmp, mark, extra_env)
    try:
        # the suite's first progress line: setup_cache is measuring in a benchmark process
        poll(
            lambda: any(p.stat().st_size for p in tmp.rglob("progress.jsonl")),
            300,
            "the suite's first progress line",
            interval=0.05,
            proc=proc,
        )
        time.sleep(1.0)  # well inside setup_cache
        assert len(marked(mark)) >= least, f"expected {least}+ processes of the run"
        send(proc)
        out = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # no process of the run is left, at once: the runner waited for them
    assert not marked(mark), f"left behind: {marked(mark)}\n{out[-2000:]}"
    assert not list(tmp.rglob("asv-forkserver-*")), "asv's forkserver folder was left"
    assert not list(tmp.glob("asv-run-*")), "the runner's temporary folder was left"
    assert_untouched(results, before)
    return proc.returncode, out


@pytest.mark.parametrize(
    "sig, worker",
    [(signal.SIGTERM, "1"), (signal.SIGINT, "1"), (signal.SIGTERM, "0")],
    ids=["SIGTERM", "SIGINT", "SIGTERM-in-asv"],
)
def test_a_signal_to_the_runner_ends_asv_forkserver_and_benchmark(
    tmp_path, mark, short_tmp, sig, worker
):
    """Measuring in the measuring process (harness/worker.py), or (BENCH_SUITE_WORKER=0)
    in asv's setup_cache process under its forkserver: every process of the run ends."""
    results, before = seeded_results(tmp_path)
    code, out = _interrupt_mid_benchmark(
        short_tmp,
        mark,
        runner_cmd(results, "cpu-integrity"),
        results,
        before,
        lambda proc: os.kill(proc.pid, sig),  # the runner's pid only, not its group
        extra_env={"BENCH_SUITE_WORKER": worker},
        least=2 if worker == "1" else 3,
    )
    assert code == 130, out[-2000:]
    assert "interrupted while measuring cpu of" in out and "kept nothing" in out, out[-2000:]
    assert "stopped the run's processes" in out, out[-2000:]


def test_ctrl_c_of_local_gpus_leaves_no_process(tmp_path, mark, short_tmp):
    results, before = seeded_results(tmp_path)
    cmd = [
        PY,
        "-m",
        "runner.local_gpus",
        "--gpus",
        "1",
        "--grid",
        "cpu",
        "--machine",
        "cpu-integrity",
        "--results-dir",
        str(results),
        "--staging",
        str(tmp_path / "staging"),
    ]
    code, out = _interrupt_mid_benchmark(
        short_tmp, mark, cmd, results, before, lambda proc: os.killpg(proc.pid, signal.SIGINT)
    )
    assert code == 130, out[-2000:]
    assert "interrupted" in out, out[-2000:]


# --- item 2: concurrent writers --------------------------------------------------------------

TINY_BENCH = """
import time


class A:
    def track_a(self):
        time.sleep(3)  # the second run surely finds the lock held
        return 1.0


class B:
    def track_b(self):
        return 2.0
"""

TINY_RUN = """
import sys
from runner import asv_run
asv_run.run_commit(
    "HEAD", machine=sys.argv[1], results_dir=sys.argv[2], bench=sys.argv[3], worktree=sys.argv[4]
)
"""


@pytest.fixture
def tiny_suite(tmp_path):
    src = tmp_path / "suite"
    (src / "bench_suite").mkdir(parents=True)
    shutil.copy(REPO / "asv.conf.json", src / "asv.conf.json")
    (src / "bench_suite" / "__init__.py").write_text("")
    (src / "bench_suite" / "bench_tiny.py").write_text(textwrap.dedent(TINY_BENCH))
    return src


def test_two_runners_into_one_results_folder_keep_both(tmp_path, mark, tiny_suite, short_tmp):
    """The second run waits for the first's lock (saying so) and both runs' benchmarks stay;
    the result file is named without host paths."""
    results, _ = seeded_results(tmp_path)

    def run(cls):
        cmd = [
            PY,
            "-c",
            TINY_RUN,
            "cpu-tiny",
            str(results),
            rf"^bench_tiny\.{cls}\.",
            str(tiny_suite),
        ]
        return start(cmd, short_tmp / cls, mark)

    lock = results / ".cpu-tiny.lock"
    procs = [run("A")]
    poll(
        lambda: lock.is_file() and lock.stat().st_size, 120, "run A to hold the lock", proc=procs[0]
    )
    procs.append(run("B"))
    outs = [finish(p, timeout=300) for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert any("waiting for the lock on" in out and "held by pid" in out for out in outs), outs
    sha = git.resolve_commit("HEAD")
    (path,) = (results / "cpu-tiny").glob("*-*.json")
    assert path.name == f"{sha[:8]}-{integrity.ENV_NAME}.json"
    data = json.loads(path.read_text())
    assert sorted(data["results"]) == ["bench_tiny.A.track_a", "bench_tiny.B.track_b"]
    assert data["env_name"] == "existing-py3"
    assert data["python"] == data["params"]["python"] == integrity.PYTHON_LABEL
    assert str(Path.home()) not in path.read_text() and sys.executable not in path.read_text()
    benchmarks = json.loads((results / "benchmarks.json").read_text())
    committed = json.loads((REPO / "results" / "benchmarks.json").read_text())
    assert set(committed) | {"bench_tiny.A.track_a", "bench_tiny.B.track_b"} == set(benchmarks)
    assert not list(results.rglob("*.tmp"))
    assert not marked(mark)


def test_a_busy_lock_names_its_holder(tmp_path, mark):
    folder = tmp_path / "results" / "m"
    hold = (
        "import sys, time; from runner import integrity\n"
        "with integrity.FolderLock(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    proc = start([PY, "-c", hold, str(folder)], tmp_path / "tmp", mark)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(integrity.LockBusy, match=rf"pid {proc.pid} on .* since .*-c"):
            with integrity.FolderLock(folder, timeout=0):
                pass
        said = []
        with pytest.raises(integrity.LockBusy):
            with integrity.FolderLock(folder, timeout=0.3, say=said.append):
                pass
        assert said and f"held by pid {proc.pid}" in said[0]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    with integrity.FolderLock(folder, timeout=10):  # the kernel dropped the dead holder's lock
        pass


MERGE_LOOP = """
import json, sys
from pathlib import Path
from runner import merge
me, results, shard_root, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
base = json.loads(sys.argv[5])
for i in range(n):
    shard = shard_root / f"{me}-{i}"
    data = dict(base, results={f"bench_x.{me}.track_{i}": [[float(i)]]})
    (shard / "m").mkdir(parents=True)
    (shard / "m" / "abcdef12-existing-py3.json").write_text(json.dumps(data))
    (shard / "benchmarks.json").write_text(json.dumps({f"bench_x.{me}.track_{i}": {"v": i}}))
    merge.merge_shards([shard], results)
"""


def test_concurrent_merges_lose_nothing(tmp_path, mark):
    """Two processes merging 40 times each into one folder: every row and every
    benchmarks.json entry of both is there, every file parses, no call raised."""
    results = tmp_path / "results"
    base = {
        "version": 2,
        "commit_hash": "abcdef12" * 5,
        "env_name": "existing-py3",
        "python": "3",
        "params": {"machine": "m", "python": "3"},
        "result_columns": ["result"],
        "requirements": {},
        "env_vars": {},
        "date": 1,
        "durations": {},
    }
    n = 40
    procs = [
        start(
            [
                PY,
                "-c",
                MERGE_LOOP,
                me,
                str(results),
                str(tmp_path / "shards"),
                str(n),
                json.dumps(base),
            ],
            tmp_path / "tmp",
            mark,
        )
        for me in ("P", "Q")
    ]
    outs = [finish(p, timeout=120) for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    expected = {f"bench_x.{me}.track_{i}" for me in "PQ" for i in range(n)}
    data = json.loads((results / "m" / "abcdef12-existing-py3.json").read_text())
    assert set(data["results"]) == expected
    assert set(json.loads((results / "benchmarks.json").read_text())) == expected
    assert not list(results.rglob("*.tmp"))


def test_a_conflict_in_any_file_writes_nothing(tmp_path):
    def result(commit, rows):
        return {
            "version": 2,
            "commit_hash": commit * 5,
            "env_name": "existing-py3",
            "python": "3",
            "params": {"machine": "m", "python": "3"},
            "result_columns": ["result"],
            "results": rows,
            "durations": {},
        }

    for shard, value in (("a", 1.0), ("b", 2.0)):
        folder = tmp_path / shard / "m"
        folder.mkdir(parents=True)
        # commit 11111111: no conflict; commit 22222222 (merged second): a conflict
        (folder / "11111111-existing-py3.json").write_text(
            json.dumps(result("11111111", {f"x.{shard}": [[value]]}))
        )
        (folder / "22222222-existing-py3.json").write_text(
            json.dumps(result("22222222", {"x.same": [[value]]}))
        )
    with pytest.raises(merge.MergeConflict, match="x.same"):
        merge.merge_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "results")
    assert not (tmp_path / "results" / "m").exists()


# --- item 4: environment names without host paths -------------------------------------------


def test_committed_results_carry_no_interpreter_paths():
    for path in (REPO / "results").glob("*/*.json"):
        if path.name == "machine.json":
            continue
        data = json.loads(path.read_text())
        assert path.name.endswith(f"-{integrity.ENV_NAME}.json"), path
        assert data["env_name"] == integrity.ENV_NAME, path
        assert data["python"] == data["params"]["python"] == integrity.PYTHON_LABEL, path


def test_migration_renames_and_merges_path_named_files(tmp_path):
    folder = tmp_path / "results" / "m"
    folder.mkdir(parents=True)
    (folder / "machine.json").write_text(json.dumps({"machine": "m", "version": 1}))
    for env, rows in (
        ("existing-py_home_alice_.venv_bin_python3", {"x.a": [[1.0]]}),
        ("existing-py_opt_torch_.venv_bin_python3", {"x.b": [[2.0]]}),
    ):
        path = "/" + env.removeprefix("existing-py_").replace("_", "/")
        data = {
            "version": 2,
            "commit_hash": "abcdef12" * 5,
            "env_name": env,
            "python": path,
            "params": {"machine": "m", "python": path},
            "results": rows,
        }
        (folder / f"abcdef12-{env}.json").write_text(json.dumps(data))
    moves = integrity.migrate_env_names(tmp_path / "results")
    assert len(moves) == 2
    (path,) = folder.glob("abcdef12-*.json")
    assert path.name == "abcdef12-existing-py3.json"
    data = json.loads(path.read_text())
    assert data["results"] == {"x.a": [[1.0]], "x.b": [[2.0]]}
    assert data["env_name"] == "existing-py3"
    assert data["python"] == data["params"]["python"] == "3"
    assert integrity.migrate_env_names(tmp_path / "results") == []  # idempotent


def test_an_empty_benchmarks_json_in_a_shard_writes_nothing(tmp_path):
    folder = tmp_path / "a" / "m"
    folder.mkdir(parents=True)
    data = {
        "version": 2,
        "commit_hash": "11111111" * 5,
        "env_name": "existing-py3",
        "python": "3",
        "params": {"machine": "m", "python": "3"},
        "result_columns": ["result"],
        "results": {"x.a": [[1.0]]},
    }
    (folder / "11111111-existing-py3.json").write_text(json.dumps(data))
    (tmp_path / "a" / "benchmarks.json").write_text("")  # what an interrupted asv leaves
    with pytest.raises(merge.MergeConflict, match="benchmarks.json"):
        merge.merge_shards([tmp_path / "a"], tmp_path / "results")
    assert not (tmp_path / "results" / "m").exists()


def test_migrate_drops_retired_benchmarks_and_keeps_the_rest(tmp_path):
    """track_tflops (issue 15 item 3) leaves every result file and benchmarks.json; all else,
    key order included, stays as it was; a second run changes nothing."""
    results = tmp_path / "results"
    folder = results / "m"
    folder.mkdir(parents=True)
    (folder / "machine.json").write_text(json.dumps({"machine": "m", "version": 1}))
    rows = {
        "bench_forward.Seed.track_ms": [[1.0]],
        "bench_forward.Seed.track_tflops": [[300.0]],
        "bench_peak.Peak.track_ms": [[1.4]],
    }
    data = {"version": 2, "commit_hash": "ab" * 20, "env_name": "existing-py3", "results": rows}
    (folder / "abababab-existing-py3.json").write_text(json.dumps(data))
    meta = {name: {"name": name, "unit": "x"} for name in reversed(list(rows))}
    meta["version"] = 2
    (results / "benchmarks.json").write_text(json.dumps(meta, indent=4))
    changed = integrity.drop_retired_benchmarks(results)
    assert [(p.name, n) for p, n in changed] == [
        ("abababab-existing-py3.json", 1),
        ("benchmarks.json", 1),
    ]
    kept = json.loads((folder / "abababab-existing-py3.json").read_text())
    assert list(kept["results"]) == ["bench_forward.Seed.track_ms", "bench_peak.Peak.track_ms"]
    assert {k: v for k, v in kept.items() if k != "results"} == {
        k: v for k, v in data.items() if k != "results"
    }
    assert list(json.loads((results / "benchmarks.json").read_text())) == [
        "bench_peak.Peak.track_ms",
        "bench_forward.Seed.track_ms",
        "version",
    ]
    assert integrity.drop_retired_benchmarks(results) == []  # idempotent
    assert integrity.main(["migrate", str(results)]) == 0


def test_committed_results_hold_no_retired_benchmark():
    root = Path(__file__).resolve().parents[1] / "results"
    for path in [root / "benchmarks.json", *root.glob("*/*-existing-*.json")]:
        data = json.loads(path.read_text())
        names = data.get("results", data)
        assert not [n for n in names if n.rpartition(".")[2] in integrity.RETIRED_METHODS], path
