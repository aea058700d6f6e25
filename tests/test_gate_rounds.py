"""The gate in interleaved rounds (reports/rounds.py, runner/compare.py --rounds).

Synthetic rounds are made from the committed H200 grid at c5a9b22 (cold run): every time
row of a round is the committed value times a small per-row jitter, and a step multiplies
the new side's rounds. Real rounds: four whole-grid runs of 493bf30 on one H200, one after
the other (cold, then three warm): results/h200-sxm-140gb and -aa hold the first two,
tests/data/h200-rounds the other two. No GPU, no torch.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_gate import _fake_run_commit, _file, _run_gate  # noqa: E402

from reports import metrics, regress, rounds  # noqa: E402
from reports.cli import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, main  # noqa: E402
from reports.load import load_results  # noqa: E402

H200 = ROOT / "results" / "h200-sxm-140gb"
ROUNDS_DATA = ROOT / "tests" / "data" / "h200-rounds"
REAL_RUNS = {  # the order they ran in
    "cold": H200,
    "warm": ROOT / "results" / "h200-sxm-140gb-aa",
    "r3": ROUNDS_DATA / "h200-sxm-140gb-r3",
    "r4": ROUNDS_DATA / "h200-sxm-140gb-r4",
}
# every way to split the four runs into two sides of two
SPLITS = [(("cold", "r3"), ("warm", "r4")), (("cold", "warm"), ("r3", "r4")),
          (("cold", "r4"), ("warm", "r3"))]  # fmt: skip
TIMES = ("ms", "graph ms")
GATED = ("Seed", "TTT", "Long", "Grid", "Short")


@pytest.fixture(scope="module")
def grid_rows(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("h200")
    (root / H200.name).mkdir()
    shutil.copy(ROOT / "results" / "benchmarks.json", root / "benchmarks.json")
    shutil.copy(H200 / "machine.json", root / H200.name / "machine.json")
    src = _file(H200, "c5a9b22c")
    shutil.copy(src, root / H200.name / src.name)
    return load_results(root, repo=None).df


def a_round(rows: pd.DataFrame, seed: int, jitter: float, factor=1.0, where=None):
    """``rows`` with every time value (and its interval) times (1 + U(-jitter, jitter)) and,
    where ``where`` (a row mask) holds, times ``factor`` too."""
    out = rows.copy()
    times = out["unit"].isin(TIMES).to_numpy()
    f = 1.0 + np.random.default_rng(seed).uniform(-jitter, jitter, len(out))
    if where is not None:
        f = np.where(where, f * factor, f)
    f = np.where(times, f, 1.0)
    for col in ("value", "noise_lo", "noise_hi"):
        out[col] = out[col].to_numpy(float) * f
    return out


def judged(olds, news) -> pd.DataFrame:
    keys = regress.SERIES_KEYS
    return regress.compare_frames(rounds.combine(olds, keys), rounds.combine(news, keys))


def fused_big(rows: pd.DataFrame) -> np.ndarray:
    """Fused time rows of the gated presets at or above 3 ms."""
    return (
        (rows["bwd_mode"] == "fused")
        & rows["preset"].isin(GATED)
        & rows["unit"].isin(TIMES)
        & (rows["value"] >= 3.0)
    ).to_numpy()


def test_combine_takes_the_median_and_the_range_of_complete_series():
    keys = ["machine", "benchmark", "params"]
    base = pd.DataFrame(
        {"machine": "m", "benchmark": ["a", "b"], "params": "p", "value": [1.0, 2.0]}
        | {"noise_lo": [0.99, 1.98], "noise_hi": [1.01, 2.02], "unit": "ms"}
    )
    second = base.assign(value=[1.1, np.nan])
    third = base.assign(value=[0.9, 2.2])
    got = rounds.combine([base, second, third], keys)
    a, b = got.iloc[0], got.iloc[1]
    assert (a["value"], a["noise_lo"], a["noise_hi"], a["rounds"]) == (1.0, 0.9, 1.1, 3)
    assert a["round_spread"] == pytest.approx(0.2)
    # a series one round lacks keeps its first round, and no spread: the card's A/A rule
    assert (b["value"], b["noise_lo"], b["rounds"]) == (2.0, 1.98, 1) and np.isnan(
        b["round_spread"]
    )
    assert rounds.combine([base], keys)["round_spread"].isna().all()


def test_the_floor_per_unit_of_range_shrinks_with_more_rounds():
    assert rounds.spread_factor(2) == pytest.approx(rounds.SPREAD_FACTOR)
    assert rounds.spread_factor(3) == pytest.approx(1.088, abs=0.001)
    assert rounds.spread_factor(4) == pytest.approx(0.775, abs=0.001)
    # in standard deviations of one run: the floor falls as sqrt(2 / n)
    sigmas = [rounds.spread_factor(n) * rounds.RANGE_IN_SIGMAS[n] for n in (2, 3, 4, 8)]
    assert sigmas == pytest.approx([sigmas[0] * (2 / n) ** 0.5 for n in (2, 3, 4, 8)])


def test_three_rounds_catch_what_two_cannot(grid_rows):
    """A 5% step on the fused rows >= 3 ms, runs spread over 3%: with two rounds a side the
    floor is 6% and lets it through; with three (floor 3.3%, so the 4% bar) it is caught."""
    big = fused_big(grid_rows)
    spread = (1.0, 1.03, 1.015)
    olds = [a_round(grid_rows, 1, 0.0, f, big) for f in spread]
    news = [a_round(grid_rows, 1, 0.0, 1.05 * f, big) for f in spread]
    hit = grid_rows[big].set_index(regress.SERIES_KEYS).index
    for n, caught in ((2, False), (3, True)):
        cmp = judged(olds[:n], news[:n])
        rows = cmp[cmp.set_index(regress.SERIES_KEYS).index.isin(hit)]
        assert len(rows) == big.sum()
        assert (rows["status"] == regress.REGRESSION).all() == caught, rows["rule"].iloc[0]
        assert caught or not (rows["status"] == regress.REGRESSION).any()


def test_an_interleaved_aa_flags_nothing(grid_rows):
    """Two rounds a side of the same kernels, each run within +-1.5% of the next."""
    cmp = judged(
        [a_round(grid_rows, 1, 0.015), a_round(grid_rows, 2, 0.015)],
        [a_round(grid_rows, 3, 0.015), a_round(grid_rows, 4, 0.015)],
    )
    bad = cmp[cmp["status"].isin([regress.REGRESSION, regress.IMPROVEMENT])]
    assert bad.empty, bad[["benchmark", "params", "change_pct", "rule"]]
    assert cmp["rule"].str.contains("interleaved rounds").any()


def test_five_percent_at_or_above_3_ms_is_caught_in_rounds_not_in_one_run(grid_rows):
    """A 6% slowdown of the fused rows >= 3 ms, runs within +-0.3% of each other (the H200's
    median difference between two runs of these rows is 0.06%): caught in two interleaved
    rounds; one run a side judges it at the card's A/A noise (9% graph ms, 17% GPU-bound
    eager ms) and lets it through."""
    big = fused_big(grid_rows)
    assert big.sum() >= 10
    olds = [a_round(grid_rows, 1, 0.003), a_round(grid_rows, 2, 0.003)]
    news = [a_round(grid_rows, s, 0.003, 1.06, big) for s in (3, 4)]
    cmp = judged(olds, news)
    hit = cmp[cmp.set_index(regress.SERIES_KEYS).index.isin(
        grid_rows[big].set_index(regress.SERIES_KEYS).index
    )]  # fmt: skip
    assert len(hit) == big.sum()
    assert (hit["status"] == regress.REGRESSION).all(), hit[["benchmark", "params", "rule"]]
    graph = hit[hit["unit"] == "graph ms"]
    assert (
        graph["threshold_pct"] < 100 * metrics.aa_noise("graph ms", "gpu_bound", H200.name)
    ).all()
    others = cmp[~cmp.index.isin(hit.index) & (cmp["unit"].isin(TIMES))]
    assert not others["status"].isin([regress.REGRESSION, regress.IMPROVEMENT]).any()

    one = regress.compare_frames(olds[0], news[0])
    one_hit = one[
        one.set_index(regress.SERIES_KEYS).index.isin(hit.set_index(regress.SERIES_KEYS).index)
    ]
    assert not (one_hit["status"] == regress.REGRESSION).any()


def test_a_card_that_drifts_through_the_session_flags_nothing(grid_rows):
    """base 1.00, head 1.03, base 1.06, head 1.09: each side's rounds sit between the
    other's, whatever the size of the drift."""
    every = np.ones(len(grid_rows), dtype=bool)
    olds = [a_round(grid_rows, 1, 0.0), a_round(grid_rows, 1, 0.0, 1.06, every)]
    news = [a_round(grid_rows, 1, 0.0, 1.03, every), a_round(grid_rows, 1, 0.0, 1.09, every)]
    cmp = judged(olds, news)
    assert not cmp["status"].isin([regress.REGRESSION, regress.IMPROVEMENT]).any()


