"""Rates derived in the reports, each card's own measured peak, machines side by side and
the roofline (issues 15 item 3 and 17 items 1 and 3): reports/derived.py, reports/peaks.py,
reports/machines.py, reports/roofline.py. CPU only, from synthetic and committed results.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import flops  # noqa: E402
from reports import derived, regress  # noqa: E402
from reports.load import load_results  # noqa: E402
from tests.test_reports import (  # noqa: E402
    RESULT_COLUMNS,
    fake_commit,
    write_history,
)

PEAK_OPS = list(flops.PEAK_OPS)


def _asv_row(values, params, stats=None):
    row = [values, [[repr(v) for v in axis] for axis in params], "0" * 64, 1, 1.0]
    if stats:
        row += stats
    return row


def write_machine(
    results: Path,
    machine: str,
    commit: str,
    date_ms: int,
    rows: dict,
    meta: dict,
) -> Path:
    """One asv result file of ``rows`` (name -> asv row) for ``machine``; ``meta`` (name ->
    (param_names, params, unit)) merged into results/benchmarks.json."""
    bj_path = results / "benchmarks.json"
    bj = json.loads(bj_path.read_text()) if bj_path.is_file() else {"version": 2}
    for name, (names, params, unit) in meta.items():
        bj[name] = {
            "name": name,
            "param_names": names,
            "params": [[repr(v) for v in axis] for axis in params],
            "type": "track",
            "unit": unit,
            "version": "0" * 64,
        }
    results.mkdir(parents=True, exist_ok=True)
    bj_path.write_text(json.dumps(bj))
    folder = results / machine
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    data = {
        "commit_hash": commit,
        "env_name": "existing-py3",
        "date": date_ms,
        "params": {"machine": machine, "python": "3"},
        "python": "3",
        "requirements": {},
        "env_vars": {},
        "result_columns": RESULT_COLUMNS,
        "results": rows,
        "durations": {},
        "version": 2,
    }
    path = folder / f"{commit[:8]}-existing-py3.json"
    path.write_text(json.dumps(data))
    return path


ATTN_NAMES = ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]
TTT = [[1], [12], ["1024/9216"], [64, 96], ["bfloat16"], ["window8192"], ["math", "fused"]]


def attention_rows(ms_by_mode: dict, graph_by_mode: dict | None = None, family="gradgrad"):
    """rows + meta of one TTT-like class: ms (and graph ms) per mode, the same for each D."""
    n_d = len(TTT[3])
    modes = TTT[6]
    ms = [ms_by_mode[m] for _ in range(n_d) for m in modes]
    rows = {f"bench_{family}.TTT.track_ms": _asv_row(ms, TTT)}
    meta = {f"bench_{family}.TTT.track_ms": (ATTN_NAMES, TTT, "ms")}
    if graph_by_mode:
        g = [graph_by_mode.get(m) for _ in range(n_d) for m in modes]
        rows[f"bench_{family}.TTT.track_graph_ms"] = _asv_row(g, TTT)
        meta[f"bench_{family}.TTT.track_graph_ms"] = (ATTN_NAMES, TTT, "graph ms")
    return rows, meta


def peak_rows(ms: list[float]):
    rows = {"bench_peak.Peak.track_ms": _asv_row(ms, [PEAK_OPS])}
    meta = {"bench_peak.Peak.track_ms": (["op"], [PEAK_OPS], "ms")}
    return rows, meta


# --------------------------------------------------------------------------------------------
# B: rates derived from the times (issue 15 item 3)


def test_stored_tflops_are_replaced_by_the_flop_model_over_ms(tmp_path):
    """The synthetic history stores track_tflops by a model of its own (gradgrad 10x the
    forward): the loader drops them and derives every TFLOP/s from ms with harness/flops.py."""
    write_history(tmp_path, 2)
    df = load_results(tmp_path, repo=None).df
    rates = df[df["metric"] == "tflops"]
    assert not rates.empty and (rates["unit"] == "TFLOP/s").all()
    assert (rates["direction"] == "higher").all()
    ms = df[df["metric"] == "ms"].set_index(["commit", "family", "params"])["value"]
    for r in rates.itertuples():
        want = (
            flops.flops(r.family, r.B, r.H, r.Tq, r.Tk, r.D, r.mask)
            / ms[(r.commit, r.family, r.params)]
        )
        if math.isnan(want):
            assert math.isnan(r.value)
        else:
            assert r.value == pytest.approx(want / 1e9, rel=1e-12)
        assert r.benchmark.endswith(".track_tflops")
    # one rate per time row: nothing stored left over, nothing doubled
    assert len(rates) == len(ms)
    assert not df.duplicated(["machine", "commit", "benchmark", "params"]).any()


def test_graph_and_peak_rates_and_their_noise(tmp_path):
    rows, meta = attention_rows({"math": 20.0, "fused": 2.0}, {"fused": 1.0})
    q = [[None, 1.8, None, 1.8], [None, 2.2, None, 2.2]]  # ms quartiles of the fused rows
    rows["bench_gradgrad.TTT.track_ms"] += [None, None] + q
    prow, pmeta = peak_rows([1.4, 1.4, 1.0])
    write_machine(
        tmp_path, "h200-sxm-140gb", fake_commit(1), 1_700_000_000_000, rows | prow, meta | pmeta
    )
    df = load_results(tmp_path, repo=None).df
    f = flops.flops("gradgrad", 1, 12, 1024, 9216, 64, "window8192")
    fused = df[(df["bwd_mode"] == "fused") & (df["D"] == 64)].set_index("metric")
    assert fused.loc["tflops", "value"] == pytest.approx(f / 2.0 / 1e9)
    assert fused.loc["graph_tflops", "value"] == pytest.approx(f / 1.0 / 1e9)
    assert fused.loc["graph_tflops", "benchmark"] == "bench_gradgrad.TTT.track_graph_tflops"
    # the time's quartiles turned around: the rate's q25 comes from the time's q75
    assert fused.loc["tflops", "q_25"] == pytest.approx(f / 2.2 / 1e9)
    assert fused.loc["tflops", "q_75"] == pytest.approx(f / 1.8 / 1e9)
    math_rows = df[(df["bwd_mode"] == "math") & (df["D"] == 64)]
    assert "graph_tflops" in set(math_rows["metric"])  # a skipped graph ms: a NaN rate
    assert math.isnan(math_rows.set_index("metric").loc["graph_tflops", "value"])
    peak = df[df["family"] == "peak"].set_index(["metric", "op"])["value"]
    bf16 = flops.PEAK_OPS["matmul_bf16_8192"].flops
    assert peak[("tflops", "matmul_bf16_8192")] == pytest.approx(bf16 / 1.4 / 1e9)
    assert peak[("gbps", "copy_2GiB")] == pytest.approx(4 * 2**30 / 1.0 / 1e6)
    assert ("gbps", "matmul_bf16_8192") not in peak.index
    units = df[df["family"] == "peak"].set_index("metric")["unit"]
    assert units["gbps"] == "GB/s" and (units["tflops"] == "TFLOP/s").all()


def test_rate_rows_follow_the_time_they_come_from():
    def frame(metric, unit, values):
        return pd.DataFrame(
            {
                "machine": "m",
                "benchmark": f"bench_gradgrad.Seed.track_{metric}",
                "params": "B=2 bwd_mode=fused",
                "unit": unit,
                "bwd_mode": "fused",
                "value_old": [values[0]],
                "value_new": [values[1]],
                "noise_lo_old": [np.nan],
                "noise_hi_old": [np.nan],
                "noise_lo_new": [np.nan],
                "noise_hi_new": [np.nan],
            }
        )

    # eager ms unchanged, graph ms 20% slower: graph TFLOP/s regresses with it, not with ms
    rows = pd.concat(
        [
            frame("ms", "ms", (5.0, 5.0)),
            frame("tflops", "TFLOP/s", (100.0, 100.0)),
            frame("graph_ms", "graph ms", (4.0, 4.8)),
            frame("graph_tflops", "TFLOP/s", (125.0, 125.0 / 1.2)),
        ],
        ignore_index=True,
    )
    out = regress.classify(rows).set_index(rows["benchmark"].str.rpartition(".")[2])
    assert out.loc["track_graph_ms", "status"] == regress.REGRESSION
    assert out.loc["track_graph_tflops", "status"] == regress.REGRESSION
    assert out.loc["track_graph_tflops", "rule"] == "follows ms"
    assert out.loc["track_tflops", "status"] == regress.UNCHANGED


def test_derived_rates_need_no_torch():
    """reports/ never imports torch (docs/design.md): harness.flops is standard library."""
    import subprocess

    code = "import sys, reports.derived, reports.load; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert proc.stdout.strip() == "False"


def test_add_rates_leaves_a_table_without_times_alone():
    df = pd.DataFrame({"metric": ["peak_mib"], "family": ["forward"], "value": [1.0]})
    assert derived.add_rates(df).equals(df)
    assert derived.add_rates(pd.DataFrame()).empty


# --------------------------------------------------------------------------------------------
# C: % of each card's own measured peak (issue 17 item 1)


def _two_machines(tmp_path, h200_peaks=((1.25, 1.24, 0.95), (1.22, 1.21, None))):
    """h100-sxm-80gb: one commit, no Peak (legacy); h200-sxm-140gb: commits 1 and 2, each
    with a Peak run (``h200_peaks``: ms of bf16, fp16, copy; None = failed)."""
    rows, meta = attention_rows({"math": 20.0, "fused": 2.0})
    write_machine(tmp_path, "h100-sxm-80gb", fake_commit(0), 1_700_000_000_000, rows, meta)
    for i, ms in enumerate(h200_peaks, 1):
        rows, meta = attention_rows({"math": 10.0, "fused": 1.25}, {"fused": 1.0})
        prow, pmeta = peak_rows(list(ms))
        date = 1_700_000_000_000 + i * 3_600_000
        write_machine(tmp_path, "h200-sxm-140gb", fake_commit(i), date, rows | prow, meta | pmeta)
    return load_results(tmp_path, repo=None).df


def test_each_machine_is_rated_against_its_own_newest_peak(tmp_path):
    from reports import peaks

    df = _two_machines(tmp_path)
    h200 = peaks.card_peak(df, "h200-sxm-140gb")
    bf16 = flops.PEAK_OPS["matmul_bf16_8192"].flops
    assert h200.tflops == pytest.approx(bf16 / 1.22 / 1e9)  # the newest commit's run
    assert h200.commit == fake_commit(2) and not h200.legacy
    # the newest copy failed: the copy ceiling comes from the newest run that has one
    assert h200.gbps == pytest.approx(4 * 2**30 / 0.95 / 1e6)
    assert h200.copy_commit == fake_commit(1)
    assert "bench_peak.Peak at " + fake_commit(2)[:8] in h200.source
    h100 = peaks.card_peak(df, "h100-sxm-80gb")
    assert h100.tflops == 790.0 and h100.legacy and h100.gbps is None
    assert "legacy" in h100.source and "docs/baselines.md" in h100.source
    assert peaks.card_peak(df, "cpu-x86_64") is None
    assert peaks.pct_of_peak(450.0, h200) == pytest.approx(100 * 450.0 / h200.tflops)
    assert math.isnan(peaks.pct_of_peak(450.0, None))


def test_a_machine_whose_peak_run_lost_the_matmul_keeps_its_copy_and_the_legacy_matmul(tmp_path):
    from reports import peaks

    rows, meta = peak_rows([None, None, 1.0])
    write_machine(tmp_path, "h100-sxm-80gb", fake_commit(3), 1_700_000_000_000, rows, meta)
    df = load_results(tmp_path, repo=None).df
    card = peaks.card_peak(df, "h100-sxm-80gb")
    assert card.tflops == 790.0 and card.legacy
    assert card.gbps == pytest.approx(4 * 2**30 / 1e6)


def test_text_and_html_show_percent_of_the_machines_own_peak(tmp_path):
    from reports import cli, peaks

    df = _two_machines(tmp_path)
    out = tmp_path / "report"
    res = cli.build(tmp_path, out, repo=None, make_plots=False)
    h200 = (out / "h200-sxm-140gb_latest.txt").read_text()
    card = peaks.card_peak(df, "h200-sxm-140gb")
    assert f"% peak = TFLOP/s / {card.tflops:.0f}, the bf16 dense matmul ceiling: measured" in h200
    assert f"HBM copy {card.gbps:.0f} GB/s" in h200
    f = flops.flops("gradgrad", 1, 12, 1024, 9216, 64, "window8192")
    pct = 100 * f / 1.25 / 1e9 / card.tflops
    assert f"{pct:.1f}%" in h200
    assert "Peak" not in h200.split("PER CONFIG")[1]  # the ceilings are no preset block
    h100 = (out / "h100-sxm-80gb_latest.txt").read_text()
    assert "% peak = TFLOP/s / 790, the bf16 dense matmul ceiling: legacy" in h100
    html_dir = res["written"]["html"].parent  # % of peak is on each machine's page
    page = (html_dir / "machine-h200-sxm-140gb.html").read_text()
    assert f"TFLOP/s / {card.tflops:.0f}, the bf16 dense matmul ceiling: measured" in page
    page = (html_dir / "machine-h100-sxm-80gb.html").read_text()
    assert "legacy: no Peak result for this machine" in page
    index = res["written"]["html"].read_text()  # the two cards side by side, linked
    assert "machines-h100-sxm-80gb-vs-h200-sxm-140gb.html" in index
    pair = (html_dir / "machines-h100-sxm-80gb-vs-h200-sxm-140gb.html").read_text()
    assert "h100-sxm-80gb" in pair and "h200-sxm-140gb" in pair


def test_the_gate_shows_the_ceilings_but_never_fails_on_them(tmp_path, capsys):
    from reports import cli

    # the card at a quarter of its speed: beyond even the H200's host-bound A/A noise (287.5%,
    # the 1.2 ms Peak rows are under 3 ms)
    _two_machines(tmp_path, h200_peaks=((1.2, 1.2, 0.9), (4.8, 4.8, 3.6)))
    code = cli.compare(fake_commit(1), fake_commit(2), tmp_path, repo=None, drift_window=0)
    out = capsys.readouterr().out
    assert "bench_peak.Peak.track_ms" in out  # shown: the card changed
    assert "not gated" in out
    assert code == cli.EXIT_OK


# --------------------------------------------------------------------------------------------
# D: machines side by side (issue 17 item 3)


def test_machine_rows_pair_the_same_config_and_mode_from_each_newest_commit(tmp_path):
    from reports import machines, peaks

    df = _two_machines(tmp_path)
    rows = machines.machine_rows(df, "h100-sxm-80gb", "h200-sxm-140gb")
    assert len(rows) == 2 * 2  # D 64/96 x math/fused, gradgrad TTT only
    assert set(rows["commit_a"]) == {fake_commit(0)} and set(rows["commit_b"]) == {fake_commit(2)}
    fused = rows[(rows["bwd_mode"] == "fused") & (rows["D"] == 64)].iloc[0]
    assert fused["ms_a"] == 2.0 and fused["ms_b"] == 1.25 and fused["ratio"] == 1.6
    f = flops.flops("gradgrad", 1, 12, 1024, 9216, 64, "window8192")
    assert fused["pct_peak_a"] == pytest.approx(100 * f / 2.0 / 1e9 / 790.0)  # legacy H100
    own = peaks.card_peak(df, "h200-sxm-140gb").tflops
    assert fused["pct_peak_b"] == pytest.approx(100 * f / 1.25 / 1e9 / own)
    assert math.isnan(fused["graph_ratio"])  # the H100 has no graph ms
    assert list(rows["bwd_mode"][:2]) == ["math", "fused"]  # the reports' mode order
    assert machines.pairs(df) == [("h100-sxm-80gb", "h200-sxm-140gb")]


def test_machines_text_html_and_cli(tmp_path, capsys):
    from reports import cli, machines

    df = _two_machines(tmp_path)
    text = machines.machines_text(df, "h100-sxm-80gb", "h200-sxm-140gb")
    assert "A h100-sxm-80gb: bf16 matmul peak 790 TFLOP/s, legacy" in text
    assert "B h200-sxm-140gb: bf16 matmul peak" in text and "bench_peak.Peak at" in text
    assert "== gradgrad | TTT | B=1 H=12 T=1024/9216 D=64" in text
    assert re.search(r"\n  fused +2\.000 +1\.250 +1\.60x +34\.3% +48\.0%\n", text)
    page = machines.machines_html(df, "h100-sxm-80gb", "<b>")
    assert "<b>" not in page and "&lt;b&gt;" in page  # names are escaped
    assert "No preset, config and mode measured on both" in page
    page = machines.machines_html(df, "h100-sxm-80gb", "h200-sxm-140gb")
    assert page.count("<tr>") == 1 + 4 and "1.60x" in page
    # CLI: prints, writes with --out; unknown machines are a usage error
    out = tmp_path / "out"
    argv = ["machines", "h100-sxm-80gb", "h200-sxm-140gb", "--results", str(tmp_path)]
    assert cli.main([*argv, "--repo", str(tmp_path), "--out", str(out)]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert "MACHINES side by side" in printed
    written = out / "machines_h100-sxm-80gb_vs_h200-sxm-140gb.txt"
    assert written.read_text() == text
    assert cli.main(["machines", "h100-sxm-80gb", "nope", "--results", str(tmp_path)]) == 2
    assert "unknown machine" in capsys.readouterr().err
    # `python -m reports` (make report) writes every pair
    res = cli.build(tmp_path, tmp_path / "report", repo=None, make_plots=False)
    assert tmp_path / "report" / written.name in res["written"]["text"]


def test_committed_results_build_the_h100_vs_h200_table(tmp_path):
    """`make report` on a fresh clone: the committed H100 and H200 results share the Seed and
    TTT presets, so report/machines_h100-sxm-80gb_vs_h200-sxm-140gb.txt has rows."""
    from reports import machines

    df = load_results(ROOT / "results", repo=ROOT).df
    assert ("h100-sxm-80gb", "h200-sxm-140gb") in machines.pairs(df)
    text = machines.machines_text(df, "h100-sxm-80gb", "h200-sxm-140gb")
    assert "== gradgrad | Seed |" in text and "== backward | TTT |" in text
    assert "legacy" in text.splitlines()[1]


# --------------------------------------------------------------------------------------------
# E: the byte model and the roofline


def test_byte_model_counts_each_pass_reading_its_inputs_once():
    # forward, B1 H1 T=Tq=Tk=1024 D64 bf16: q, k, v read, o written, lse fp32
    assert flops.bytes_moved("forward", 1, 1, 1024, 1024, 64, "bfloat16") == (
        4 * 1024 * 64 * 2 + 1024 * 4
    )
    assert flops.TENSORS_PER_PATH == {
        "forward": (2, 2, 1),
        "backward": (6, 6, 4),
        "gradgrad": (12, 12, 6),
    }
    # B and H scale it, fp32 doubles the tensors, the mask does not enter it
    one = flops.bytes_moved("gradgrad", 1, 1, 1024, 9216, 64, "bfloat16")
    assert flops.bytes_moved("gradgrad", 2, 3, 1024, 9216, 64, "bfloat16") == 6 * one
    ai = flops.intensity("gradgrad", 1, 12, 1024, 9216, 64, "window8192", "bfloat16")
    assert ai == pytest.approx(
        flops.flops("gradgrad", 1, 12, 1024, 9216, 64, "window8192")
        / flops.bytes_moved("gradgrad", 1, 12, 1024, 9216, 64, "bfloat16")
    )
    assert 1500 < ai < 2500  # docs/gradgrad.md "Byte model": ~1900 FLOP/byte
    with pytest.raises(ValueError, match="dtype"):
        flops.bytes_moved("forward", 1, 1, 8, 8, 8, "int4")
    with pytest.raises(ValueError, match="path"):
        flops.bytes_moved("sideways", 1, 1, 8, 8, 8, "float16")


def test_roofline_points_and_files(tmp_path):
    from reports import roofline

    df = _two_machines(tmp_path)
    points = roofline.roofline_points(df, "h200-sxm-140gb")
    assert set(points["family"]) == {"gradgrad"} and len(points) == 4
    fused = points[points["bwd_mode"] == "fused"].sort_values("intensity").iloc[0]
    assert fused["intensity"] == pytest.approx(
        flops.intensity("gradgrad", 1, 12, 1024, 9216, 64, "window8192", "bfloat16")
    )
    f = flops.flops("gradgrad", 1, 12, 1024, 9216, 64, "window8192")
    assert fused["tflops"] == pytest.approx(f / 1.25 / 1e9)
    assert fused["graph_tflops"] == pytest.approx(f / 1.0 / 1e9)
    out = tmp_path / "plots"
    files = roofline.machine_roofline(df, "h200-sxm-140gb", out / "h200")
    assert [p.name for p in files] == ["roofline.png", "roofline.svg"]
    assert all(p.stat().st_size > 1000 for p in files)
    svg = files[1].read_text()
    assert "HBM copy" in svg and "bf16 matmul" in svg
    # the legacy H100: a matmul roof only, and the figure says so
    legacy = roofline.machine_roofline(df, "h100-sxm-80gb", out / "h100")
    assert legacy and "legacy H100 matmul" in legacy[1].read_text()
    assert "no memory roof" in legacy[1].read_text()
    # no roof at all, or no points: no figure
    assert roofline.machine_roofline(df, "cpu-x86_64", out / "cpu") == []


def test_make_report_writes_the_roofline_and_lists_it_for_the_html(tmp_path):
    from reports import cli

    _two_machines(tmp_path)
    res = cli.build(tmp_path, tmp_path / "report", repo=None)
    h200 = [p.name for p in res["plots"]["h200-sxm-140gb"]]
    assert "roofline.png" in h200 and "roofline.svg" in h200
    page = (res["written"]["html"].parent / "machine-h200-sxm-140gb.html").read_text()
    assert "roofline.png" in page
