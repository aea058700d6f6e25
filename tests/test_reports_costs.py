"""The run-cost trend (reports/costs.py): rows from results/<machine>/runs.jsonl, the text
table of `python -m reports costs`, and the line of the text report. No torch."""

from __future__ import annotations

import json

from reports import costs
from reports.cli import EXIT_OK, main


def record(date, wall, measure, state="warm", presets=("ttt",), procs=1, **kw):
    return {
        "commit": "abcdef0123456789", "presets": list(presets), "state": state, "date": date,
        "wall_s": wall, "measure_s": measure, "reference_s": 1.0, "first_call_s": 2.0,
        "startup_s": 3.0, "process_asv_s": wall - measure - 3.0, "measuring_processes": procs,
        **kw,
    }  # fmt: skip


def write_runs(results, machine, recs, extra=""):
    folder = results / machine
    folder.mkdir(parents=True)
    lines = [json.dumps(r) for r in recs]
    (folder / costs.RUNS_FILE).write_text("\n".join(lines) + "\n" + extra)


def test_rows_are_oldest_first_with_the_share_outside_measuring(tmp_path):
    write_runs(
        tmp_path,
        "h200",
        [
            record("2026-12-02T10:00:00Z", 57.0, 7.9),
            record("2026-12-01T10:00:00Z", 168.8, 20.0, state="cold", procs=None),
        ],  # fmt: skip
        extra="{not json\n",
    )  # a damaged line is skipped
    write_runs(tmp_path, "cpu-x86_64", [record("2026-12-03T10:00:00Z", 20.0, 10.0)])
    rows = costs.cost_rows(tmp_path)
    assert [r["machine"] for r in rows] == ["h200", "h200", "cpu-x86_64"]
    assert rows[0]["state"] == "cold" and rows[0]["procs"] is None
    assert abs(rows[1]["outside_pct"] - 100 * (57.0 - 7.9) / 57.0) < 1e-9
    assert [r["machine"] for r in costs.cost_rows(tmp_path, "h200")] == ["h200", "h200"]
    assert costs.cost_rows(tmp_path / "none") == []


def test_the_table_and_the_line_show_the_trend(tmp_path, capsys):
    write_runs(tmp_path, "h200", [record("2026-12-01T10:00:00Z", 57.0, 7.9),
                                  record("2026-12-02T10:00:00Z", 28.5, 7.9)])  # fmt: skip
    rows = costs.cost_rows(tmp_path)
    line = costs.cost_line(rows)
    assert line.startswith("last run (warm, ttt): 28.5 s, 72% outside measuring")
    assert "previous such run 57.0 s: -50%" in line
    assert main(["costs", "--results", str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "h200: 2 runs" in out and "57.0" in out and "28.5" in out and "asv+rest" in out
    assert costs.costs_table([]).startswith("no run costs recorded")
