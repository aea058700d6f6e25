"""Noise and provenance in the committed results (issue 15 items 1 and 5).

- runner/noise.py writes each timing's sample summary (harness.timing.summarize) into
  asv's stats columns of the track_ms / track_host_ms / track_graph_ms rows; reports.load
  reads them back (ci_99_a/b, q_25/q_75, n_samples, noise_*), and ``asv compare`` reads
  the same files.
- runner/machine.py records torch, triton, cuda, python_version, driver, GPU name and
  clocks, and where a result ran; Modal runs get a machine name of their own.

CPU only: synthetic events and hand-built asv v2 result files, stubbed nvidia-smi/python.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from asv_runner.statistics import quantile_ci

from harness import grid, timing
from reports.load import load_results
from runner import machine, noise
from tests.test_reports import RESULT_COLUMNS

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
COLUMNS = RESULT_COLUMNS  # asv's result columns, as tests/test_reports.py writes them


# --- the interval --------------------------------------------------------------------


def test_the_median_interval_is_asvs_order_statistic_interval():
    rng = random.Random(15)
    for n in list(range(1, 40)) + [97, 200, 1001]:
        xs = [rng.lognormvariate(0, 0.3) for _ in range(n)]
        s = timing.summarize(xs)
        _, (a, b) = quantile_ci(xs, 0.5, alpha_min=0.99)
        if math.isinf(a) or math.isinf(b):
            assert n < 8 and s["ci99_lo"] is None and s["ci99_hi"] is None
        else:
            assert (s["ci99_lo"], s["ci99_hi"]) == (a, b), n
            assert s["ci99_lo"] <= s["median"] <= s["ci99_hi"]
    assert timing.median_ci_rank(7) is None and timing.median_ci_rank(8) == 1
    # coverage of (x_(r), x_(n+1-r)): 1 - 2 P(K <= r-1) >= 0.99, and r is the largest such
    for n in (8, 20, 100):
        r = timing.median_ci_rank(n)
        tail = sum(math.comb(n, k) for k in range(r)) / 2**n
        assert 1 - 2 * tail >= 0.99 > 1 - 2 * (tail + math.comb(n, r) / 2**n)


# --- stats columns from the suite's events ---------------------------------------------


def _summary(center: float, n: int = 50, spread: float = 0.01) -> dict:
    return timing.summarize([center * (1 + spread * math.sin(i)) for i in range(n)])


def _events(ms: dict, host: dict | None = None, preset="cpu", path="forward") -> list[dict]:
    """record events of one preset: ``ms``/``host``: (T, mask, mode) -> summary."""
    events = []
    for cfg in grid.preset_configs(preset):
        for mode in grid.PRESETS[preset].modes_for(path):
            key = (cfg.T, cfg.mask, mode)
            rec = {
                "status": "ok",
                "ms_summary": ms.get(key),
                "host_ms_summary": (host or {}).get(key),
                "graph_ms_summary": None,
            }
            events.append(
                {
                    "tag": f"{path}/{preset}",
                    "event": "record",
                    "config": {f: getattr(cfg, f) for f in grid.PARAM_NAMES[:-1]},
                    "mode": mode,
                    "record": rec,
                }
            )
    return events


def _result_file(folder: Path, commit: str, machine_name: str, values, extra_params=None):
    """A minimal asv v2 result file of the CPU forward track_ms/track_host_ms rows (as asv
    saves a track_ row: stats columns trimmed away)."""
    params = [[repr(v) for v in axis] for axis in grid.asv_params("cpu", "forward")]
    n = math.prod(len(a) for a in params)
    rows = {
        "bench_forward.CPU.track_ms": [values(i) for i in range(n)],
        "bench_forward.CPU.track_host_ms": [math.nan] * n,  # a CPU row: no host timer
        "bench_forward.CPU.track_tflops": [1.0] * n,
    }
    data = {
        "commit_hash": commit,
        "env_name": "existing-py3",
        "date": 1_700_000_000_000,
        "params": {"machine": machine_name, "python": "3", **(extra_params or {})},
        "python": "3",
        "requirements": {},
        "env_vars": {},
        "result_columns": COLUMNS,
        "results": {
            name: [vals, params, "v" * 64, 1_700_000_000_000, 1.0] for name, vals in rows.items()
        },
        "durations": {},
        "version": 2,
    }
    path = folder / machine_name / f"{commit[:8]}-existing-py3.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    (folder / "benchmarks.json").write_text((REPO / "results" / "benchmarks.json").read_text())
    (folder / machine_name / "machine.json").write_text(
        json.dumps({"machine": machine_name, "version": 1})
    )
    return path


def _combos():
    axes = grid.asv_params("cpu", "forward")
    return list(itertools.product(*axes))  # asv's row-major order


def test_stats_columns_are_filled_in_param_order_and_read_back(tmp_path):
    combos = _combos()
    ms = {(c[2], c[5], c[6]): _summary(1.0 + i) for i, c in enumerate(combos)}
    del ms[(combos[3][2], combos[3][5], combos[3][6])]  # one value without a summary
    few = (combos[5][2], combos[5][5], combos[5][6])
    ms[few] = timing.summarize([6.0, 6.2, 6.1])  # 3 samples: no 99% order interval
    path = _result_file(tmp_path, "a" * 40, "pytest-prov", lambda i: 1.0 + i)
    before = json.loads(path.read_text())
    filled = noise.fill_results_dir(tmp_path, _events(ms))
    assert filled == len(combos) - 1
    data = json.loads(path.read_text())
    cols = {c: i for i, c in enumerate(data["result_columns"])}
    row = data["results"]["bench_forward.CPU.track_ms"]
    lo, hi = row[cols["stats_ci_99_a"]], row[cols["stats_ci_99_b"]]
    q25, q75, rep = row[cols["stats_q_25"]], row[cols["stats_q_75"]], row[cols["stats_repeat"]]
    for i, c in enumerate(combos):
        s = ms.get((c[2], c[5], c[6]))
        if s is None:
            assert lo[i] is None and q25[i] is None and rep[i] is None
            continue
        assert lo[i] <= row[0][i] <= hi[i]  # the interval is around this value's median
        assert (q25[i], q75[i], rep[i]) == (s["q25"], s["q75"], s["n"])
        if s["ci99_lo"] is not None:
            assert (lo[i], hi[i]) == (s["ci99_lo"], s["ci99_hi"])
    assert lo[5] < 6.0 and hi[5] > 6.2  # the stand-in is wider than the range
    # rows without summaries (CPU host time, tflops) are as asv wrote them
    for name in ("bench_forward.CPU.track_host_ms", "bench_forward.CPU.track_tflops"):
        assert data["results"][name] == before["results"][name]

    df = load_results(tmp_path, repo=None).df
    ms_rows = df[df["metric"] == "ms"].set_index(["T", "mask", "bwd_mode"])
    for c in combos:
        r = ms_rows.loc[(c[2], c[5], c[6])]
        s = ms.get((c[2], c[5], c[6]))
        if s is None:
            assert r["noise_source"] in ("none", "iqr") and r["n_samples"] == 0
            continue
        assert r["noise_source"] == "ci_99" and r["n_samples"] == s["n"]
        assert (r["noise_lo"], r["noise_hi"]) == (r["ci_99_a"], r["ci_99_b"])
        assert (r["q_25"], r["q_75"]) == pytest.approx((s["q25"], s["q75"]))
    host = df[df["metric"] == "host_ms"]
    assert (host["noise_source"] == "none").all() and (host["n_samples"] == 0).all()


def test_events_of_other_presets_and_failed_records_change_nothing(tmp_path):
    path = _result_file(tmp_path, "b" * 40, "pytest-prov", lambda i: 1.0)
    before = path.read_text()
    events = _events({}, preset="seed") + [
        {"event": "record", "tag": "forward/cpu", "config": {}, "mode": "math", "record": {}},
        {"event": "class_done", "tag": "forward/cpu"},
    ]
    failed = _events({(c[2], c[5], c[6]): _summary(1.0) for c in _combos()})
    for e in failed:
        e["record"]["status"] = "fail"
    assert noise.fill_results_dir(tmp_path, events + failed) == 0
    assert path.read_text() == before


def test_asv_compare_reads_the_filled_files(tmp_path):
    """asv compare prints ± from the quartiles and uses the intervals: two files with stats
    filled parse, a 3x change is reported, a change inside the noise is not."""
    old, new = (
        subprocess.run(
            ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for rev in ("HEAD~1", "HEAD")
    )
    combos = _combos()
    results = tmp_path / "results"
    # the first combination triples (outside the noise), the second grows 1.3x inside wide
    # intervals (asv: not significant, "~1.30"), the others move by 0.1%
    change = {0: (3.0, 0.05), 1: (1.3, 0.6)}
    for commit, after in ((old, False), (new, True)):

        def center(i, after=after):
            return (1.0 + i) * (change.get(i, (1.001, 0))[0] if after else 1.0)

        # a private folder per run, as the runner has, then into results/
        private = tmp_path / commit[:8]
        path = _result_file(private, commit, "pytest-prov", center)
        ms = {
            (c[2], c[5], c[6]): _summary(center(i), spread=change.get(i, (0, 0.05))[1])
            for i, c in enumerate(combos)
        }
        assert noise.fill_results_dir(private, _events(ms)) == len(combos)
        (results / "pytest-prov").mkdir(parents=True, exist_ok=True)
        for f in (path, path.parent / "machine.json"):
            (results / "pytest-prov" / f.name).write_text(f.read_text())
    (results / "benchmarks.json").write_text((private / "benchmarks.json").read_text())
    conf = tmp_path / "asv.conf.json"
    conf.write_text(
        json.dumps(
            {
                "version": 1,
                "project": "gradgrad-attention",
                "repo": str(REPO),
                "results_dir": str(results),
                "environment_type": "existing",
                "branches": ["main"],
            }
        )
    )
    proc = subprocess.run(
        [PY, "-m", "asv", "compare", "--config", str(conf), "--machine", "pytest-prov", old, new],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    rows = {}  # benchmark -> (change mark, before, after, ratio): asv's markdown table
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and "track_ms" in cells[4]:
            rows[cells[4]] = cells[:4]
    assert len(rows) == len(combos), out
    assert all("±" in before and "±" in after for _, before, after, _ in rows.values()), out
    name = "bench_forward.CPU.track_ms(1, 2, '128', 64, 'float32', 'none', {})"
    assert rows[name.format("'math'")][0] == "+", out  # 3x: worse, and significant
    assert rows[name.format("'compiled'")][0] == "", out  # 1.3x inside the noise
    assert rows[name.format("'compiled'")][3] == "~1.30", out
    assert sum(mark == "+" for mark, *_ in rows.values()) == 1, out
    # asv publish reads the same files (stats and the provenance params)
    conf_data = json.loads(conf.read_text()) | {"html_dir": str(tmp_path / "html")}
    conf.write_text(json.dumps(conf_data))
    proc = subprocess.run(
        [PY, "-m", "asv", "publish", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "html" / "index.json").is_file()


# --- provenance ------------------------------------------------------------------------


def _stub(folder: Path, name: str, script: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_machine_info_records_the_toolchain_gpu_and_where(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir,
        "nvidia-smi",
        'case "$1" in\n'
        "  --query-gpu=name,memory.total) echo 'NVIDIA H100 80GB HBM3, 81559' ;;\n"
        "  --query-gpu=driver_version,clocks.max.sm,clocks.max.mem,name)\n"
        "     echo '580.95.05, 1980, 2619, NVIDIA H100 80GB HBM3' ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n",
    )
    fake_python = _stub(
        bin_dir,
        "python-stub",
        'echo \'{"python_version": "3.12.3", "torch": "2.11.0", '
        '"triton": "3.6.0", "cuda": "13.0"}\'\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("MODAL_TASK_ID", raising=False)
    assert machine.machine_name() == "h100-sxm-80gb"
    info = machine.machine_info("h100-sxm-80gb", str(fake_python))
    want = {
        "torch": "2.11.0",
        "triton": "3.6.0",
        "cuda": "13.0",
        "python_version": "3.12.3",
        "driver": "580.95.05",
        "gpu": "NVIDIA H100 80GB HBM3",
        "gpu_clock_mhz": "1980",
        "mem_clock_mhz": "2619",
        "where": "local",
    }
    assert {k: info[k] for k in machine.PROVENANCE_KEYS} == want
    assert "python" not in info  # asv's own param ("3"), not ours
    assert all(isinstance(v, str) for v in info.values())  # asv machine fields are strings
    # Modal: a machine of its own, and where=modal
    assert machine.machine_info("h100-sxm-80gb-modal", str(fake_python))["where"] == "modal"
    written = machine.write_machine_file(tmp_path / "m.json", "x", str(fake_python))
    assert json.loads(written.read_text())["x"]["driver"] == "580.95.05"


def test_machine_info_without_gpu_or_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.delenv("MODAL_TASK_ID", raising=False)
    broken = _stub(tmp_path, "python-broken", "exit 3\n")
    info = machine.machine_info("cpu-x86_64", str(broken))
    assert info["where"] == "local"
    assert (info["torch"], info["cuda"], info["python_version"]) == ("-", "-", "-")
    assert "driver" not in info and "gpu_clock_mhz" not in info
    # the real interpreter: versions from package metadata, cuda from torch ("none" on CPU)
    real = machine.software(PY)
    assert real["python_version"] == ".".join(map(str, sys.version_info[:3]))
    import torch

    assert real["cuda"] == (torch.version.cuda or "none")


def test_modal_runs_get_a_machine_name_of_their_own(monkeypatch, tmp_path):
    assert machine.modal_machine_name("h100-sxm-80gb") == "h100-sxm-80gb-modal"
    assert machine.modal_machine_name("h100-sxm-80gb-modal") == "h100-sxm-80gb-modal"
    monkeypatch.delenv("MODAL_TASK_ID", raising=False)
    assert machine.where("h100-sxm-80gb") == "local"
    monkeypatch.setenv("MODAL_TASK_ID", "ta-1")
    assert machine.where("h100-sxm-80gb") == "modal"

    import modal_runner
    from runner import shards

    seen = {}

    class Done:
        manifest = {"commit": "c"}
        skipped = False

    def fake_run_shard(commit, units, root, *, machine, **kw):
        seen["machine"] = machine
        return Done()

    monkeypatch.setattr(machine, "machine_name", lambda n_gpus=None: "h100-sxm-80gb")
    monkeypatch.setattr(shards, "run_shard", fake_run_shard)
    modal_runner.run_shard.local("c", ["u"], out_root=str(tmp_path))
    assert seen["machine"] == "h100-sxm-80gb-modal"
    assert modal_runner.COST_MACHINE == "h100-sxm-80gb-modal"


def test_the_loader_exposes_provenance_and_keeps_hosts_apart(tmp_path):
    prov = {
        "torch": "2.11.0",
        "triton": "3.6.0",
        "cuda": "13.0",
        "python_version": "3.12.3",
        "driver": "580.95.05",
        "gpu": "NVIDIA H100 80GB HBM3",
        "gpu_clock_mhz": "1980",
        "mem_clock_mhz": "2619",
    }
    for name, value, where in (
        ("h100-sxm-80gb", 1.0, "local"),
        ("h100-sxm-80gb-modal", 2.0, "modal"),
    ):
        _result_file(tmp_path, "c" * 40, name, lambda i, v=value: v, {**prov, "where": where})
    _result_file(tmp_path, "d" * 40, "old-machine", lambda i: 3.0, {"torch": "2.9.0"})
    df = load_results(tmp_path, repo=None).df
    for col in ("torch", "triton", "cuda", "driver", "gpu_clock_mhz", "where"):
        assert col in df.columns
    local, modal, old = (
        df[df["machine"] == m] for m in ("h100-sxm-80gb", "h100-sxm-80gb-modal", "old-machine")
    )
    assert set(local["where"]) == {"local"} and set(modal["where"]) == {"modal"}
    assert (local["value"] == 1.0).any() and (modal["value"] == 2.0).any()  # both kept
    assert set(local["gpu_clock_mhz"]) == {1980.0} and set(local["driver"]) == {"580.95.05"}
    assert set(old["torch"]) == {"2.9.0"}
    assert old["cuda"].isna().all() and old["where"].isna().all()
    assert old["gpu_clock_mhz"].isna().all()


def test_merging_rows_of_another_toolchain_into_a_file_warns(tmp_path):
    from runner import merge

    said: list[str] = []
    results = tmp_path / "results"
    one = tmp_path / "one"
    _result_file(one, "e" * 40, "m", lambda i: 1.0, {"torch": "2.11.0", "where": "local"})
    merge.merge_shards([one], results, say=said.append)
    assert not [s for s in said if "WARNING" in s]
    # a re-run of one benchmark of that commit with another torch: the other rows stay
    two = tmp_path / "two"
    path = _result_file(two, "e" * 40, "m", lambda i: 2.0, {"torch": "2.13.0", "where": "local"})
    data = json.loads(path.read_text())
    data["results"] = {k: v for k, v in data["results"].items() if k.endswith("track_ms")}
    path.write_text(json.dumps(data))
    merge.merge_shards([two], results, say=said.append)
    (warning,) = [s for s in said if "WARNING" in s]
    assert "torch 2.11.0 -> 2.13.0" in warning
    assert merge.provenance_diff({"torch": "1"}, {"torch": "1", "cuda": "13.0"}) == []
