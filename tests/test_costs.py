"""The cost record of a run (runner/costs.py): built from the progress events, appended to
results/<machine>/runs.jsonl under the machine's lock, printed last by run_commit.

CPU, offline; the end-to-end test runs a throw-away one-class asv suite (seconds).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from runner import costs, git, integrity

REPO = Path(__file__).resolve().parents[1]


def class_events(preset="cpu", path="forward", *, refs=3, triton=2, ref_cache=None, **times):
    tag = f"{path}/{preset}"
    t = dict(reference_s=0.25, first_call_s=0.5, measure_s=1.0, startup_s=2.0) | times
    return [
        {"tag": tag, "event": "class_start", "startup_s": t["startup_s"],
         "caches": {"refs": refs, "triton": triton, "ref_dir": "/r", "triton_dir": "/t"}},
        {"tag": tag, "event": "record", "mode": "math", "record": {"status": "ok"}},
        {"tag": tag, "event": "class_done", "total_s": 9.0, "ref_cache": ref_cache or {"hit": 4},
         **t},
    ]  # fmt: skip


def test_the_record_sums_the_classes_and_names_what_the_rest_is():
    events = class_events("cpu", "forward") + class_events(
        "seed", "gradgrad", refs=0, triton=0, ref_cache={"miss": 2, "skip": 1}, measure_s=3.0
    )
    rec = costs.build_record(events, commit="abc", machine="m", wall_s=20.0)
    assert rec["commit"] == "abc" and rec["machine"] == "m"
    assert rec["presets"] == ["cpu", "seed"] and rec["classes"] == 2
    assert rec["measure_s"] == 4.0 and rec["reference_s"] == 0.5
    assert rec["first_call_s"] == 1.0 and rec["startup_s"] == 4.0
    assert rec["process_asv_s"] == 20.0 - 4.0 - 0.5 - 1.0
    assert rec["ref_cache"] == {"hit": 4, "miss": 2, "skip": 1}
    assert rec["state"] == "warm"  # from the first class: the caches before the run
    assert rec["caches_before"] == {"refs": 3, "triton": 2}
    assert rec["failed"] is False and rec["date"].endswith("Z") and rec["host"]
    want = {"commit", "presets", "state", "wall_s", "measure_s", "reference_s", "first_call_s"}
    assert want | {"process_asv_s", "date", "host"} <= set(rec)
    # parts of process_asv_s: each class's time outside references, first calls and
    # measuring (9.0 - 1.75 and 9.0 - 3.75), no ceilings measured, no asv time recorded
    assert rec["class_other_s"] == 7.25 + 5.25 and rec["peak_s"] == 0.0 and rec["asv_s"] is None
    # parts of measure_s, 0 where the classes did not say (events from before they did)
    assert rec["measure_parity_s"] == rec["measure_graph_s"] == rec["free_memory_s"] == 0.0


def test_the_record_splits_measuring_into_parity_and_graphs():
    events = class_events(parity_s=0.25, graph_s=0.5, free_s=0.125) + class_events(
        "seed", "gradgrad", measure_s=3.0, parity_s=0.5, graph_s=1.25, free_s=0.25
    )
    rec = costs.build_record(events, commit="abc", machine="m", wall_s=20.0)
    assert rec["measure_s"] == 4.0
    assert rec["measure_parity_s"] == 0.75 and rec["measure_graph_s"] == 1.75
    assert rec["free_memory_s"] == 0.375


def test_the_record_names_the_asv_processes_and_the_ceilings_in_the_rest():
    events = class_events() + [
        {"event": "peak_done", "tag": "peak", "total_s": 1.5},
        {"event": "run_info", "asv_runs": 5, "measuring_processes": 1, "asv_s": 6.2},
    ]
    rec = costs.build_record(events, commit="abc", machine="m", wall_s=30.0)
    assert rec["asv_s"] == 6.2 and rec["peak_s"] == 1.5 and rec["class_other_s"] == 7.25
    assert rec["process_asv_s"] == 30.0 - 1.75  # unchanged: the parts are inside it


@pytest.mark.parametrize(
    "refs, triton, state",
    [(3, 2, "warm"), (0, 0, "cold"), (0, 5, "partial"), (4, 0, "partial"), (None, 0, "cold")],
)
def test_warm_means_both_caches_held_entries_before_the_run(refs, triton, state):
    events = class_events(refs=refs, triton=triton)
    assert costs.cache_state(events)[0] == state


def test_a_suite_that_reports_no_caches_is_unknown():
    events = [e for e in class_events() if e["event"] != "class_start"]
    assert costs.build_record(events, commit="a", machine="m", wall_s=1.0)["state"] == "unknown"
    assert costs.build_record([], commit="a", machine="m", wall_s=1.0)["classes"] == 0


def test_records_are_appended_one_line_each(tmp_path):
    folder = tmp_path / "results" / "m"  # created by the first record
    for i in range(3):
        costs.append_record(folder, {"n": i})
    lines = (folder / costs.RUNS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert not list(folder.glob("*.json"))  # merge and reports read *.json only


def test_appending_takes_the_machine_lock_and_is_reentrant(tmp_path):
    folder = tmp_path / "results" / "m"
    with integrity.FolderLock(folder):  # the runner holds it: appending must not wait
        costs.append_record(folder, {"n": 0})
    # another process holding the lock makes an append wait for it
    code = (
        "import sys; from runner import integrity; "
        f"integrity.FolderLock({str(folder)!r}).__enter__(); print('held', flush=True); "
        "sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        appended = threading.Thread(target=costs.append_record, args=(folder, {"n": 1}))
        appended.start()
        appended.join(1.0)
        assert appended.is_alive(), "appended while another process held the lock"
        assert len((folder / costs.RUNS_FILE).read_text().splitlines()) == 1
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    appended.join(30)
    assert len((folder / costs.RUNS_FILE).read_text().splitlines()) == 2


def test_record_run_returns_the_line_it_appended(tmp_path):
    folder = tmp_path / "m"
    line = costs.record_run(folder, class_events(), commit="abc", wall_s=5.0)
    assert (folder / costs.RUNS_FILE).read_text() == line + "\n"
    assert json.loads(line)["machine"] == "m"
    failed = class_events() + [{"event": "asv_failed", "tag": "cpu"}]
    assert json.loads(costs.record_run(folder, failed, commit="abc", wall_s=5.0))["failed"]


def test_a_record_that_cannot_be_written_does_not_fail_the_run(tmp_path, capsys):
    folder = tmp_path / "m"
    (folder / costs.RUNS_FILE).mkdir(parents=True)  # a folder in the file's place
    line = costs.record_run(folder, class_events(), commit="abc", wall_s=5.0)
    assert json.loads(line)["commit"] == "abc"
    assert "not appended" in capsys.readouterr().err


# --- end to end: run_commit appends the record and prints it last ----------------------------

TINY_BENCH = """
import json, os