def test_a_row_noisy_in_this_session_raises_its_own_floor(grid_rows):
    """Rounds 5% apart on each side: a 6% step is within twice that spread."""
    big = fused_big(grid_rows)
    olds = [a_round(grid_rows, 1, 0.0), a_round(grid_rows, 1, 0.0, 1.05, big)]
    news = [
        a_round(grid_rows, 1, 0.0, 1.06 * 1.05, big),
        a_round(grid_rows, 1, 0.0, 1.06 * 1.0, big),
    ]
    cmp = judged(olds, news)
    assert not (cmp["status"] == regress.REGRESSION).any()
    noisy = cmp[cmp.set_index(regress.SERIES_KEYS).index.isin(
        grid_rows[big].set_index(regress.SERIES_KEYS).index
    )]  # fmt: skip
    # the floor: twice the rounds' range over their median, 2 x 5 / 1.025 = 9.76%
    assert (noisy["threshold_pct"] > 9.7).all() and (noisy["change_pct"] > 5.9).all()


def test_the_cli_takes_rounds_as_paths(tmp_path, grid_rows, capsys):
    src = _file(H200, "c5a9b22c")
    data = json.loads(src.read_text())

    def write(name, factor):
        root = tmp_path / name
        (root / H200.name).mkdir(parents=True)
        shutil.copy(ROOT / "results" / "benchmarks.json", root / "benchmarks.json")
        shutil.copy(H200 / "machine.json", root / H200.name / "machine.json")
        d = json.loads(json.dumps(data))
        if factor != 1.0:
            from test_gate import scale_fused

            d["commit_hash"] = "f" * 40
            d["date"] += 3_600_000
            scale_fused(d, factor, GATED)
        (root / H200.name / f"{d['commit_hash'][:8]}-existing-py3.json").write_text(json.dumps(d))
        return str(root)

    base, base2 = write("base", 1.0), write("base-2", 1.0)
    head, head2 = write("head", 1.06), write("head-2", 1.06)
    argv = ["compare", base, head, "--round", base2, head2]
    assert main(argv) == EXIT_REGRESSION
    out = capsys.readouterr().out
    assert "(+1)" in out and "interleaved rounds" in out
    assert main(["compare", base, base2, "--round", base2, base]) == EXIT_OK
    assert main(["compare", base, head, "--round", base2, str(tmp_path / "nowhere")]) == EXIT_USAGE


