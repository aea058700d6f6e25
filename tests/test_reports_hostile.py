"""reports/ on hostile result folders (issue 16, items 5-8): every bad file is skipped or read
safely with a warning naming it, nothing is written outside the output folder, the report
still builds and exits 0.

The corpus is made here from one committed result file: the big and deep files are generated,
FIFOs and symlinks are created in tmp_path. The whole report runs in a subprocess under an
address-space limit, so a regression into unbounded memory fails the test instead of the
machine.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports import guard, paths  # noqa: E402

# a committed result file (its name carries asv's environment name, which may be migrated)
VALID = next((ROOT / "results" / "h200-sxm-140gb").glob("ee157537-*.json"))
MEMORY_LIMIT = 2560 * 1024 * 1024  # RLIMIT_AS of the report subprocess
SEED_PARAMS = [["2"], ["4"], ["'2048'"], ["128"], ["'float16'"], ["'none'"]]


def _valid() -> dict:
    return json.loads(VALID.read_text())


def _commit(i: int) -> str:
    return f"{0xBAD00000 + i:08x}" + "0" * 32


def _write(results: Path, folder: str, name: str, data) -> Path:
    path = results / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# What a hostile variant keeps of the valid file: one class, two metrics (one trend and one
# speed/memory figure per machine keep the run short).
KEEP = ("bench_backward.Seed.track_ms", "bench_backward.Seed.track_peak_mib")


def _variant(i: int, machine: str | None = None, edit=None) -> dict:
    data = _valid()
    data["results"] = {k: v for k, v in data["results"].items() if k in KEEP}
    data["commit_hash"] = _commit(i)
    data["date"] = data["date"] + i * 1000
    if machine is not None:
        data["params"]["machine"] = machine
    if edit:
        edit(data)
    return data


def _set_first(name: str, index: int, value):
    def edit(data):
        data["results"][name][0][index] = value

    return edit


def _bool_and_inf(data):
    row = data["results"]["bench_backward.Seed.track_ms"]
    row[0][0], row[0][1] = True, float("inf")  # json.dumps writes Infinity
    row[3] = 1e308  # started_at: not a date


N_CLASSES = 20_000


def _many_classes(data, n=N_CLASSES):
    """n classes (presets) of one family sharing the seed shape."""
    row = [[0.5, 0.25], [*SEED_PARAMS, ["'math'", "'fused'"]]]
    data["results"] = {f"bench_forward.C{i}.track_ms": copy.deepcopy(row) for i in range(n)}


def _combinatorial(data):
    """~2 KB whose params expand to 40**7 combinations (asv: result null = all failed)."""
    axes = [[str(v) for v in range(40)] for _ in range(7)]
    data["results"] = {"bench_forward.Seed.track_ms": [None, axes]}


# Cases whose data are valid (a '$' in a parameter value, many classes of one shape): they
# must render, with no warning to name them.
ODD_BUT_VALID = {"mathtext-param", "many-classes"}


def make_hostile_corpus(results: Path, escape: Path) -> dict[str, Path]:
    """Hostile files under ``results`` (with results/benchmarks.json and one valid committed
    result); returns case -> file. ``escape``: where the path-escaping machine names point."""
    results.mkdir(parents=True)
    meta = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    template = meta["bench_forward.Seed.track_ms"]
    for i in range(N_CLASSES):  # the many classes sharing one shape are known benchmarks
        meta[f"bench_forward.C{i}.track_ms"] = {**template, "name": f"bench_forward.C{i}.track_ms"}
    (results / "benchmarks.json").write_text(json.dumps(meta))
    good = results / "h200-sxm-140gb" / VALID.name
    good.parent.mkdir()
    good.write_bytes(VALID.read_bytes())
    ms = "bench_backward.Seed.track_ms"
    cases = {
        # 5. machine names used as paths
        "climb": _write(results, "climb", "c1.json", _variant(1, "../../escape-climb")),
        "absolute": _write(results, "abs", "c2.json", _variant(2, str(escape / "abs"))),
        "slash": _write(results, "slash", "c3.json", _variant(3, "a/b/slash")),
        "not-a-string": _write(results, "nostr", "c4.json", _variant(4, ["list", "name"])),
        # 6. crashes
        "unknown-benchmark": _write(
            results,
            "unknown",
            "c5.json",
            _variant(
                5,
                "unknown-bench",
                lambda d: d["results"].update(
                    {"bench_backward.Rogue.track_ms": d["results"]["bench_backward.Seed.track_ms"]}
                ),
            ),
        ),
        "mathtext-machine": _write(results, "math1", "c6.json", _variant(6, "$\\foo{$")),
        "mathtext-param": _write(
            results,
            "math2",
            "c7.json",
            _variant(
                7, "mathtext-param", lambda d: d["results"][ms][1][6].__setitem__(0, "'$\\\\foo{$'")
            ),
        ),
        "huge-value": _write(
            results, "huge", "c8.json", _variant(8, "huge-value", _set_first(ms, 0, 1e308))
        ),
        "deep": _write(results, "deep", "c9.json", "[" * 100_000 + "]" * 100_000),
        "deep-in-object": _write(
            results, "deep", "c10.json", '{"results": ' + "[" * 100_000 + "]" * 100_000 + "}"
        ),
        "many-classes": _write(
            results, "many", "c11.json", _variant(11, "many-classes", _many_classes)
        ),
        # 7. hangs and memory
        "combinatorial": _write(
            results, "combo", "c12.json", _variant(12, "combinatorial", _combinatorial)
        ),
        # 8. silent wrong input
        "negative": _write(
            results, "neg", "c13.json", _variant(13, "invalid-values", _set_first(ms, 0, -5.0))
        ),
        "string-number": _write(
            results, "str", "c14.json", _variant(14, "invalid-values", _set_first(ms, 0, "1.5"))
        ),
        "bool-and-inf": _write(
            results, "inf", "c15.json", _variant(15, "invalid-values", _bool_and_inf)
        ),
        "absurd-dates": _write(
            results,
            "dates",
            "c16.json",
            _variant(16, "absurd-dates", lambda d: d.update(date=1e308)),
        ),
    }
    fifo = results / "fifo" / "c17.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    cases["fifo"] = fifo
    zero = results / "zero" / "c18.json"
    zero.parent.mkdir()
    zero.symlink_to("/dev/zero")
    cases["dev-zero"] = zero
    big = results / "big" / "c19.json"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: over the cap without using the disk
        f.truncate(guard.MAX_FILE_BYTES + 1)
    cases["over-cap"] = big
    return cases


def _snapshot(folder: Path, skip: Path) -> dict[str, tuple]:
    """Every path under ``folder`` but ``skip`` (the output folder): files with size and
    mtime, folders and links by their presence (a folder's mtime moves when ``skip`` is made)."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if Path(dirpath) / d != skip]
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            regular = p.is_file() and not p.is_symlink()
            out[str(p)] = (st.st_size, st.st_mtime_ns) if regular else (st.st_mode,)
    return out


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_report_over_a_hostile_results_folder(tmp_path):
    sandbox = tmp_path / "sandbox"
    work = sandbox / "cwd"
    work.mkdir(parents=True)
    results = sandbox / "results"
    cases = make_hostile_corpus(results, escape=tmp_path / "escape")
    out = work / "out"
    before = _snapshot(tmp_path, skip=out)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "REPORTS_PLOT_WORKERS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reports",
            "--results",
            str(results),
            "--out",
            "out",
            "--repo",
            str(work),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=_limit_memory,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    for case, path in cases.items():
        if case not in ODD_BUT_VALID:
            assert str(path) in output, f"{case}: {path} not named in the output"
    for machine in ("mathtext-param", "many-classes"):  # valid data that crashed the report
        assert "HEADLINE" in (out / f"{machine}_latest.txt").read_text()
    assert (out / "plots" / "mathtext-param" / "speed_memory.svg").is_file()
    # nothing outside the output folder changed
    after = _snapshot(tmp_path, skip=out)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, sorted(changed)
    assert (
        not (tmp_path / "escape").exists() and not (tmp_path / "escape-climb_latest.txt").exists()
    )
    for p in out.rglob("*"):
        assert paths.inside(out, p)
    # the report is whole: CSV, every text file, the valid machine's plots, HTML
    assert (out / "html" / "index.html").is_file()
    assert (out / "data" / "all_results.csv").is_file()
    # one commit of it: speed/memory, no trend (plots.MIN_TREND_COMMITS)
    assert (out / "plots" / "h200-sxm-140gb" / "speed_memory.png").is_file()
    valid_text = (out / "h200-sxm-140gb_latest.txt").read_text()
    assert "INVALID" not in valid_text
    html = (out / "html" / "index.html").read_text()
    assert "Skipped input" in html and "c17.json" in html
    # the invalid values are listed on their machine's page, counted on the index
    assert "invalid value(s)" in html
    html = "".join(p.read_text() for p in (out / "html").glob("*.html"))
    assert len(list((out / "html").glob("preset-*.html"))) <= 40  # html.MAX_PRESET_PAGES
    # invalid values are shown as invalid, not as numbers
    names = {p.name for p in out.glob("*_latest.txt")}
    newest = (out / "invalid-values_latest.txt").read_text()  # its newest commit: c15
    assert "INVALID VALUES" in newest and "not a number: True" in newest
    assert "out of range: inf" in newest and "invalid" in html and "not a number: True" in html
    assert "out of range: 1e+308" in (out / "huge-value_latest.txt").read_text()
    csv = (out / "data" / "all_results.csv").read_text()  # every commit's, in the CSV
    for reason in ("negative ms: -5", "not a number: '1.5'", "out of range: 1e+308"):
        assert reason in csv
    # unsafe machine names are slugs; no plot run failed
    assert not any(n.startswith(("..", "/")) for n in names)
    assert sum(n.startswith("escape-climb-") for n in names) == 1
    assert "failed" not in proc.stderr.replace("failed its parity", "")


def test_read_capped_refuses_what_is_not_a_small_regular_file(tmp_path):
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    with pytest.raises(guard.UnreadableFile, match="FIFO"):
        guard.read_capped(fifo)
    zero = tmp_path / "z.json"
    zero.symlink_to("/dev/zero")
    with pytest.raises(guard.UnreadableFile, match="character device"):
        guard.read_capped(zero)
    small = tmp_path / "s.json"
    small.write_text("{}" + " " * 100)
    assert guard.read_capped(small) == small.read_bytes()
    with pytest.raises(guard.UnreadableFile, match="cap"):
        guard.read_capped(small, limit=10)


def test_values_are_validated_not_coerced():
    assert guard.check_value(1.5, "ms") == (1.5, "")
    assert guard.check_value(None, "ms")[1] == ""  # a failure, not invalid
    for bad, why in [
        ("1.5", "not a number"),
        (True, "not a number"),
        (-5.0, "negative ms"),
        (1e308, "out of range"),
        (float("inf"), "out of range"),
        (10**400, "out of range"),
    ]:
        value, reason = guard.check_value(bad, "ms")
        assert value != value and why in reason, (bad, reason)
    assert guard.check_value(-5.0, "some unit")[0] == -5.0  # unknown units may be negative


def test_slugs_are_one_safe_component_and_distinct():
    assert paths.slug("h100-sxm-80gb") == "h100-sxm-80gb"
    for name in ["../../x", "/tmp/x", "a/b", "..", ".", "", "$\\foo{$", "x" * 300, "a\x00b"]:
        s = paths.slug(name)
        assert paths.is_safe_name(s) and "/" not in s and not s.startswith("."), (name, s)
    assert paths.slug("a/b") != paths.slug("a_b") and paths.slug("a/b") != paths.slug("a:b")
    with pytest.raises(paths.PathEscape):
        paths.inside(Path("/tmp/out"), Path("/tmp/out/../x"))