def _emit(**event):
    path = os.environ.get("BENCH_SUITE_PROGRESS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\\n")


class Tiny:
    def setup_cache(self):
        caches = {"refs": 0, "triton": 0, "ref_dir": "/r", "triton_dir": "/t"}
        _emit(tag="forward/cpu", msg="start", event="class_start", startup_s=0.5, caches=caches)
        _emit(tag="forward/cpu", msg="done", event="class_done", total_s=0.01, startup_s=0.5,
              reference_s=0.002, first_call_s=0.001, measure_s=0.004, ref_cache={"miss": 2})
        return 1

    def track_x(self, cached):
        return 1.0
"""


def test_run_commit_appends_the_record_and_prints_it_last(tmp_path, capfd):
    asv_run = pytest.importorskip("runner.asv_run")
    src = tmp_path / "suite"
    (src / "bench_suite").mkdir(parents=True)
    shutil.copy(REPO / "asv.conf.json", src / "asv.conf.json")
    (src / "bench_suite" / "__init__.py").write_text("")
    (src / "bench_suite" / "bench_tiny.py").write_text(textwrap.dedent(TINY_BENCH))
    results = tmp_path / "results"
    printed = []
    for _ in range(2):
        asv_run.run_commit(
            "HEAD", machine="cpu-cost", results_dir=results, bench=r"^bench_tiny\.", worktree=src
        )
        out = capfd.readouterr().out
        printed.append([line for line in out.splitlines() if line.strip()][-1])
    lines = (results / "cpu-cost" / costs.RUNS_FILE).read_text().splitlines()
    assert lines == printed
    rec = json.loads(lines[-1])
    assert rec["commit"] == git.resolve_commit("HEAD") and rec["machine"] == "cpu-cost"
    assert rec["presets"] == ["cpu"] and rec["classes"] == 1 and rec["state"] == "cold"
    assert rec["measure_s"] == 0.004 and rec["reference_s"] == 0.002
    assert rec["process_asv_s"] == pytest.approx(rec["wall_s"] - 0.007, abs=0.002)


def test_the_overhead_line_says_what_the_reference_cache_did(capsys):
    from runner.progress import print_overhead

    events = class_events(ref_cache={"hit": 3}) + class_events(ref_cache={"hit": 1, "miss": 2})
    print_overhead(events, 10.0)
    assert "fp64/math references 0.5 s (4 hit, 2 miss);" in capsys.readouterr().out
    print_overhead(events + [{"event": "run_info", "asv_runs": 5, "measuring_processes": 1}], 9.0)
    assert "over 2 classes in 1 measuring process and 5 asv runs:" in capsys.readouterr().out