def test_the_runner_interleaves_and_never_reuses_the_base_in_rounds(tmp_path, capsys):
    calls: list = []
    got = {}

    def compare(a, b, **kw):
        got.update(a=a, b=b, **kw)
        return EXIT_OK

    code = _run_gate(tmp_path, calls, run_commit=_fake_run_commit(calls), rounds=3, compare=compare)
    assert code == EXIT_OK
    assert calls[0::2] == ["HEAD"] * 3 and all(c.startswith("b993c552") for c in calls[1::2])
    assert len(calls) == 6 and "reusing" not in capsys.readouterr().out
    gate_dir = tmp_path / "gate"
    assert got["rounds"] == [
        (str(gate_dir / f"base-{r}"), str(gate_dir / f"head-{r}")) for r in (2, 3)
    ]
    assert (got["a"], got["b"]) == (str(gate_dir / "base"), str(gate_dir / "head"))


# --- real rounds: four runs of one commit on the H200 ---------------------------------------


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = {}
    for name, machine_dir in REAL_RUNS.items():
        root = tmp_path_factory.mktemp(name)
        (root / machine_dir.name).mkdir()
        shutil.copy(ROOT / "results" / "benchmarks.json", root / "benchmarks.json")
        for f in ("machine.json", _file(machine_dir, "493bf30f").name):
            shutil.copy(machine_dir / f, root / machine_dir.name / f)
        out[name] = load_results(root, repo=None).df
    return out


def judged_real(olds, news) -> pd.DataFrame:
    keys = regress.SERIES_KEYS  # each run has its own machine name: compared without it
    old, new = rounds.combine(olds, keys), rounds.combine(news, keys)
    return regress.compare_frames(old, new, keys=["benchmark", "params"])


