"""reports/: loader (real asv output, committed H100 results), regression detection, text,
plots, HTML in headless Chromium, asv publish offline, bad data, speed.

Synthetic asv JSON is generated here in asv's own format (results format version 2, as
written by asv.results.Results.save), never committed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports import metrics, regress  # noqa: E402
from reports.load import NoResultsError, load_results  # noqa: E402

RESULT_COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]
PARAM_NAMES = ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]
METRIC_UNITS = {"ms": "ms", "tflops": "TFLOP/s", "peak_mib": "MiB", "parity": "ratio"}
# Effective TFLOP/s of each mode in the synthetic model (only shapes the numbers).
MODE_TFLOPS = {
    "math": 40.0,
    "sdpa": 400.0,
    "recompute": 60.0,
    "save_p": 120.0,
    "dv_only": 90.0,
    "fused": 250.0,
}
FAMILY_FLOP_FACTOR = {"forward": 1.0, "backward": 3.5, "gradgrad": 10.0}


# Tests that need the real host-bound regime of reports/metrics.py (timings under
# HOST_BOUND_BELOW_MS get a looser threshold); the synthetic series elsewhere use small
# ms values to test the threshold logic itself, so they run with the regime switched off.
REAL_NOISE_MODEL_TESTS = {
    "test_committed_aa_results_flag_nothing",
    "test_committed_h100_results_load_and_report",
    "test_host_bound_timings_need_a_larger_step",
}


@pytest.fixture(autouse=True)
def _host_bound_regime(request, monkeypatch):
    if request.node.originalname not in REAL_NOISE_MODEL_TESTS:
        monkeypatch.setattr(metrics, "HOST_BOUND_BELOW_MS", 0.0)
        # and the H100's A/A noise alone: the synthetic machines have no card of their own,
        # which would take the largest recorded (the H200's 17% for GPU-bound ms)
        real = metrics.aa_defaults
        h100 = {"cards": {"h100-sxm-80gb": real()["cards"]["h100-sxm-80gb"]}}
        monkeypatch.setattr(metrics, "aa_defaults", lambda path=None: real(path) if path else h100)


def _repr_axis(values):
    return [repr(v) for v in values]


def synthetic_suite(n_grid_T=3):
    """Presets -> params (lists per param_names), like bench_suite's classes."""
    modes = list(MODE_TFLOPS)
    grid_T = [str(1024 * 2**i) for i in range(n_grid_T)]
    return {
        "Seed": [[2], [4], ["2048"], [128], ["float16"], ["none"], modes],
        "TTT": [[1], [12], ["1024/9216"], [64, 80, 96], ["bfloat16"], ["window8192"], modes],
        "Grid": [[1], [8], grid_T, [128], ["bfloat16"], ["causal"], modes],
    }


def _model_value(metric, family, combo, scale=1.0):
    B, H, T, D, _dtype, mask, mode = combo
    tq, tk = (int(x) for x in T.split("/")) if "/" in T else (int(T), int(T))
    visible = 0.5 if mask != "none" else 1.0
    flops = 4.0 * B * H * tq * tk * D * visible * FAMILY_FLOP_FACTOR[family]
    if mode == "sdpa" and family == "gradgrad":
        return None  # SDPA has no double backward: skipped, as bench_suite does
    ms = flops / (MODE_TFLOPS[mode] * 1e9) * scale
    if metric == "ms":
        return ms
    if metric == "tflops":
        return flops / (ms * 1e9)
    if metric == "peak_mib":
        quad = B * H * tq * tk * 2 / 2**20
        return (quad * (3 if mode in ("math", "save_p") else 0.1) + 8) * (
            FAMILY_FLOP_FACTOR[family] ** 0.5
        )
    return 1.0 + 0.1 * (hash((family, T, D, mode)) % 5)  # parity ratio


def write_benchmarks_json(results_dir: Path, suite, families=("forward", "backward", "gradgrad")):
    meta = {}
    for family, (preset, params), metric in itertools.product(
        families, suite.items(), METRIC_UNITS
    ):
        name = f"bench_{family}.{preset}.track_{metric}"
        meta[name] = {
            "name": name,
            "param_names": PARAM_NAMES,
            "params": [_repr_axis(a) for a in params],
            "type": "track",
            "unit": METRIC_UNITS[metric],
            "version": "0" * 64,
        }
    meta["version"] = 2
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "benchmarks.json").write_text(json.dumps(meta))


def write_result_file(
    results_dir: Path,
    machine: str,
    commit: str,
    date_ms: int,
    suite,
    scale_for=lambda family, metric, combo: 1.0,
    noise=0.0,
    rng=None,
    families=("forward", "backward", "gradgrad"),
    stats_for=None,
):
    """One asv results file. ``scale_for`` multiplies ms (and divides TFLOP/s) per series;
    ``stats_for(name, combo, value)`` may return (ci_a, ci_b, q25, q75, samples)."""
    rng = rng or np.random.default_rng(0)
    results = {}
    for family, (preset, params), metric in itertools.product(
        families, suite.items(), METRIC_UNITS
    ):
        name = f"bench_{family}.{preset}.track_{metric}"
        values, stats = [], []
        for combo in itertools.product(*params):
            s = scale_for(family, metric, combo)
            v = _model_value(metric, family, combo, s if metric == "ms" else 1.0)
            if v is not None and metric == "tflops":
                v = v / s
            if v is not None and noise and metric in ("ms", "tflops"):
                v *= 1.0 + noise * rng.standard_normal()
            values.append(v)
            stats.append(stats_for(name, combo, v) if stats_for and v is not None else None)
        row = [values, [_repr_axis(a) for a in params], "0" * 64, date_ms + 1000, 1.0]
        if any(s is not None for s in stats):
            cols = list(zip(*[s if s is not None else (None,) * 5 for s in stats]))
            row += [list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3])]
            row += [[10 if s else None for s in stats], [len(s[4]) if s else None for s in stats]]
            row += [list(cols[4])]
        results[name] = row
    data = {
        "commit_hash": commit,
        "env_name": "existing-py_usr_bin_python3",
        "date": date_ms,
        "params": {"machine": machine, "python": "3.12"},
        "python": "3.12",
        "requirements": {},
        "env_vars": {},
        "result_columns": RESULT_COLUMNS,
        "results": results,
        "durations": {},
        "version": 2,
    }
    mdir = results_dir / machine
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    path = mdir / f"{commit[:8]}-existing-py_usr_bin_python3.json"
    path.write_text(json.dumps(data))
    return path


def fake_commit(i: int) -> str:
    return f"{i:08x}" + "ab" * 16


def write_history(
    results_dir: Path,
    n_commits: int,
    machine="h100-sxm-80gb",
    suite=None,
    scale_at=None,
    noise=0.0,
    seed=0,
):
    """n_commits synthetic commits (fake hashes unknown to git: dates from the files)."""
    suite = suite or synthetic_suite()
    write_benchmarks_json(results_dir, suite)
    rng = np.random.default_rng(seed)
    for i in range(n_commits):
        scale_for = (
            (lambda f, m, c, i=i: scale_at(i, f, m, c)) if scale_at else (lambda f, m, c: 1.0)
        )
        write_result_file(
            results_dir,
            machine,
            fake_commit(i),
            1_700_000_000_000 + i * 3_600_000,
            suite,
            scale_for=scale_for,
            noise=noise,
            rng=rng,
        )
    return suite


