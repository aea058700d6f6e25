"""What the runs cost, over time: rows from ``results/<machine>/runs.jsonl`` (runner/costs.py).

    python -m reports costs [--results results] [--machine NAME] [--last N]

:func:`cost_rows` is the data (one dict per run, oldest first: what an HTML table or a
plot reads), :func:`costs_table` the text table, :func:`cost_line` the one line the text
report (``<machine>_latest.txt``) carries. Reads JSON lines only; a line that does not
parse is skipped with a count, never an error (the file is appended to by live runs).
"""

from __future__ import annotations

import json
from pathlib import Path

RUNS_FILE = "runs.jsonl"  # runner.costs.RUNS_FILE (reports/ imports nothing of runner/)
SECONDS = ("wall_s", "measure_s", "reference_s", "first_call_s", "startup_s", "process_asv_s")
COLUMNS = (
    ("date", "date", 16),
    ("commit", "commit", 8),
    ("state", "state", 14),
    ("presets", "presets", 22),
    ("wall_s", "wall s", 8),
    ("measure_s", "measure", 8),
    ("reference_s", "refs", 7),
    ("first_call_s", "first", 7),
    ("startup_s", "start", 7),
    ("process_asv_s", "asv+rest", 9),
    ("outside_pct", "outside", 8),
    ("procs", "procs", 6),
)


def cost_rows(results: str | Path = "results", machine: str | None = None) -> list[dict]:
    """One row per recorded run of every machine (or of ``machine``), oldest first (by
    date): the record's fields plus ``outside_pct`` (share of the wall time not spent
    measuring: 100 * (wall - measure) / wall) and ``procs`` (measuring processes, "-" for
    a run whose classes measured in their own setup_caches)."""
    root = Path(results)
    files = sorted(root.glob(f"*/{RUNS_FILE}"))
    if machine is not None:
        files = [f for f in files if f.parent.name == machine]
    rows = []
    for file in files:
        try:
            lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a live writer's line is whole (O_APPEND); a damaged one is skipped
            if not isinstance(rec, dict):
                continue
            row = dict(rec)
            row.setdefault("machine", file.parent.name)
            if rec.get("interrupted") is True:  # stopped part-way: its state says so
                row["state"] = f"{rec.get('state', '?')}, stopped"
            wall, measure = _num(rec.get("wall_s")), _num(rec.get("measure_s"))
            row["outside_pct"] = (
                100.0 * (wall - measure) / wall if wall and measure is not None else None
            )
            procs = rec.get("measuring_processes")
            row["procs"] = procs if isinstance(procs, int) else None
            rows.append(row)
    rows.sort(key=lambda r: (str(r.get("date") or ""), str(r.get("machine"))))
    return rows


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cell(row: dict, key: str, width: int) -> str:
    value = row.get(key)
    if key == "date":
        text = str(value or "-").replace("T", " ")[:16]
    elif key == "commit":
        text = str(value or "-")[:8]
    elif key == "presets":
        text = ",".join(value) if isinstance(value, list) else str(value or "-")
        text = text if len(text) <= width - 1 else text[: width - 2] + "~"
    elif key == "outside_pct":
        text = "-" if value is None else f"{value:.0f}%"
    elif key in SECONDS:
        text = "-" if _num(value) is None else f"{value:.1f}"
    else:
        text = "-" if value is None else str(value)
    return (
        text.rjust(width)
        if key not in ("date", "commit", "state", "presets")
        else text.ljust(width)
    )


def costs_table(rows: list[dict], last: int | None = 20) -> str:
    """A text table per machine of its ``last`` runs (oldest first), seconds per bucket."""
    if not rows:
        return "no run costs recorded (results/<machine>/runs.jsonl)\n"
    out = []
    for machine in sorted({str(r.get("machine")) for r in rows}):
        mine = [r for r in rows if str(r.get("machine")) == machine]
        shown = mine[-last:] if last else mine
        out.append(
            f"{machine}: {len(mine)} runs"
            + (f", the last {len(shown)}" if len(shown) < len(mine) else "")
        )
        out.append("  " + " ".join(label.ljust(w) if k in ("date", "commit", "state", "presets")
                                   else label.rjust(w) for k, label, w in COLUMNS))  # fmt: skip
        for r in shown:
            out.append("  " + " ".join(_cell(r, k, w) for k, _, w in COLUMNS))
        line = cost_line(mine)
        if line:
            out.append("  " + line)
        out.append("")
    out.append(
        "measure: timing + memory + parity; refs: fp64/math references; first: first calls "
        "(compile, autotune); start: process start + imports; asv+rest: the wall time less "
        "measure, refs and first (start included): asv, its processes and the rest; outside: "
        "the wall time not spent measuring; procs: measuring processes"
    )
    return "\n".join(out) + "\n"


def cost_line(rows: list[dict]) -> str | None:
    """The newest run, against the newest earlier run of the same state and presets."""
    if not rows:
        return None
    new = rows[-1]
    same = [
        r for r in rows[:-1]
        if r.get("state") == new.get("state") and r.get("presets") == new.get("presets")
    ]  # fmt: skip
    wall = _num(new.get("wall_s"))
    outside = new.get("outside_pct")
    presets = ",".join(new.get("presets") or []) or "-"
    text = (
        f"last run ({new.get('state', '?')}, {presets}): {wall:.1f} s"
        if wall is not None
        else f"last run ({new.get('state', '?')}, {presets}): ? s"
    )
    if outside is not None:
        text += f", {outside:.0f}% outside measuring"
    if same and _num(same[-1].get("wall_s")):
        old = _num(same[-1]["wall_s"])
        text += (
            f" (previous such run {old:.1f} s: {100.0 * (wall - old) / old:+.0f}%)" if wall else ""
        )
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m reports costs", description=__doc__)
    p.add_argument("--results", default="results")
    p.add_argument("--machine")
    p.add_argument("--last", type=int, default=20, help="runs per machine (0: all)")
    args = p.parse_args(argv)
    print(costs_table(cost_rows(args.results, args.machine), args.last or None), end="")
    return 0
