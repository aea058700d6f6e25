"""Two machines side by side (issue 17 item 3): the same preset, config and mode on two cards.

    python -m reports machines A B [--results results] [--out report]

For every (family, preset, config, bwd_mode) both machines measured: each side's ms (and
graph ms where there is one), its % of its own card's bf16 matmul peak (reports/peaks.py),
and the ratio A ms / B ms (> 1: B is faster). Each side is its own latest view
(tables.latest_rows_per_class: per benchmark class, the newest commit that ran it), so each
row compares the newest measurement of each card, named by commit in the header.

:func:`machine_rows` returns the table (a DataFrame) that :func:`machines_text` and
:func:`machines_html` render; ``python -m reports`` writes ``machines_<a>_vs_<b>.txt`` for
every pair of report machines that share rows (:func:`pairs`).
"""

from __future__ import annotations

import html as _html
import itertools
import sys
from pathlib import Path

import pandas as pd

from reports import metrics, peaks, tables
from reports.load import load_results
from reports.paths import inside, slug
from reports.tables import fmt, fmt_ms

KEYS = ["family", "preset", "config", "bwd_mode"]
SHAPE = ["B", "H", "T", "D", "dtype", "mask", "Tq", "Tk"]
# At most this many pairs are written by `python -m reports` (all machines but A/A sets).
MAX_PAIRS = 15


def _side(df: pd.DataFrame, machine: str, card: peaks.CardPeak | None) -> pd.DataFrame:
    """One machine's latest rows, one per KEYS: ms, graph_ms, tflops, pct_peak, commit."""
    latest = tables.latest_rows_per_class(df, machine)
    if latest.empty or "bwd_mode" not in latest.columns:
        return pd.DataFrame(columns=[*KEYS, "ms", "graph_ms", "tflops", "pct_peak", "commit"])
    want = latest[latest["metric"].isin(["ms", "graph_ms", "tflops"]) & latest["bwd_mode"].notna()]
    wide = (
        want.drop_duplicates([*KEYS, "metric"])
        .set_index([*KEYS, "metric"])["value"]
        .unstack("metric")
        .reindex(columns=["ms", "graph_ms", "tflops"])
        .reset_index()
    )
    wide.columns.name = None
    wide["pct_peak"] = [peaks.pct_of_peak(t, card) for t in wide["tflops"]]
    first = want.drop_duplicates(KEYS).set_index(KEYS)
    idx = pd.MultiIndex.from_frame(wide[KEYS])
    wide["commit"] = first["commit"].reindex(idx).to_numpy()
    for col in SHAPE:
        if col in first.columns:
            wide[col] = first[col].reindex(idx).to_numpy()
    return wide