# --------------------------------------------------------------------------------------------
# Headless Chromium through the DevTools protocol (stdlib only): console errors, uncaught
# exceptions, failed loads, DOM checks, a screenshot. `--enable-logging=stderr` no longer
# prints console messages in Chromium's new headless mode, so we ask it over a pipe.

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
    # Offline: every host but localhost fails to resolve, so a CDN load is an error.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def browse(url, checks, wait_for="true", timeout=30.0, screenshot=None, width=None):
    """Load url in headless Chromium; returns errors, evaluated checks and requested URLs.
    ``width``: the window's CSS width (default the flags' 1280); then ``screenshot`` is the
    whole page (up to 12,000 px tall), not only the window."""
    import base64
    import select
    import tempfile

    chromium = find_chromium()
    r_cmd, w_cmd = os.pipe()
    r_out, w_out = os.pipe()

    def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
        a, b = os.dup(r_cmd), os.dup(w_out)
        os.dup2(a, 3)
        os.dup2(b, 4)

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        preexec_fn=child_fds,
        close_fds=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(r_cmd)
    os.close(w_out)
    buf, events, counter = b"", [], itertools.count(1)

    def send(method, params=None, session=None):
        i = next(counter)
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(w_cmd, json.dumps(msg).encode() + b"\0")
        return i

    def read_until(pred, deadline):
        nonlocal buf
        while True:
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    events.append(msg)
                if pred(msg):
                    return msg
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"chromium gave no answer for {url}")
            if select.select([r_out], [], [], left)[0]:
                chunk = os.read(r_out, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium exited")
                buf += chunk

    def call(method, params=None, session=None):
        i = send(method, params, session)
        msg = read_until(lambda m: m.get("id") == i, time.time() + timeout)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    def evaluate(expr, session):
        res = call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        return res.get("result", {}).get("value")

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            call(f"{domain}.enable", session=sid)
        if width:
            metrics_ = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
            call("Emulation.setDeviceMetricsOverride", metrics_, sid)
        call("Page.navigate", {"url": url}, sid)
        read_until(lambda m: m.get("method") == "Page.loadEventFired", time.time() + timeout)
        wait_deadline = time.time() + timeout / 3
        while not evaluate(f"!!({wait_for})", sid) and time.time() < wait_deadline:
            time.sleep(0.2)
        time.sleep(0.3)  # late errors from scripts that run after the condition
        values = {name: evaluate(expr, sid) for name, expr in checks.items()}
        if screenshot:
            params = {"format": "png"}
            if width:
                size = call("Page.getLayoutMetrics", session=sid)["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": size["width"], "scale": 1}
                clip["height"] = min(size["height"], 12_000)
                params.update(captureBeyondViewport=True, clip=clip)
            data = call("Page.captureScreenshot", params, sid)["data"]
            Path(screenshot).write_bytes(base64.b64decode(data))
    finally:
        try:
            send("Browser.close")
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(w_cmd)
        os.close(r_out)
        shutil.rmtree(profile, ignore_errors=True)

    errors = []
    for e in events:
        method, p = e["method"], e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append(f"uncaught: {d.get('exception', {}).get('description', d.get('text'))}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console.error: " + " ".join(str(a.get("value")) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"{p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            errors.append(f"load failed: {p.get('errorText')}")
    requests = [
        e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
    ]
    return {"errors": errors, "values": values, "requests": requests}


@pytest.fixture(scope="session")
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip(
            "chromium is not installed and could not be: `make test` runs "
            "`apt-get install -y chromium` when it is missing (needs root + network)"
        )
    return path


# --------------------------------------------------------------------------------------------
# A real asv run: a tiny throwaway suite in a git repo, two commits, `asv run -E existing`.

TINY_SUITE = """
from ._scale import SCALE

MODE_MS = {"math": 4.0, "fused": 1.0}


class Seed:
    params = ([2], [4], ["2048"], [128], ["float16"], ["none"], ["math", "fused", "sdpa"])
    param_names = ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]

    def setup(self, B, H, T, D, dtype, mask, bwd_mode):
        if bwd_mode == "sdpa":
            raise NotImplementedError("not applicable here")

    def track_ms(self, B, H, T, D, dtype, mask, bwd_mode):
        return MODE_MS[bwd_mode] * (SCALE if bwd_mode == "fused" else 1.0)

    track_ms.unit = "ms"

    def track_tflops(self, B, H, T, D, dtype, mask, bwd_mode):
        flops = 4 * B * H * int(T) ** 2 * D
        return flops / (self.track_ms(B, H, T, D, dtype, mask, bwd_mode) * 1e9)

    track_tflops.unit = "TFLOP/s"

    def track_peak_mib(self, B, H, T, D, dtype, mask, bwd_mode):
        return {"math": 1500.0, "fused": 40.0}[bwd_mode]

    track_peak_mib.unit = "MiB"

    def time_tiny(self, B, H, T, D, dtype, mask, bwd_mode):
        sum(range(300))

    time_tiny.repeat = (5, 7, 1.0)
    time_tiny.number = 20
    time_tiny.warmup_time = 0.0
"""


def _run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def asv_project(tmp_path_factory):
    """Two commits measured by asv: the second makes `fused` 1.25x slower (a regression)."""
    root = tmp_path_factory.mktemp("asvproj")
    bench = root / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    (bench / "bench_forward.py").write_text(TINY_SUITE)
    (root / "asv.conf.json").write_text(
        json.dumps(
            {
                "version": 1,
                "project": "tiny",
                "repo": ".",
                "branches": ["HEAD"],
                "benchmark_dir": "benchmarks",
                "results_dir": "results",
                "html_dir": "html",
                "environment_type": "existing",
            }
        )
    )
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    (root / "home").mkdir()
    asv = [sys.executable, "-m", "asv"]
    _run(["git", "init", "-q", "."], root, env)
    _run(asv + ["machine", "--yes", "--machine", "testbox"], root, env)
    commits = []
    for i, scale in enumerate([1.0, 1.25]):
        (bench / "_scale.py").write_text(f"SCALE = {scale}\n")
        _run(["git", "add", "-A"], root, env)
        # Distinct, increasing commit dates (git's resolution is 1 s).
        stamp = f"2026-01-0{i + 1}T12:00:00+00:00"
        _run(
            ["git", "commit", "-qm", f"scale {scale}"],
            root,
            {**env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )
        sha = _run(["git", "rev-parse", "HEAD"], root, env).strip()
        _run(
            asv
            + [
                "run",
                "-E",
                f"existing:{sys.executable}",
                "--set-commit-hash",
                sha,
                "--machine",
                "testbox",
                "--record-samples",
                "--launch-method",
                "forkserver",
            ],
            root,
            env,
        )
        commits.append(sha)
    return {"root": root, "results": root / "results", "commits": commits, "env": env}


def test_loader_reads_real_asv_output(asv_project):
    df = load_results(asv_project["results"], repo=asv_project["root"]).df
    c1, c2 = asv_project["commits"]
    assert set(df["commit"]) == {c1, c2}
    # 4 benchmarks x 3 bwd_modes x 2 commits, sdpa skipped (NaN) in every one of them.
    assert len(df) == 24
    assert df[df["bwd_mode"] == "sdpa"]["value"].isna().all()
    assert df[df["bwd_mode"] != "sdpa"]["value"].notna().all()
    order = df.drop_duplicates("commit").set_index("commit")["commit_order"]
    assert order[c1] < order[c2]
    assert str(df[df["commit"] == c1]["commit_date"].iloc[0]) == "2026-01-01 12:00:00+00:00"
    row = df[(df["commit"] == c1) & (df["metric"] == "ms") & (df["bwd_mode"] == "math")].iloc[0]
    assert (row["family"], row["preset"], row["unit"], row["direction"]) == (
        "forward",
        "Seed",
        "ms",
        "lower",
    )
    assert (row["B"], row["T"], row["D"], row["dtype"], row["mask"]) == (
        2,
        "2048",
        128,
        "float16",
        "none",
    )
    assert (row["Tq"], row["Tk"], row["value"]) == (2048, 2048, 4.0)
    tflops = df[(df["metric"] == "tflops") & (df["bwd_mode"] == "math")]
    assert (tflops["direction"] == "higher").all()
    # asv's own timing stats and samples come through for time_ benchmarks.
    timed = df[(df["metric"] == "time_tiny") & df["value"].notna()]
    assert (timed["unit"] == "seconds").all()
    assert np.isfinite(timed[["ci_99_a", "ci_99_b", "q_25", "q_75"]].to_numpy()).all()
    assert (timed["noise_source"] == "ci_99").all() and (timed["n_samples"] >= 5).all()
    assert all(len(json.loads(s)) == n for s, n in zip(timed["samples"], timed["n_samples"]))


def test_real_asv_history_flags_the_slower_commit(asv_project):
    df = load_results(asv_project["results"], repo=asv_project["root"]).df
    changes = regress.history(df)
    flagged = changes[changes["status"].isin(regress.BAD_STATUSES)]
    flagged = {(r.metric, r.bwd_mode, r.commit_new) for r in flagged.itertuples()}
    c2 = asv_project["commits"][1]
    # ms up 25% and TFLOP/s down 20% for fused: both regressions; nothing else is.
    assert {("ms", "fused", c2), ("tflops", "fused", c2)} <= flagged
    assert all(m in ("ms", "tflops", "time_tiny") for m, _, _ in flagged)
    assert not {f for f in flagged if f[0] in ("ms", "tflops") and f[1] != "fused"}


def test_compare_cli_exit_codes(asv_project, capsys):
    from reports.cli import EXIT_OK, EXIT_REGRESSION, main

    c1, c2 = asv_project["commits"]
    res, repo = str(asv_project["results"]), str(asv_project["root"])
    # time_tiny is a real CPU timing: noisy on a shared box, so hold it to a loose threshold.
    loose = ["--threshold", "seconds=1000"]
    rc = main(["compare", c1[:8], c2[:8], "--results", res, "--repo", repo, *loose])
    out = capsys.readouterr().out
    assert rc == EXIT_REGRESSION
    assert "REGRESSIONS" in out and "bench_forward.Seed.track_ms" in out and "+25.0%" in out
    assert "bwd_mode=fused" in out and "bwd_mode=math" not in out.split("IMPROVEMENTS")[0]
    rc = main(["compare", c2, c1, "--results", res, "--repo", repo, *loose])
    out = capsys.readouterr().out
    assert rc == EXIT_OK and "IMPROVEMENTS" in out and "REGRESSIONS" not in out
    # git refs resolve too
    rc = main(["compare", "HEAD~1", "HEAD", "--results", res, "--repo", repo, *loose])
    assert rc == EXIT_REGRESSION
    capsys.readouterr()


def test_cli_runs_as_module_without_torch(asv_project, tmp_path):
    """`python -m reports` builds everything, and neither reports nor its imports pull torch."""
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["reports", "--results", {str(asv_project["results"])!r},
                    "--repo", {str(asv_project["root"])!r}, "--out", {str(out)!r}]
        try:
            runpy.run_module("reports", run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        import reports.publish  # noqa
        bad = [m for m in ("torch", "triton") if m in sys.modules]
        assert not bad, bad
        print("NO_TORCH_OK")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NO_TORCH_OK" in proc.stdout
    assert (out / "testbox_latest.txt").is_file()
    assert (out / "data" / "all_results.csv").is_file()
    assert (out / "html" / "index.html").is_file()
    assert sorted(p.name for p in (out / "plots" / "testbox").iterdir()) == sorted(
        f"{stem}.{ext}" for stem in ("trend_forward", "speed_memory") for ext in ("png", "svg")
    )
    latest = (out / "testbox_latest.txt").read_text()
    assert "HEADLINE" in latest and "seed: B=2 H=4 T=2048 D=128" in latest
    # fused at the newest commit: 4.0 / 1.25 ms = 3.2x faster than math, 40 / 1500 MiB.
    assert "3.20x win 0.03x mem" in latest


def test_committed_h100_results_load_and_report():
    files = sorted(p for p in (ROOT / "results").glob("h100*/*.json") if p.name != "machine.json")
    if not files:
        pytest.skip(
            "no committed H100 results yet (results/h100*/*.json): the lead commits "
            "them after the H100 run"
        )
    loaded = load_results(ROOT / "results", repo=ROOT)
    assert not [s for s in loaded.skipped if "/h100" in s[0]], loaded.skipped
    df = loaded.df
    h100 = df[df["machine"].str.startswith("h100")]
    assert h100["value"].notna().any()
    assert set(h100["family"]) <= {"forward", "backward", "gradgrad", "peak"}
    assert {"B", "H", "T", "D", "dtype", "mask", "bwd_mode"} <= set(df.columns)
    from reports import text

    for machine in sorted(
        set(h100["machine"]) - {m for m in h100["machine"] if metrics.is_aa_machine(m)}
    ):
        report = text.latest_text(df, machine, regress.history(df))
        assert "HEADLINE" in report and "PER CONFIG" in report
        assert "% peak = TFLOP/s / 790" in report or "by bench_peak.Peak at" in report
        assert "legacy" in report or "by bench_peak.Peak at" in report
        # Every preset ever measured on the machine is in its latest view, whichever
        # commit last measured it (a partial newest run hides nothing).
        for preset in set(df.loc[df["machine"] == machine, "preset"]):
            assert f" | {preset} | " in report, preset


def test_committed_aa_results_flag_nothing():
    """The H100 A/A pair: results/<machine>-aa* repeats a commit of results/<machine> (or of
    another -aa* folder). The detector, with the thresholds in reports/metrics.py, flags
    none of the differences."""
    aa_dirs = sorted(p for p in (ROOT / "results").glob("h100*-aa*") if p.is_dir())
    if not aa_dirs:
        pytest.skip("no committed A/A results (results/h100*-aa*) yet")
    repeat = aa_dirs[-1]
    base = aa_dirs[0] if len(aa_dirs) > 1 else repeat.with_name(re.sub(r"-aa\d*$", "", repeat.name))
    old = load_results(base, repo=ROOT).df
    new = load_results(repeat, repo=ROOT).df
    assert set(old["commit"]) & set(new["commit"]), "the A/A repeat must share a commit"
    summary = regress.aa_summary(old, new)
    assert not summary.empty and (summary["pairs"] > 0).all()
    assert summary["flagged_now"].sum() == 0, summary.to_string()


# --------------------------------------------------------------------------------------------
# Regression detection on synthetic series.


def _series(values, unit="ms", lo=None, hi=None, metric=None):
    n = len(values)
    return pd.DataFrame(
        {
            "machine": "m",
            "benchmark": f"bench_gradgrad.Seed.track_{metric or unit}",
            "params": "B=2 bwd_mode=fused",
            "family": "gradgrad",
            "preset": "Seed",
            "metric": metric or unit,
            "unit": unit,
            "direction": metrics.direction(unit),
            "config": "B=2",
            "bwd_mode": "fused",
            "commit": [fake_commit(i) for i in range(n)],
            "commit_order": np.arange(n),
            "value": np.asarray(values, float),
            "noise_lo": np.full(n, np.nan) if lo is None else lo,
            "noise_hi": np.full(n, np.nan) if hi is None else hi,
        }
    )


def test_ten_percent_step_in_ms_is_caught():
    rng = np.random.default_rng(1)
    values = 2.0 * (1 + 0.01 * rng.standard_normal(30))  # 1% noise, like do_bench medians
    values[15:] *= 1.10
    changes = regress.history(_series(values))
    bad = changes[changes["status"] == regress.REGRESSION]
    assert bad["commit_order_new"].tolist() == [15]
    assert 5 < bad["change_pct"].iloc[0] < 15


def test_ten_percent_step_with_asv_stats_is_caught_and_noise_is_not():
    """asv-style samples (median, 99% CI from asv_runner.statistics) with an 8% spread: the
    medians often differ by more than the 5% threshold, yet the CIs overlap: never flagged.
    The same spread with a 10% step and 25 samples is caught."""
    from asv_runner.statistics import compute_stats

    rng = np.random.default_rng(7)

    def run(n_commits, n_samples, sigma, step_at=None):
        vals, lo, hi = [], [], []
        for i in range(n_commits):
            mu = 2.0 * (1.10 if step_at is not None and i >= step_at else 1.0)
            samples = list(mu * (1 + sigma * rng.standard_normal(n_samples)))
            med, stats = compute_stats(samples, 1)
            vals.append(med)
            lo.append(stats["ci_99_a"])
            hi.append(stats["ci_99_b"])
        return _series(vals, lo=np.array(lo), hi=np.array(hi))

    noise = regress.history(run(40, 7, 0.08))
    raw_jumps = noise["change_pct"].abs() > 5
    assert raw_jumps.sum() >= 3, "the spread must exceed the threshold for this test to mean much"
    assert not noise["status"].isin([regress.REGRESSION, regress.IMPROVEMENT]).any()
    assert (noise.loc[raw_jumps, "status"] == regress.NOISE).all()

    stepped = regress.history(run(20, 400, 0.03, step_at=10))
    bad = stepped[stepped["status"] == regress.REGRESSION]
    assert bad["commit_order_new"].tolist() == [10]


def test_pure_noise_within_threshold_is_not_flagged():
    rng = np.random.default_rng(3)
    values = 2.0 * (1 + 0.01 * rng.standard_normal(200))  # 1% spread vs the 5% threshold
    changes = regress.history(_series(values))
    assert not changes["status"].isin([regress.REGRESSION, regress.IMPROVEMENT]).any()


def test_tflops_increase_is_an_improvement_and_decrease_a_regression():
    up = regress.history(_series([300.0, 300.0, 360.0], unit="TFLOP/s", metric="tflops"))
    assert up["status"].tolist() == [regress.NEW, regress.UNCHANGED, regress.IMPROVEMENT]
    down = regress.history(_series([300.0, 240.0], unit="TFLOP/s", metric="tflops"))
    assert down["status"].tolist()[-1] == regress.REGRESSION
    assert down["worse_pct"].iloc[-1] == pytest.approx(20.0)


def test_memory_direction():
    more = regress.history(_series([1000.0, 1100.0], unit="MiB", metric="peak_mib"))
    less = regress.history(_series([1000.0, 900.0], unit="MiB", metric="peak_mib"))
    same = regress.history(_series([1000.0, 1001.0], unit="MiB", metric="peak_mib"))
    assert more["status"].iloc[-1] == regress.REGRESSION
    assert less["status"].iloc[-1] == regress.IMPROVEMENT
    assert same["status"].iloc[-1] == regress.UNCHANGED  # 0.1%, 1 MiB: allocator noise


def test_failure_after_a_value_is_reported_once_and_recovery_compares_to_last_value():
    changes = regress.history(_series([2.0, np.nan, np.nan, 2.5]))
    assert changes["status"].tolist() == [
        regress.NEW,
        regress.FAILED,
        regress.UNCHANGED,
        regress.REGRESSION,
    ]
    assert changes["value_old"].iloc[-1] == 2.0


def test_threshold_override():
    series = _series([2.0, 2.08])  # +4%
    assert regress.history(series)["status"].iloc[-1] == regress.UNCHANGED
    assert regress.history(series, {"ms": 0.03})["status"].iloc[-1] == regress.REGRESSION


def test_aa_summary_and_cli(tmp_path, capsys):
    from reports.cli import EXIT_OK, main

    suite = synthetic_suite()
    for name, seed in (("h100-sxm-80gb-aa1", 1), ("h100-sxm-80gb-aa2", 2)):
        write_benchmarks_json(tmp_path / name, suite)
        write_result_file(
            tmp_path / name,
            name,
            fake_commit(0),
            1_700_000_000_000,
            suite,
            noise=0.01,
            rng=np.random.default_rng(seed),
        )
    a, b = tmp_path / "h100-sxm-80gb-aa1", tmp_path / "h100-sxm-80gb-aa2"
    summary = regress.aa_summary(load_results(a, repo=None).df, load_results(b, repo=None).df)
    ms = summary[summary["metric"] == "ms"].iloc[0]
    assert 1.0 < ms["max_abs_diff_pct"] < 6.0  # 1% noise per run
    assert ms["implied_threshold_pct"] >= 1.5 * ms["max_abs_diff_pct"]
    assert summary[summary["metric"] == "peak_mib"]["max_abs_diff_pct"].iloc[0] == 0
    assert main(["aa", str(a), str(b), "--repo", str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "implied thresholds" in out and "'ms': rel_threshold=" in out
    assert "flag 0 of the A/A pairs" in out


def test_units_and_directions_live_in_metrics():
    assert metrics.direction("ms") == metrics.direction("MiB") == metrics.LOWER_IS_BETTER
    assert metrics.direction("ratio") == metrics.LOWER_IS_BETTER
    assert metrics.direction("TFLOP/s") == metrics.HIGHER_IS_BETTER
    assert metrics.direction("furlongs") == metrics.LOWER_IS_BETTER  # asv's default
    # host time moves 1.6-1.9x with the host: flagged only on doubling (bench_suite unit)
    assert metrics.direction("host ms") == metrics.LOWER_IS_BETTER
    assert metrics.unit_rule("host ms").rel_threshold == 1.0
    assert metrics.peak_tflops("h100-sxm-80gb") == 790.0
    assert metrics.peak_tflops("cpu-x86_64") is None
    assert metrics.implied_threshold(0.02) == pytest.approx(0.03)
    assert metrics.is_aa_machine("h100-sxm-80gb-aa2")
    assert not metrics.is_aa_machine("h100-sxm-80gb")


# --------------------------------------------------------------------------------------------
# Bad data: skipped with a warning naming the file; nothing crashes.


@pytest.fixture
def small_history(tmp_path):
    results = tmp_path / "results"
    write_history(results, 3)
    return results


def test_malformed_truncated_and_foreign_files_are_skipped(small_history, caplog):
    mdir = small_history / "h100-sxm-80gb"
    good = sorted(mdir.glob("0*.json"))
    truncated = mdir / "deadbeef-truncated.json"
    truncated.write_text(good[0].read_text()[:500])
    (mdir / "garbage.json").write_text("{not json at all")
    (mdir / "foreign.json").write_text(json.dumps({"name": "some-npm-package", "version": "1"}))
    (mdir / "a-list.json").write_text("[1, 2, 3]")
    old = json.loads(good[0].read_text())
    old["version"] = 1
    (mdir / "oldformat.json").write_text(json.dumps(old))
    bad_row = json.loads(good[1].read_text())
    bad_row["results"]["bench_forward.Seed.track_ms"][0] = [1.0, 2.0]  # 2 values, 6 combos
    (good[1]).write_text(json.dumps(bad_row))
    with caplog.at_level("WARNING", logger="reports"):
        loaded = load_results(small_history, repo=None)
    skipped = {Path(p.split(":")[0]).name for p, _ in loaded.skipped}
    assert {
        "deadbeef-truncated.json",
        "garbage.json",
        "foreign.json",
        "a-list.json",
        "oldformat.json",
        good[1].name,
    } <= skipped
    for name in ("deadbeef-truncated.json", "garbage.json", "foreign.json", "oldformat.json"):
        assert name in caplog.text
    assert (
        "bench_forward.Seed.track_ms" in caplog.text and "6 parameter combinations" in caplog.text
    )
    df = loaded.df
    assert df["commit"].nunique() == 3  # the good files all loaded, and the good rows of good[1]
    assert df[
        (df["commit"] == fake_commit(1)) & (df["benchmark"] == "bench_forward.Seed.track_ms")
    ].empty


def test_empty_results_give_a_clear_message_and_exit_code(tmp_path, capsys):
    from reports.cli import EXIT_NO_RESULTS, main

    empty = tmp_path / "results"
    empty.mkdir()
    with pytest.raises(NoResultsError, match="no asv results found"):
        load_results(empty, repo=None)
    assert main(["--results", str(empty), "--out", str(tmp_path / "o")]) == EXIT_NO_RESULTS
    err = capsys.readouterr().err
    assert "error: no asv results found" in err and "Traceback" not in err
    assert main(["--results", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 3
    assert "does not exist" in capsys.readouterr().err
    # only broken files: still a clear message, after the warnings
    (empty / "m").mkdir()
    (empty / "m" / "x.json").write_text("{")
    assert main(["--results", str(empty), "--out", str(tmp_path / "o")]) == EXIT_NO_RESULTS
    assert main(["compare", "abc", "def", "--results", str(empty)]) == EXIT_NO_RESULTS


def test_unknown_commit_and_missing_benchmarks_json(small_history, capsys, caplog):
    from reports.cli import EXIT_USAGE, main

    assert (
        main(
            [
                "compare",
                "ffffffff",
                "latest",
                "--results",
                str(small_history),
                "--repo",
                str(small_history),
            ]
        )
        == EXIT_USAGE
    )
    assert "no results for commit 'ffffffff'" in capsys.readouterr().err
    (small_history / "benchmarks.json").unlink()
    with caplog.at_level("WARNING", logger="reports"):
        df = load_results(small_history, repo=None).df
    assert "no benchmarks.json" in caplog.text
    assert set(df["direction"]) == {"lower"}  # units unknown: asv's default, said loudly


def test_foreign_benchmark_names_load(tmp_path):
    """Any valid asv benchmark loads: family/preset from the dotted parts, params as given."""
    data = {
        "commit_hash": "c" * 40,
        "env_name": "e",
        "date": 1_700_000_000_000,
        "params": {"machine": "laptop"},
        "python": "3.11",
        "requirements": {},
        "env_vars": {},
        "result_columns": RESULT_COLUMNS,
        "version": 2,
        "durations": {},
        "results": {
            "suite.sub.bench_io.Reader.time_read": [[0.5, 0.7], [["'a'", "'b'"]]],
            "plain.track_thing": [[3.0], []],
        },
    }
    (tmp_path / "laptop").mkdir()
    (tmp_path / "laptop" / "cccccccc-e.json").write_text(json.dumps(data))
    df = load_results(tmp_path, repo=None).df
    r = df.set_index("benchmark")
    assert r.loc["plain.track_thing", "family"] == "plain"
    assert r.loc["plain.track_thing", "preset"] == ""
    assert r.loc["plain.track_thing", "metric"] == "thing"
    reader = df[df["benchmark"] == "suite.sub.bench_io.Reader.time_read"]
    assert set(reader["family"]) == {"io"} and set(reader["preset"]) == {"Reader"}
    assert sorted(reader["p0"]) == ["a", "b"]


# --------------------------------------------------------------------------------------------
# The built report: text, plots, HTML in a real browser, and speed.


def _regressing_history(results, n=6):
    # gradgrad fused 20% slower from commit 4 on: a regression in ms and in TFLOP/s.
    return write_history(
        results,
        n,
        noise=0.0,
        scale_at=lambda i, f, m, c: 1.2 if i >= 4 and f == "gradgrad" and c[-1] == "fused" else 1.0,
    )


def test_report_outputs(tmp_path):
    from reports.cli import build

    results = tmp_path / "results"
    _regressing_history(results)
    run = {"presets": ["seed"], "state": "warm", "wall_s": 50.0, "measure_s": 40.0}
    (results / "h100-sxm-80gb" / "runs.jsonl").write_text(json.dumps(run) + "\n")
    res = build(results, tmp_path / "out", repo=None, commit_url=None)
    out = tmp_path / "out"
    text_report = (out / "h100-sxm-80gb_latest.txt").read_text()
    assert "RUN COST (runs.jsonl" in text_report and "50.0 s, 20% outside measuring" in text_report
    head = text_report.split("PER CONFIG")[0]
    assert "seed: B=2 H=4 T=2048 D=128 dtype=float16 mask=none" in head
    assert "ttt: B=1 H=12 T=1024/9216 D=64 dtype=bfloat16 mask=window8192" in head
    assert "regression  bench_gradgrad.Seed.track_ms" not in head  # commit 4 is not the newest
    # per config: math vs each mode; sdpa skipped in gradgrad shows n/a
    block = text_report.split("== gradgrad | Seed |")[1].split("==")[0]
    assert re.search(r"math\s+\S+\s+1\.00x\s+--", block)
    assert re.search(r"sdpa\s+n/a", block)
    assert "% peak" in text_report
    csv = pd.read_csv(out / "data" / "all_results.csv")
    assert len(csv) == len(res["df"]) and {"value", "bwd_mode", "unit", "direction"} <= set(csv)
    changes = pd.read_csv(out / "data" / "changes.csv")
    bad = changes[changes["status"] == "regression"]
    assert set(bad["metric"]) == {"ms", "tflops"}
    assert set(bad["commit_new"].str[:8]) == {fake_commit(4)[:8]}
    pngs = sorted(p.name for p in (out / "plots" / "h100-sxm-80gb").glob("*.png"))
    assert pngs == [
        "roofline.png",  # reports/roofline.py: the legacy H100 matmul roof
        "scaling_T.png",
        "speed_memory.png",
        "trend_backward.png",
        "trend_forward.png",
        "trend_gradgrad.png",
    ]
    for p in (out / "plots" / "h100-sxm-80gb").iterdir():
        assert p.stat().st_size > 5000, p


# Screenshots the browser tests keep (gitignored): REPORTS_TEST_ARTIFACTS moves them.
ARTIFACTS = Path(os.environ.get("REPORTS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
WINDOW_PX = 1400  # the dashboard must fit this window without sideways scrolling
INDEX_MAX_BYTES = int(1.5 * 2**20)
PAGE_CHECKS = {
    "scroll_width": "document.documentElement.scrollWidth",
    "inner_width": "window.innerWidth",
    "height": "document.documentElement.scrollHeight",
    "images": "document.images.length",
    "images_loaded": "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length",
}


def _offline_page(page: str) -> bool:
    return "<script" not in page and "http://" not in page.replace("https://example.invalid", "")


def test_html_dashboard_in_headless_chromium(tmp_path, chromium):
    from reports.cli import build

    results = tmp_path / "results"
    _regressing_history(results, n=5)  # the newest commit (4) regresses gradgrad fused
    build(results, tmp_path / "out", repo=None, commit_url="https://example.invalid/c/{commit}")
    html_dir = tmp_path / "out" / "html"
    index = html_dir / "index.html"
    assert index.stat().st_size < INDEX_MAX_BYTES
    pages = sorted(p.name for p in html_dir.glob("*.html"))
    assert pages == [
        "index.html",
        "machine-h100-sxm-80gb.html",
        *(f"preset-{p}.html" for p in sorted(["Seed", "TTT", "Grid"])),
    ]
    for name in pages:
        assert _offline_page((html_dir / name).read_text()), name
    checks = {
        **PAGE_CHECKS,
        "headline_rows": "document.querySelectorAll('table.headline tr').length",
        "headline_text": "document.querySelector('table.headline').innerText",
        "regression_rows": "document.querySelectorAll('table.regressions tr.bad').length",
        "regression_text": "document.querySelector('table.regressions').innerText",
        "latest_text": "document.getElementById('latest').parentElement.innerText",
        "commit_link": "document.querySelector('#latest ~ h3 a[href^=\"https\"]').href",
        "machine_links": "[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))"
        ".filter(h => h.startsWith('machine-') || h.startsWith('preset-')).length",
        "rules_text": "document.querySelector('table.rules').innerText",
    }
    r = browse(index.as_uri(), checks, "document.readyState === 'complete'", width=WINDOW_PX)
    v = r["values"]
    assert r["errors"] == []
    assert v["inner_width"] == WINDOW_PX and v["scroll_width"] <= WINDOW_PX, v
    assert v["headline_rows"] >= 4 and "vs" in v["headline_text"]
    assert v["regression_rows"] >= 2 and "bench_gradgrad.Seed.track_ms" in v["regression_text"]
    assert "->" in v["regression_text"]  # old -> new
    assert fake_commit(4)[:8] in v["latest_text"] and "regression: " in v["latest_text"]
    assert v["commit_link"].startswith("https://example.invalid/c/")
    assert v["machine_links"] >= 4
    # rendered from metrics.HOST_BOUND_BELOW_MS (the fixture above moves it)
    assert f"host_bound: own ms < {metrics.HOST_BOUND_BELOW_MS:g}" in v["rules_text"]
    assert all(u.startswith(("file://", "data:")) for u in r["requests"]), r["requests"]

    # The machine page holds the plots; every page fits the window.
    for name in pages[1:]:
        r = browse((html_dir / name).as_uri(), PAGE_CHECKS, width=WINDOW_PX)
        v = r["values"]
        assert r["errors"] == [], (name, r["errors"])
        assert v["scroll_width"] <= WINDOW_PX, (name, v)
        if name.startswith("machine-"):
            # the five plots and the roofline (reports/roofline.py; legacy H100 roof)
            assert v["images"] == 6 and v["images_loaded"] == 6, v

    # The check can fail: a missing image, a script error, a too wide page are reported.
    broken = index.with_name("broken.html")
    page = index.read_text()
    broken.write_text(
        page.replace(
            "</body>",
            "<img src='nope.png'><div style='width:3000px'>x</div>"
            "<script>undefined_fn()</script></body>",
        )
    )
    r = browse(broken.as_uri(), PAGE_CHECKS, "document.readyState === 'complete'", width=WINDOW_PX)
    assert any("nope.png" in e or "ERR_FILE_NOT_FOUND" in e for e in r["errors"]), r["errors"]
    assert any("undefined_fn" in e for e in r["errors"]), r["errors"]
    assert r["values"]["scroll_width"] > WINDOW_PX


def test_committed_report_dashboard_in_headless_chromium(chromium, capsys):
    """The committed report/html: every page loads without errors and fits a 1,400 px window;
    the index stays under 1.5 MiB. The index's screenshot is kept in test-artifacts/."""
    html_dir = ROOT / "report" / "html"
    index = html_dir / "index.html"
    assert index.stat().st_size < INDEX_MAX_BYTES
    pages = sorted(html_dir.glob("*.html"))
    assert index in pages and any(p.name.startswith("machine-") for p in pages)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-index.png"
    for page in pages:
        assert _offline_page(page.read_text()), page.name
        r = browse(
            page.as_uri(),
            PAGE_CHECKS,
            "document.readyState === 'complete'",
            screenshot=shot if page == index else None,
            width=WINDOW_PX,
        )
        v = r["values"]
        assert r["errors"] == [], (page.name, r["errors"])
        assert v["scroll_width"] <= WINDOW_PX, (page.name, v)
        assert v["images_loaded"] == v["images"], (page.name, v)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    with capsys.disabled():
        print(f"\nscreenshot of report/html/index.html at {WINDOW_PX} px: {shot}")


def test_vendored_assets_match_asv_cdn_integrity():
    """The vendored copies are the files asv's page asks for: the SRI hashes in asv's own
    index.html match byte for byte where we vendored the same build."""
    import base64
    import hashlib

    import asv

    from reports import publish

    page = (Path(asv.__file__).parent / "www" / "index.html").read_text()
    tags = re.findall(
        r"(?:src|href)=\"(https?://[^\"]+)\"[^>]*?integrity=\"(sha\d+)-([^\"]+)\"", page
    )
    assert len(tags) >= 9
    identical = 0
    for url, algo, digest in tags:
        name = url.rsplit("/", 1)[-1]
        assert name in publish.VENDORED, f"asv loads {url}: not vendored"
        data = (publish.VENDOR_DIR / publish.VENDORED[name]).read_bytes()
        if base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest:
            identical += 1
    # jQuery, bootstrap js + css, orderBars, md5 are the CDN's exact bytes.
    assert identical >= 5


def test_asv_publish_renders_offline(asv_project, chromium, tmp_path):
    import http.server
    import threading

    from reports import publish

    html_dir = tmp_path / "asv_html"
    _run(
        [sys.executable, "-m", "asv", "publish", "--html-dir", str(html_dir)],
        asv_project["root"],
        asv_project["env"],
    )
    replaced = publish.make_offline(html_dir)
    assert len(replaced) == 10
    # Graphs start on one machine (asv's graphdisplay.js still has the line we patch).
    assert publish.set_default_machine(html_dir, "testbox")
    assert 'state.machine = ["testbox"]' in (html_dir / "graphdisplay.js").read_text()
    assert not re.search(r"<script[^>]+src=\"https?://", (html_dir / "index.html").read_text())

    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        grid = browse(
            f"{base}/index.html",
            {"text": "document.body.innerText"},
            "document.body.innerText.includes('track_ms')",
        )
        graph = browse(
            f"{base}/index.html#bench_forward.Seed.track_ms",
            {
                "canvases": "document.querySelectorAll('canvas').length",
                "flot": "typeof jQuery !== 'undefined' && typeof jQuery.plot",
            },
            "document.querySelectorAll('canvas').length > 0",
        )
    finally:
        server.shutdown()
    for r in (grid, graph):
        assert r["errors"] == [], r["errors"]
        assert all(u.startswith(base) for u in r["requests"]), r["requests"]
    assert "Seed.track_ms" in grid["values"]["text"]
    assert graph["values"]["canvases"] > 0 and graph["values"]["flot"] == "function"


_TIMED_BUILD = """
import json, resource, sys, time
from reports.cli import build

def cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

cpu0, t0 = cpu_seconds(), time.perf_counter()
res = build(sys.argv[1], sys.argv[2], repo=None)
elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
n_series = res["df"].groupby(["benchmark", "params"]).ngroups
print(json.dumps({"elapsed": elapsed, "cpu": cpu, "n_series": n_series,
                  "commits": int(res["df"]["commit"].nunique()), "timings": res["timings"]}))
"""


def test_report_speed_200_commits_x_500_series(tmp_path):
    """200 commits x 504 series (3 families x 4 metrics x 42 configs/modes) in about 10 s.

    Asserted on CPU seconds (the building process + its plot workers), which is what the
    wall time is on an idle 2-core CI machine; on a shared, oversubscribed box the wall time
    only says how busy the neighbours are, so it gets a loose bound and is printed. The
    build runs in a process of its own: counted in this one, the CPU of earlier tests'
    children (the browser tests' Chromium) reaped during the build made it 14.7 s."""
    results = tmp_path / "results"
    write_history(results, 200, noise=0.01)
    proc = subprocess.run(
        [sys.executable, "-c", _TIMED_BUILD, str(results), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\nreport for 200 commits x {got['n_series']} series: {got['elapsed']:.2f} s wall, "
        f"{got['cpu']:.2f} s CPU (load average {os.getloadavg()[0]:.1f}): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in got["timings"].items())
    )
    assert got["n_series"] == 504 and got["commits"] == 200
    # One build of one commit took 8.8-12.0 CPU seconds over ten runs on the 2-core dev VM
    # (10.7 at 0f2643d too; the plot workers' share moves most): 14 s is past that noise
    # and still fails a 40% slowdown.
    assert got["cpu"] < 14.0
    assert got["elapsed"] < 30.0


def test_host_bound_timings_need_a_larger_step():
    """Under HOST_BOUND_BELOW_MS a 40% slowdown is noise (A/A moved such steps 39%); at
    10 ms the same step is a regression, and so is its TFLOP/s drop."""
    rows = []
    for ms in (1.0, 10.0):
        for metric, unit, old, new in (
            ("ms", "ms", ms, 1.4 * ms),
            ("tflops", "TFLOP/s", 100.0, 100.0 / 1.4),
        ):
            rows.append(
                dict(
                    machine="m",
                    benchmark=f"bench_backward.S{int(ms)}.track_{metric}",
                    params="B=2 bwd_mode=fused",
                    unit=unit,
                    value_old=old,
                    value_new=new,
                    noise_lo_old=np.nan,
                    noise_hi_old=np.nan,
                    noise_lo_new=np.nan,
                    noise_hi_new=np.nan,
                )
            )
    out = regress.classify(pd.DataFrame(rows))
    status = dict(zip(out["benchmark"], out["status"]))
    assert status["bench_backward.S1.track_ms"] == regress.UNCHANGED
    assert status["bench_backward.S1.track_tflops"] == regress.UNCHANGED
    assert status["bench_backward.S10.track_ms"] == regress.REGRESSION
    assert status["bench_backward.S10.track_tflops"] == regress.REGRESSION


def test_preset_order_lists_every_bench_suite_class():
    from harness import grid  # standard library only at import time
    from reports import tables

    assert sorted(tables.PRESET_ORDER) == sorted(p.class_name for p in grid.PRESETS.values())
    assert tables.PRESET_ORDER.index("Short") == tables.PRESET_ORDER.index("Grid") + 1


def test_a_preset_without_math_still_reports_against_flash():
    """Short measures only sdpa, flash and fused (fused alone in grad-grad): no math row."""
    from reports import tables, text

    config = "B=4 H=16 T=2048 D=64 bfloat16 causal"
    modes = {"forward": ("sdpa", "flash", "fused"), "backward": ("sdpa", "flash", "fused")}
    modes["gradgrad"] = ("fused",)
    ms = {"sdpa": 0.3, "flash": 0.5, "fused": 0.4}
    rows = [
        {"family": family, "preset": "Short", "config": config, "bwd_mode": mode,
         "metric": metric, "value": ms[mode] if metric == "ms" else 1.0,
         "B": 4, "H": 16, "T": "2048", "D": 64, "dtype": "bfloat16", "mask": "causal"}
        for family, family_modes in modes.items()
        for mode in family_modes
        for metric in ("ms", "tflops", "peak_mib", "parity")
    ]  # fmt: skip
    table = tables.config_table(pd.DataFrame(rows), peak=None)
    assert len(table) == 7 and table["speedup"].isna().all()  # no math: no speedup, no crash
    assert set(table["win_loss"]) == {"--"}
    fused = table[(table["family"] == "backward") & (table["bwd_mode"] == "fused")]
    assert fused["vs_flash"].tolist() == [pytest.approx(1.25)]
    block = text.fused_vs_sdpa_block(table)
    assert [line.split()[:2] for line in block[2:-1]] == [
        ["forward", "Short"],
        ["backward", "Short"],
    ]


def test_fused_vs_sdpa_block_gives_yardstick_over_fused_ratios():
    from reports import text

    nan = float("nan")
    rows = [
        # family, preset, config, mode, ms, MiB, host ms
        ("forward", "Grid", "B=4 H=16 T=4096", "fused", 0.40, 10.0, 0.10),
        ("forward", "Grid", "B=4 H=16 T=4096", "flash", 0.50, 20.0, 0.05),
        ("forward", "Grid", "B=4 H=16 T=4096", "sdpa", 0.30, 30.0, 0.05),
        ("backward", "TTT", "B=1 H=12 T=1024/9216", "fused", 1.0, 30.0, 1.1),
        ("backward", "TTT", "B=1 H=12 T=1024/9216", "sdpa", 0.5, 50.0, 0.2),  # flash refused
        ("backward", "Long", "B=1 H=8 T=8192", "fused", 1.5, 9.0, nan),  # before host_ms
        ("backward", "Long", "B=1 H=8 T=8192", "flash", 2.0, 18.0, nan),
        ("gradgrad", "Seed", "B=2 H=4 T=2048", "fused", 2.0, 44.0, 1.0),  # no yardstick
    ]
    columns = ["family", "preset", "config", "bwd_mode", "ms", "peak_mib", "host_ms"]
    table = pd.DataFrame(rows, columns=columns)
    block = text.fused_vs_sdpa_block(table)
    assert block[0].startswith("FUSED vs SDPA")
    grid = next(line for line in block if "T=4096" in line).split()
    # fused 0.4; flash 0.5 -> 1.25x; sdpa 0.3 -> 0.75x; MiB 10 / 20; host 0.1 / 0.4
    assert grid[-6:] == ["0.5000", "1.25", "0.3000", "0.75", "0.50", "0.25"]
    ttt = next(line for line in block if "TTT" in line).split()
    assert ttt[-6:] == ["n/a", "n/a", "0.5000", "0.50", "n/a", "1.10"]  # host-bound
    long = next(line for line in block if "Long" in line).split()
    assert long[-6:] == ["2.000", "1.33", "n/a", "n/a", "0.50", "n/a"]
    assert not any("gradgrad" in line for line in block)
    assert text.fused_vs_sdpa_block(table[table["bwd_mode"] != "fused"]) == []
    # a table from results that predate host_ms has no such column at all
    assert text.fused_vs_sdpa_block(table.drop(columns="host_ms"))[2].split()[-1] == "n/a"


# --------------------------------------------------------------------------------------------
# The latest view: per asv class, the newest commit that measured it (partial runs).


def _edit_results(path: Path, edit) -> None:
    """Rewrite one synthetic asv result file: ``edit(results)`` changes the name -> row dict."""
    data = json.loads(path.read_text())
    edit(data["results"])
    path.write_text(json.dumps(data))


def _partial_history(results: Path, newest_edit=None):
    """Three commits: 0 and 1 measure every preset (commit 1 ms x1.5, commit 0 x1.0), commit 2
    only Seed (ms x2) unless ``newest_edit`` changes its result file."""
    suite = synthetic_suite()
    write_benchmarks_json(results, suite)
    paths = []
    for i, scale in enumerate([1.0, 1.5, 2.0]):
        paths.append(
            write_result_file(
                results,
                "h100-sxm-80gb",
                fake_commit(i),
                1_700_000_000_000 + i * 3_600_000,
                suite,
                scale_for=lambda f, m, c, s=scale: s,
            )
        )
    _edit_results(
        paths[2],
        newest_edit or (lambda r: [r.pop(k) for k in list(r) if ".Seed." not in k]),
    )
    return load_results(results, repo=None).df


def test_partial_newest_commit_keeps_older_presets_labelled(tmp_path):
    from reports import html, tables, text

    df = _partial_history(tmp_path / "results")
    machine = "h100-sxm-80gb"
    view = tables.latest_rows_per_class(df, machine)
    # Seed from the newest commit, TTT and Grid from commit 1 (the newest that measured them),
    # never from commit 0.
    by_preset = view.groupby("preset")["commit"].agg(set).to_dict()
    assert by_preset == {
        "Seed": {fake_commit(2)},
        "TTT": {fake_commit(1)},
        "Grid": {fake_commit(1)},
    }
    assert len(view) == len(df[df["commit"] == fake_commit(2)]) + len(
        df[(df["commit"] == fake_commit(1)) & (df["preset"] != "Seed")]
    )

    report = text.latest_text(df, machine, regress.history(df))
    c1, c2 = fake_commit(1)[:8], fake_commit(2)[:8]
    header = report.split("HEADLINE")[0]
    assert f"commit {c2}" in header.splitlines()[0]
    assert (
        "older commits fill in presets not measured at the newest: "
        f"TTT, Grid from {c1} (2023-11-14 23:13 UTC, "
    ) in header
    # Headline: the TTT configs name their commit, the seed config (newest) does not.
    seed_line = next(ln for ln in report.splitlines() if ln.startswith("seed: "))
    assert "[commit" not in seed_line
    ttt_lines = [ln for ln in report.splitlines() if ln.startswith("ttt: ")]
    assert len(ttt_lines) == 3
    assert all(ln.endswith(f"[commit {c1}, 2023-11-14 23:13 UTC]") for ln in ttt_lines)
    # FUSED vs SDPA rows: older ones end with their commit.
    fused = report.split("FUSED vs SDPA")[1].split("\n\n")[0].splitlines()[2:]
    assert fused and all(ln.endswith(f"[commit {c1}]") == (" Seed " not in ln) for ln in fused), (
        fused
    )
    # PER CONFIG block headers: every TTT and Grid block names commit 1, Seed blocks nothing.
    blocks = [ln for ln in report.splitlines() if ln.startswith("== ")]
    assert len(blocks) == 3 * (1 + 3 + 3)
    for ln in blocks:
        assert ("[commit" in ln) == ("| Seed |" not in ln), ln
        if "| Seed |" not in ln:
            assert ln.endswith(f"[commit {c1}, 2023-11-14 23:13 UTC]"), ln
    # The numbers are commit 1's: backward TTT D=64 math at 1.5x the model time.
    table = tables.config_table(view, None)
    ttt = table[(table["preset"] == "TTT") & (table["family"] == "backward")]
    combo = (1, 12, "1024/9216", 64, "bfloat16", "window8192", "math")
    assert ttt[ttt["bwd_mode"] == "math"]["ms"].iloc[0] == pytest.approx(
        _model_value("ms", "backward", combo, 1.5)
    )
    # CHANGES stays newest commit vs the previous one with results: only Seed can change.
    if "CHANGES" in report:
        changes = report.split("CHANGES")[1].split("PER CONFIG")[0]
        assert ".TTT." not in changes and ".Grid." not in changes

    # The HTML applies the same rule: the machine page names the fill-ins, the preset pages
    # name each row's commit where a preset spans commits... here each preset is one commit,
    # so the commit column shows only on a page mixing commits (none) and the headline names
    # the view as the newest commit + older ones.
    html_dir = tmp_path / "html"
    index = html.write_html(df, regress.history(df), None, None, [machine], {}, html_dir)
    mpage = (html_dir / html.machine_page(machine)).read_text()
    assert "Older commits fill in presets not measured at the newest: TTT, Grid from" in mpage
    assert f"#commit-{c1}" in mpage and f"#commit-{c2}" in mpage
    grid = (html_dir / html.preset_page("Grid")).read_text()
    assert grid.count("<td class=l>Grid</td>") == 3 * 3 * len(MODE_TFLOPS)
    assert f'@ <a href="{html.machine_page(machine)}#commit-{c1}">' in grid
    assert " + older" in index.read_text()


def test_a_class_at_the_newest_commit_is_taken_from_it_only(tmp_path):
    """The newest commit measured forward.TTT (every value failed) and backward.TTT (math
    failed) but not gradgrad.TTT nor Grid: the two TTT classes come from the newest commit
    only, failures included, and no ratio combines them with commit 1's math."""

    def edit(r):
        for k in list(r):
            if ".Grid." in k or k.startswith("bench_gradgrad.TTT."):
                r.pop(k)
            elif k.startswith("bench_forward.TTT."):
                r[k][0] = None  # asv: the whole benchmark failed (setup_cache raised)
            elif k.startswith("bench_backward.TTT."):
                # Row-major over the params, bwd_mode (the last axis) innermost.
                combos = itertools.product(*r[k][1])
                r[k][0] = [None if c[-1] == "'math'" else v for c, v in zip(combos, r[k][0])]

    from reports import tables, text

    df = _partial_history(tmp_path / "results", edit)
    machine = "h100-sxm-80gb"
    view = tables.latest_rows_per_class(df, machine)
    per_class = view.groupby(tables.benchmark_class(view["benchmark"]))["commit"].agg(set)
    assert (per_class.map(len) == 1).all()  # never two commits within a class
    commit_of = per_class.map(lambda s: next(iter(s))[:8]).to_dict()
    c1, c2 = fake_commit(1)[:8], fake_commit(2)[:8]
    for family in ("forward", "backward", "gradgrad"):
        assert commit_of[f"bench_{family}.Seed"] == c2
        assert commit_of[f"bench_{family}.Grid"] == c1
    assert commit_of["bench_forward.TTT"] == c2  # failed at the newest: shown, not hidden
    assert commit_of["bench_backward.TTT"] == c2
    assert commit_of["bench_gradgrad.TTT"] == c1
    fwd_ttt = view[view["benchmark"].str.startswith("bench_forward.TTT.")]
    assert len(fwd_ttt) > 0 and fwd_ttt["value"].isna().all()

    table = tables.config_table(view, None)
    bwd = table[(table["family"] == "backward") & (table["preset"] == "TTT")]
    assert bwd["commit"].str[:8].unique().tolist() == [c2]
    assert bwd[bwd["bwd_mode"] == "math"]["ms"].isna().all()
    # No math at the newest commit: no speedup, although commit 1 has a math row.
    assert bwd["speedup"].isna().all() and bwd["mem_ratio"].isna().all()
    assert bwd[bwd["bwd_mode"] == "fused"]["ms"].notna().all()

    report = text.latest_text(df, machine)
    assert (
        f"older commits fill in presets not measured at the newest: gradgrad.TTT, Grid from {c1} ("
    ) in report
    blocks = [ln for ln in report.splitlines() if ln.startswith("== ")]
    for ln in blocks:
        older = "| Grid |" in ln or ln.startswith("== gradgrad | TTT |")
        assert ("[commit" in ln) == older, ln
    fwd_block = report.split("== forward | TTT |")[1].split("\n\n")[0]
    assert re.search(r"fused\s+n/a", fwd_block)
    # Headline TTT: families from two commits, so the gradgrad row carries the tag.
    ttt = report.split("ttt: ")[1].split("\n\n")[0].splitlines()
    assert "[commit" not in ttt[0]
    tagged = [
        ln.split()[0] for ln in ttt[2:] if ln.endswith(f"[commit {c1}, 2023-11-14 23:13 UTC]")
    ]
    assert tagged == ["gradgrad"]


def test_all_presets_at_the_newest_commit_render_as_before(tmp_path):
    from reports import html, tables, text

    results = tmp_path / "results"
    write_history(results, 3)
    df = load_results(results, repo=None).df
    machine = "h100-sxm-80gb"
    view = tables.latest_rows_per_class(df, machine)
    pd.testing.assert_frame_equal(view, tables.newest_commit_rows(df, machine))
    assert tables.older_commit_fill_ins(view) == []
    report = text.latest_text(df, machine)
    assert "older commits" not in report and "[commit" not in report
    assert "PER CONFIG (newest commit)\n" in report
    page = html.write_html(df, regress.history(df), None, None, [machine], {}, tmp_path / "h")
    pages = {p.name: p.read_text() for p in page.parent.glob("*.html")}
    assert len(pages) == 1 + 1 + 3  # index, the machine, Seed/TTT/Grid
    assert not any("Older commits" in p for p in pages.values())
    presets = [p for name, p in pages.items() if name.startswith("preset-")]
    assert len(presets) == 3 and not any("<th class=l>commit</th>" in p for p in presets)
    assert " + older" not in page.read_text()


def test_reports_package_is_code_only_and_renderers_share_tables():
    """The outputs live in report/ (``--out``), not in the package; html.py and plots.py
    shape nothing themselves: they render the tables of tables.py, never text.py's."""
    import ast

    pkg = ROOT / "reports"
    stray = [
        p.relative_to(ROOT).as_posix()
        for p in pkg.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.relative_to(pkg).parts[0] != "vendor"  # publish.py's assets
        and p.suffix not in (".py", ".md")
    ]
    assert stray == []
    for name in ("html", "plots"):
        tree = ast.parse((pkg / f"{name}.py").read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        assert "reports.text" not in imported, name
        assert "reports.tables" in imported, name
    too_long = {p.name: n for p in pkg.glob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert too_long == {}


def test_docs_cited_by_their_paths_in_code_and_committed_outputs():
    files = [*(ROOT / "reports").glob("*.py"), *(ROOT / "reports").glob("*.md")]
    files += [*(ROOT / "report").glob("*_latest.txt"), *(ROOT / "report").glob("html/*.html")]
    for path in files:
        body = path.read_text(encoding="utf-8")
        # Spelled in pieces so that this file does not hold the old citations either.
        for old in ("DESIGN" + ".md", "shared/" + "anchors", "../" + "shared"):
            assert old not in body, f"{path.relative_to(ROOT)} cites {old}"


def test_plots_fix_the_issue_17_flaws(tmp_path, monkeypatch):
    """Trends: a panel per preset (Long, Grid, Short had none), a band where the title says
    so, none for a one-commit machine; speed_memory: no text on points (labels overlapped),
    a figure legend; log ticks that do not run together ('1002000') nor repeat ('32.5')."""
    import matplotlib.pyplot as plt

    from reports import plots

    results = tmp_path / "results"
    write_history(results, 3)
    df = load_results(results, repo=None).df
    fdf = df[(df["family"] == "gradgrad") & df["metric"].isin(["ms", "peak_mib"])]
    picked = plots.pick_trend_configs(fdf, plots.MAX_TREND_CONFIGS)
    presets = fdf.drop_duplicates("config").set_index("config")["preset"]
    assert [presets[c] for c in picked[:3]] == ["Seed", "TTT", "Grid"]

    titles = {}
    real_save = plots._save

    def spy(fig, out_dir, stem):
        titles[stem] = (fig._suptitle.get_text(), [ax.texts for ax in fig.axes])
        titles[stem + "_legends"] = len(fig.legends)
        return real_save(fig, out_dir, stem)

    monkeypatch.setenv("REPORTS_PLOT_WORKERS", "1")  # the spy sees the figures in-process
    plots._save = spy
    try:
        written = plots.machine_plots(df, "h100-sxm-80gb", tmp_path / "p")
        one = tmp_path / "one"
        write_history(one, 1, machine="h100-sxm-80gb-x2")
        df1 = load_results(one, repo=None).df
        written1 = plots.machine_plots(df1, "h100-sxm-80gb-x2", tmp_path / "p1")
    finally:
        plots._save = real_save
    assert "band" in titles["trend_gradgrad"][0]  # the A/A band: these files store no noise
    assert (
        all(len(t) == 0 for t in titles["speed_memory"][1]) and titles["speed_memory_legends"] == 1
    )
    assert {p.stem for p in written} >= {"trend_gradgrad", "speed_memory"}
    assert not any(p.stem.startswith("trend_") for p in written1)  # one commit: no trend
    assert any(p.stem == "speed_memory" for p in written1)

    # Ticks: decades over two decades apart, at most a few labels on a narrow axis, 'k'.
    fig, ax = plt.subplots()
    ax.scatter([100, 2500], [32.5, 32.5014])
    plots._log_axis(ax, "x")
    plots._log_axis(ax)
    plots._log_ticks(ax, "x")
    plots._log_ticks(ax)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    assert hi / lo >= plots.MIN_LOG_SPAN * 0.999
    ylabels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(ylabels) == len(set(ylabels)) >= 2, ylabels
    xlabels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "2000" not in xlabels and len(xlabels) <= 6, xlabels
    assert plots._fmt_tick(2000) == "2k" and plots._fmt_tick(0.25) == "0.25"
    plt.close(fig)


def test_rules_table_is_rendered_from_the_gate_definitions(monkeypatch):
    """Every unit of metrics.UNIT_RULES, every regime its rows can take with its A/A noise,
    and the regress.py rules: change a definition and the table follows."""
    from reports import dashboard

    page = dashboard.rules_html()
    for unit, rule in metrics.UNIT_RULES.items():
        assert f"<td class=l rowspan=2>{unit}</td>" in page or f"<td class=l>{unit}</td>" in page
        assert f"{100 * rule.rel_threshold:.1f}%" in page
    for card, recorded in metrics.aa_defaults()["cards"].items():  # one A/A pair per card
        assert f"{card}: " in page
        for key, entry in recorded["noise"].items():
            assert f"{100 * entry['threshold']:.1f}%" in page, (card, key)
    assert f"own ms &lt; {metrics.HOST_BOUND_BELOW_MS:g}" in page
    assert f"last {regress.DRIFT_WINDOW} commits" in page
    monkeypatch.setattr(metrics, "HOST_BOUND_BELOW_MS", 7.5)
    monkeypatch.setattr(regress, "DRIFT_WINDOW", 23)
    monkeypatch.setitem(
        metrics.UNIT_RULES, "ms", metrics.UnitRule("lower", 0.123, 0.002, "time (ms)")
    )
    page = dashboard.rules_html({"MiB": 0.04})
    assert "own ms &lt; 7.5" in page and "own ms &ge; 7.5" in page
    assert "last 23 commits" in page and "12.3%" in page and "4.0% (override)" in page


def test_commit_url_derived_from_the_git_remote(tmp_path):
    from reports import html

    cases = {
        "git@github.com:o/n.git": "https://github.com/o/n/commit/{commit}",
        "https://github.com/o/n": "https://github.com/o/n/commit/{commit}",
        "ssh://git@github.com/o/n.git": "https://github.com/o/n/commit/{commit}",
        "https://gitlab.example.com/g/sub/n.git": "https://gitlab.example.com/g/sub/n/-/commit/{commit}",
        "git@gitlab.com:g/n.git": "https://gitlab.com/g/n/-/commit/{commit}",
        "https://bitbucket.org/o/n": "https://bitbucket.org/o/n/commits/{commit}",
        "/srv/git/n": None,  # a path: nothing to link to
        "https://example.com/o/n.git": None,  # an unknown host
    }
    for i, (url, want) in enumerate(cases.items()):
        repo = tmp_path / f"r{i}"
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", url], check=True)
        assert html.commit_url_from_remote(repo) == want, url
    assert html.commit_url_from_remote(tmp_path / "not-a-repo") is None
    link = html.CommitLinks(None)
    assert (
        link("a" * 40, "m") == '<a href="machine-m.html#commit-aaaaaaaa"><code>aaaaaaaa</code></a>'
    )


def test_headline_fused_vs_best_baseline():
    from reports import dashboard

    table = pd.DataFrame(
        {
            "family": ["gradgrad"] * 4,
            "preset": ["Seed"] * 4,
            "config": ["c"] * 4,
            "bwd_mode": ["math", "recompute", "flash", "fused"],
            "ms": [10.0, 4.0, float("nan"), 2.0],
            "speedup": [1.0, 2.5, float("nan"), 5.0],
            "mem_ratio": [1.0, 0.5, float("nan"), 0.1],
        }
    )
    best = dashboard.best_baseline(table)
    assert best.loc[0, "baseline"] == "recompute" and best.loc[0, "ratio"] == pytest.approx(2.0)
    page = dashboard.headline({"m": table}, {"m": "machine-m.html"}, lambda m: "c1")
    assert "2.00x</span> vs recompute" in page and "5.00x</span>, memory 0.10x of math" in page


def test_cpu_runs_stay_out_of_the_report_unless_asked(tmp_path, caplog):
    """`make bench` on a CPU machine writes results/cpu-<arch>/, then builds the report: the
    committed report/ must not take CPU rows; --include-cpu (make REPORT_CPU=1) adds them."""
    from reports import cli, tables

    results = tmp_path / "results"
    suite = write_history(results, 2)
    write_history(results, 1, machine="cpu-x86_64", suite=suite)
    write_history(results, 1, machine="my-laptop", suite=suite)  # MACHINE= name, CPU preset
    df = load_results(results, repo=None).df
    df.loc[df["machine"] == "my-laptop", "preset"] = "CPU"
    assert tables.cpu_machines(df) == ["cpu-x86_64", "my-laptop"]
    assert tables.cpu_machines(df[df["machine"] == "h100-sxm-80gb"]) == []

    res = cli.build(results, tmp_path / "out", repo=None, make_plots=False)
    # (my-laptop's files hold GPU presets: only the frame above was relabelled CPU)
    assert set(res["df"]["machine"]) == {"h100-sxm-80gb", "my-laptop"}
    out = tmp_path / "out"
    assert not (out / "cpu-x86_64_latest.txt").exists()
    assert "cpu-x86_64" not in (out / "data" / "all_results.csv").read_text()
    assert not any("cpu-x86_64" in p.read_text() for p in (out / "html").glob("*.html"))
    assert "left out the CPU runs of cpu-x86_64" in caplog.text

    res = cli.build(results, tmp_path / "out", repo=None, make_plots=False, include_cpu=True)
    assert "cpu-x86_64" in set(res["df"]["machine"])
    assert (out / "cpu-x86_64_latest.txt").exists()

    only_cpu = tmp_path / "cpu_only"
    write_history(only_cpu, 1, machine="cpu-x86_64")
    with pytest.raises(NoResultsError, match="--include-cpu"):
        cli.build(only_cpu, tmp_path / "out2", repo=None, make_plots=False)
    assert "REPORT_ARGS = $(if $(REPORT_CPU),--include-cpu)" in (ROOT / "Makefile").read_text()


def test_publish_default_machine_and_how_to_view(tmp_path, monkeypatch, capsys):
    """asv's graphs start on the machine with the most results, never an A/A repeat or a CPU
    machine while a GPU one exists; publish prints how to view the site (make serve)."""
    from reports import publish

    results = tmp_path / "results"
    for name, n in [("h100-sxm-80gb", 3), ("h100-sxm-80gb-aa", 9), ("cpu-x86_64", 9), ("b", 3)]:
        (results / name).mkdir(parents=True)
        (results / name / "machine.json").write_text("{}")
        for i in range(n):
            (results / name / f"{i:08x}-existing-py3.json").write_text("{}")
    assert publish.default_machine(results) == "b"  # ties: by name
    (results / "h100-sxm-80gb" / "ffffffff-existing-py3.json").write_text("{}")
    assert publish.default_machine(results) == "h100-sxm-80gb"
    assert publish.default_machine(tmp_path / "none") is None
    assert not publish.set_default_machine(tmp_path, "h100-sxm-80gb")  # no graphdisplay.js

    # publish() end to end, asv stubbed: the serve hint is printed.
    html_dir = tmp_path / "site"
    config = tmp_path / "asv.conf.json"
    config.write_text('{\n  // comment\n  "results_dir": "results"\n}\n')

    def fake_asv(cmd, **kw):
        html_dir.mkdir()
        (html_dir / "index.html").write_text("<html></html>")
        (html_dir / "graphdisplay.js").write_text(f"x; {publish._ALL_MACHINES} y;")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(publish.subprocess, "run", fake_asv)
    assert publish.publish(html_dir, config) == 0
    out = capsys.readouterr().out
    assert "graphs start on machine h100-sxm-80gb" in out
    assert "make serve" in out and "http://127.0.0.1:8080/" in out
    assert '["h100-sxm-80gb"]' in (html_dir / "graphdisplay.js").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "\nserve:" in makefile and "http.server -d report/asv_html -b 127.0.0.1" in makefile


def test_publish_refuses_to_empty_our_own_report(monkeypatch, capsys):
    from reports import publish

    monkeypatch.chdir(ROOT)
    for target in ("report", "report/html", "."):
        assert publish.publish(Path(target), Path("asv.conf.json")) == 2, target
        assert "would wipe our own report" in capsys.readouterr().err