def stepped(rows: pd.DataFrame, factor: float) -> pd.DataFrame:
    out = rows.copy()
    big = fused_big(rows)
    for col in ("value", "noise_lo", "noise_hi"):
        out.loc[big, col] = out.loc[big, col] * factor
    return out


def test_rounds_under_their_own_machine_names_line_up(real_runs):
    got = rounds.combine([real_runs["cold"], real_runs["r3"]], regress.SERIES_KEYS)
    times = got[got["unit"].isin(TIMES) & got["value"].notna()]
    assert (times["rounds"] == 2).mean() > 0.95


@pytest.mark.parametrize("split", SPLITS, ids=["-".join(a) for a, _ in SPLITS])
def test_the_h200_aa_rounds_flag_nothing(real_runs, split):
    olds, news = ([real_runs[n] for n in side] for side in split)
    cmp = judged_real(olds, news)
    bad = cmp[cmp["status"].isin([regress.REGRESSION, regress.IMPROVEMENT, regress.FAILED])]
    assert bad.empty, bad[["benchmark", "params", "change_pct", "rule"]]
    # the Short fused backward is host-bound eagerly: its rounds split 0.43/0.46 ms vs
    # 0.57/0.68 ms; it keeps the card's host-bound A/A floor
    host = cmp[(cmp["unit"] == "ms") & (cmp["regime"] == metrics.HOST_BOUND)]
    assert len(host) and not host["rule"].str.startswith("interleaved rounds").any()
    # SDPA (a backend and a plan picked per process) keeps the unit's 5%
    sdpa = cmp[(cmp["bwd_mode"] == "sdpa") & (cmp["unit"] == "graph ms")]
    assert (sdpa["threshold_pct"] >= 5.0 - 1e-9).all()


@pytest.mark.parametrize("split", SPLITS, ids=["-".join(a) for a, _ in SPLITS])
def test_a_5_percent_step_in_h200_rounds(real_runs, split):
    """A 5% slowdown of every fused time row >= 3 ms, put on the later side's two runs: two
    rounds a side catch it on at least 18 of the 24 rows (the others moved by 1.3-7% within
    this session); one run a side (the card's A/A floor, 9% graph ms) catches it on none."""
    olds = [real_runs[n] for n in split[0]]
    news = [stepped(real_runs[n], 1.05) for n in split[1]]
    cmp = judged_real(olds, news)
    hit = cmp[(cmp["bwd_mode"] == "fused") & cmp["unit"].isin(TIMES) & (cmp["value_old"] >= 3)]
    assert len(hit) == 24
    caught = hit["status"] == regress.REGRESSION
    assert caught.sum() >= 18, hit.loc[~caught, ["benchmark", "params", "threshold_pct"]]
    # a miss is the session's noise: a floor above 4%, or medians that moved the step under it
    missed = hit[~caught]
    assert ((missed["threshold_pct"] > 4.0) | (missed["change_pct"] < 4.0)).all()
    rows = hit[["benchmark", "params", "unit"]]
    one = regress.compare_frames(olds[0], news[0], keys=["benchmark", "params"])
    one_hit = one.merge(rows, on=["benchmark", "params", "unit"])
    assert not (one_hit["status"] == regress.REGRESSION).any()
    tenth = judged_real(olds, [stepped(real_runs[n], 1.10) for n in split[1]])
    big = tenth.merge(rows, on=["benchmark", "params", "unit"])
    # 10%: every replayed row; of the eager ones all but the Long grad-grad T16384, whose
    # cold run was 6% slower than the three warm ones (18.21 vs 17.00-17.30 ms)
    ten = big["status"] == regress.REGRESSION
    assert ten[big["unit"] == "graph ms"].all() and ten.sum() >= 23, big.loc[~ten, "params"]


def test_the_cli_judges_the_h200_rounds_from_their_files(caplog, capsys):
    """Result files as they are kept: two under results/, two under tests/data with no
    benchmarks.json of their own (results/'s gives the units, so TFLOP/s reads higher is
    better); each under its own machine name."""
    files = {n: str(_file(d, "493bf30f")) for n, d in REAL_RUNS.items()}
    argv = ["compare", files["cold"], files["warm"], "--round", files["r3"], files["r4"]]
    with caplog.at_level("WARNING"):
        assert main(argv + ["--results", str(ROOT / "results")]) == EXIT_OK
    assert "benchmarks.json" not in caplog.text
    assert "(+1)" in capsys.readouterr().out