def machine_rows(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """One row per (family, preset, config, bwd_mode) that both ``a`` and ``b`` measured:
    ms_a, ms_b, graph_ms_a, graph_ms_b, tflops_a, tflops_b, pct_peak_a, pct_peak_b (of each
    card's own bf16 matmul peak), commit_a, commit_b, ratio (ms_a / ms_b: > 1, B is faster),
    graph_ratio, the shape columns; in the reports' order (family, preset, shape, mode)."""
    left = _side(df, a, peaks.card_peak(df, a))
    right = _side(df, b, peaks.card_peak(df, b))
    shape = [c for c in SHAPE if c in left.columns]
    both = left.merge(
        right.drop(columns=shape, errors="ignore"), on=KEYS, how="inner", suffixes=("_a", "_b")
    )
    both["ratio"] = both["ms_a"] / both["ms_b"]
    both["graph_ratio"] = both["graph_ms_a"] / both["graph_ms_b"]
    if both.empty:
        return both
    both["_fam"] = both["family"].map(tables.family_sort_key)
    both["_preset"] = both["preset"].map(tables.preset_sort_key)
    both["_mode"] = both["bwd_mode"].map(tables.mode_sort_key)
    order = ["_fam", "_preset", *[c for c in ("B", "H", "Tq", "Tk", "D", "mask") if c in both]]
    both = both.sort_values([*order, "config", "_mode"], na_position="last")
    return both.drop(columns=["_fam", "_preset", "_mode"]).reset_index(drop=True)


def pairs(df: pd.DataFrame, machines: list[str] | None = None) -> list[tuple[str, str]]:
    """Pairs (a, b), a < b, of report machines (no A/A sets) that share at least one row
    of ms; at most MAX_PAIRS."""
    if machines is None:
        machines = sorted(m for m in df["machine"].unique() if not metrics.is_aa_machine(m))
    ms = df[(df["metric"] == "ms") & df["bwd_mode"].notna()] if "bwd_mode" in df else df[:0]
    keys = {m: set(map(tuple, ms.loc[ms["machine"] == m, KEYS].to_numpy())) for m in machines}
    out = [(a, b) for a, b in itertools.combinations(machines, 2) if keys[a] & keys[b]]
    return out[:MAX_PAIRS]


def _peak_line(df: pd.DataFrame, machine: str, label: str) -> str:
    card = peaks.card_peak(df, machine)
    if card is None or not card.tflops:
        return f"{label} {machine}: no measured peak (no bench_peak.Peak result): % peak n/a"
    return f"{label} {machine}: bf16 matmul peak {card.tflops:.0f} TFLOP/s, {card.source}"


def _commits(rows: pd.DataFrame, side: str) -> str:
    commits = rows[f"commit_{side}"].dropna().astype(str).unique()
    return ", ".join(sorted(c[:8] for c in commits)) or "n/a"


def machines_text(df: pd.DataFrame, a: str, b: str, rows: pd.DataFrame | None = None) -> str:
    """``machines_<a>_vs_<b>.txt``: the rows of :func:`machine_rows`, one block per config."""
    rows = machine_rows(df, a, b) if rows is None else rows
    lines = [
        f"MACHINES side by side: A = {a}, B = {b}",
        _peak_line(df, a, "A"),
        _peak_line(df, b, "B"),
    ]
    if rows.empty:
        return "\n".join(lines + ["no preset, config and mode measured on both"]) + "\n"
    lines += [
        f"newest commit of each class: A {_commits(rows, 'a')}; B {_commits(rows, 'b')}",
        "ratio = A ms / B ms (> 1: B is faster); % peak = TFLOP/s / that card's own bf16 "
        "matmul peak; graph = the CUDA-graph replay (kernels only) where both have one",
        "",
    ]
    has_graph = rows["graph_ratio"].notna().any()
    head = f"  {'mode':<10} {'A ms':>10} {'B ms':>10} {'ratio':>7} {'A % peak':>9} {'B % peak':>9}"
    if has_graph:
        head += f" {'A graph':>10} {'B graph':>10} {'ratio':>7}"
    for (family, preset, config), block in rows.groupby(["family", "preset", "config"], sort=False):
        lines.append(f"== {family} | {preset} | {config}")
        lines.append(head)
        for r in block.itertuples():
            line = (
                f"  {r.bwd_mode:<10} {fmt_ms(r.ms_a):>10} {fmt_ms(r.ms_b):>10} "
                f"{_ratio(r.ratio):>7} {_pct(r.pct_peak_a):>9} {_pct(r.pct_peak_b):>9}"
            )
            if has_graph:
                line += (
                    f" {fmt_ms(r.graph_ms_a):>10} {fmt_ms(r.graph_ms_b):>10} "
                    f"{_ratio(r.graph_ratio):>7}"
                )
            lines.append(line.rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _ratio(x) -> str:
    return fmt(x, ".2f") + "x" if pd.notna(x) else "n/a"


def _pct(x) -> str:
    return fmt(x, ".1f") + "%" if pd.notna(x) else "n/a"


def machines_html(df: pd.DataFrame, a: str, b: str, rows: pd.DataFrame | None = None) -> str:
    """The same table as an HTML fragment (a heading, the peaks, one <table>), escaped, no
    script: for reports/html.py to place in its page."""
    rows = machine_rows(df, a, b) if rows is None else rows
    e = _html.escape
    parts = [
        f"<h3 class='machines'>{e(a)} vs {e(b)}</h3>",
        f"<p class=muted>{e(_peak_line(df, a, 'A'))}<br>{e(_peak_line(df, b, 'B'))}<br>"
        "ratio = A ms / B ms (&gt; 1: B is faster); % peak = TFLOP/s / that card's own bf16 "
        "matmul peak.</p>",
    ]
    if rows.empty:
        return "\n".join(
            parts + ["<p class=muted>No preset, config and mode measured on both.</p>"]
        )
    # A and B in the headers (the lines above name them) and the config cell wrapping: the
    # page fits a 1,400 px window whatever the machine names (tests/test_reports.py).
    parts.append(
        "<table class='machines'><tr><th>family</th><th>preset</th><th class=l>config</th>"
        "<th>mode</th><th>A ms</th><th>B ms</th><th>ratio</th><th>A % peak</th>"
        "<th>B % peak</th><th>graph ratio</th><th class=l>commits A / B</th></tr>"
    )
    for r in rows.itertuples():
        commits = f"{str(r.commit_a)[:8]} / {str(r.commit_b)[:8]}"
        parts.append(
            f"<tr><td>{e(str(r.family))}</td><td>{e(str(r.preset))}</td>"
            f"<td class=l>{e(str(r.config))}</td><td>{e(str(r.bwd_mode))}</td>"
            f"<td>{fmt_ms(r.ms_a)}</td><td>{fmt_ms(r.ms_b)}</td>"
            f"<td>{_ratio(r.ratio)}</td><td>{_pct(r.pct_peak_a)}</td>"
            f"<td>{_pct(r.pct_peak_b)}</td><td>{_ratio(r.graph_ratio)}</td>"
            f"<td class=l>{e(commits)}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def file_name(a: str, b: str) -> str:
    """``machines_<a>_vs_<b>.txt``, from the machines' file names (reports/cli.py
    machine_file_names: slugs, distinct for distinct machines)."""
    return f"machines_{a}_vs_{b}.txt"


def command(a: str, b: str, results="results", repo=".", out=None, names=None) -> int:
    """`python -m reports machines A B`: print the table; with ``out`` also write it there.
    Exit 0, or 2 (usage) for an unknown machine or the same machine twice."""
    df = load_results(results, repo=repo).df
    known = set(df["machine"])
    unknown = [m for m in (a, b) if m not in known]
    if unknown or a == b:
        why = f"unknown machine(s) {unknown}" if unknown else "the same machine twice"
        print(f"error: {why}; machines with results: {sorted(known)}", file=sys.stderr)
        return 2
    body = machines_text(df, a, b)
    print(body, end="")
    if out:
        names = names or {a: slug(a), b: slug(b)}
        path = inside(Path(out), Path(out) / file_name(names[a], names[b]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        print(f"wrote {path}")
    return 0
