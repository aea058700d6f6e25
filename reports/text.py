"""`<machine>_latest.txt`: the latest results, per config: math vs each bwd_mode and SDPA.

Per config (family x preset x shape): ms, speedup vs math (math ms / mode ms; > 1 = win),
peak MiB and its ratio to math, TFLOP/s and % of the machine's measured peak, parity.
A headline block on top shows the seed shape and the TTT shape.

Renders the tables of tables.py (the latest view, ``config_table``, the order and number
formats it shares with html.py and plots.py). "Latest" is per asv benchmark class
(``tables.latest_rows_per_class``): each class comes from the newest commit that has rows
for it, so a partial run at the newest commit (``--presets seed,grid``, a missing Modal
shard) does not hide the other presets; those are labelled with the older commit they come
from.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from reports import peaks, regress
from reports.tables import (
    BASELINE_MODE,
    FUSED_MODE,
    HEADLINE_PRESETS,
    MAX_CONFIG_BLOCKS,
    YARDSTICK_MODES,
    config_table,
    family_sort_key,
    fmt,
    fmt_date,
    fmt_ms,
    fmt_tflops,
    headline_rows,
    latest_rows_per_class,
    mode_sort_key,
    older_commit_fill_ins,
)


def _commit_tag(rows: pd.DataFrame, newest: int | None, with_date: bool = True) -> str:
    """'   [commit abc12345, date]' when ``rows`` (one class or config) come from a commit older
    than ``newest``; '' for the newest commit or when the table carries no commits."""
    if newest is None or "commit_order" not in rows or rows.empty:
        return ""
    older = rows[rows["commit_order"] < newest].drop_duplicates("commit_order")
    if older.empty:
        return ""
    if len(older) == 1 and len(rows.drop_duplicates("commit_order")) == 1:
        r = older.iloc[0]
        date = f", {fmt_date(r['commit_date'])}" if with_date else ""
        return f"   [commit {r['commit_short']}{date}]"
    return "   [commits " + ", ".join(sorted(set(rows["commit_short"]))) + "]"


def _config_block(rows: pd.DataFrame, peak: float | None) -> list[str]:
    header = (
        f"  {'mode':<10} {'ms':>10} {'speedup':>8} {'win/loss':>8} {'peak MiB':>10} "
        f"{'vs math':>8} {'TFLOP/s':>8} {'% peak':>7} {'parity':>7} {'vs flash':>8} "
        f"{'host ms':>8}"
    )
    lines = [header]
    for _, r in rows.iterrows():
        lines.append(
            f"  {r['bwd_mode']:<10} {fmt_ms(r['ms']):>10} {fmt(r['speedup'], '.2f') + 'x':>8} "
            f"{r['win_loss']:>8} {fmt(r['peak_mib'], '.0f'):>10} "
            f"{fmt(r['mem_ratio'], '.2f') + 'x':>8} {fmt_tflops(r['tflops']):>8} "
            f"{fmt(r['pct_peak'], '.1f') + '%' if peak and pd.notna(r['pct_peak']) else 'n/a':>7} "
            f"{fmt(r['parity'], '.2f'):>7} {fmt(r['vs_flash'], '.2f') + 'x':>8} "
            f"{fmt_ms(r['host_ms']):>8}"
        )
    return [line.replace("n/ax", " n/a") for line in lines]


def headline_block(table: pd.DataFrame, newest: int | None = None) -> list[str]:
    """``newest``: the newest commit_order; rows of older commits get a [commit ...] tag."""
    lines = ["HEADLINE: speedup vs math (math ms / mode ms; >1 = win) and peak memory vs math"]
    if table.empty:
        return lines + ["  (no bwd_mode-parameterised results)", ""]
    for which in HEADLINE_PRESETS:
        rows = headline_rows(table, which)
        if rows.empty:
            lines.append(f"{which}: no results at any commit")
            continue
        modes = sorted(rows["bwd_mode"].unique(), key=mode_sort_key)
        others = [m for m in modes if m != BASELINE_MODE]
        for config, crow in rows.groupby("config", sort=False):
            # One older commit for the whole config: tag the config line; else each family.
            per_family = "commit_order" in crow and crow["commit_order"].nunique() > 1
            lines.append(f"{which}: {config}{'' if per_family else _commit_tag(crow, newest)}")
            head = f"  {'family':<9} {'math ms':>9} {'math MiB':>9}  " + "  ".join(
                f"{m:>20}" for m in others
            )
            lines.append(head)
            for family, frow in sorted(crow.groupby("family"), key=lambda x: family_sort_key(x[0])):
                fr = frow.set_index("bwd_mode")
                base = fr.loc[BASELINE_MODE] if BASELINE_MODE in fr.index else None
                cells = []
                for m in others:
                    if m not in fr.index or pd.isna(fr.loc[m, "ms"]):
                        cells.append(f"{'n/a':>20}")
                        continue
                    r = fr.loc[m]
                    cell = f"{fmt(r['speedup'], '.2f')}x {r['win_loss']}"
                    if pd.notna(r["mem_ratio"]):
                        cell += f" {r['mem_ratio']:.2f}x mem"
                    cells.append(f"{cell:>20}")
                math_ms = fmt_ms(base["ms"]) if base is not None else "n/a"
                math_mib = fmt(base["peak_mib"], ".0f") if base is not None else "n/a"
                tag = _commit_tag(frow, newest) if per_family else ""
                lines.append(f"  {family:<9} {math_ms:>9} {math_mib:>9}  " + "  ".join(cells) + tag)
        lines.append("")
    return lines


def fused_vs_sdpa_block(table: pd.DataFrame, newest: int | None = None) -> list[str]:
    """The fused mode against SDPA flash and SDPA's fastest backend, config by config.

    ratio = yardstick ms / fused ms (> 1: fused is faster); MiB = fused peak / flash peak;
    host = fused host ms / fused ms (near 1 or above: the fused row is host time, not
    kernels). Rows measured at a commit older than ``newest`` end with a [commit ...] tag.
    """
    if table.empty or FUSED_MODE not in set(table["bwd_mode"]):
        return []
    width = max(len(str(c)) for c in table["config"])
    lines = [
        "FUSED vs SDPA (ratio = SDPA ms / fused ms, >1 = fused faster; MiB = fused / flash; "
        "host = fused host ms / fused ms, near 1 = bound by the host)",
        f"  {'family':<9} {'preset':<6} {'config':<{width}} {'fused ms':>9} "
        f"{'flash ms':>9} {'ratio':>6} {'sdpa ms':>9} {'ratio':>6} {'MiB':>6} {'host':>5}",
    ]
    # Only configs with the fused mode and a yardstick make a line: pick them up front.
    key = pd.MultiIndex.from_frame(table[["family", "preset", "config"]])
    both = set(key[table["bwd_mode"] == FUSED_MODE]) & set(
        key[table["bwd_mode"].isin(YARDSTICK_MODES)]
    )
    table = table[key.isin(list(both))]
    groups = table.groupby(["family", "preset", "config"], sort=False)
    for (family, preset, config), rows in itertools.islice(groups, MAX_CONFIG_BLOCKS):
        by_mode = rows.set_index("bwd_mode")
        if FUSED_MODE not in by_mode.index or not any(m in by_mode.index for m in YARDSTICK_MODES):
            continue
        fused = by_mode.loc[FUSED_MODE]
        cells = []
        for mode in YARDSTICK_MODES:
            ms = by_mode.loc[mode, "ms"] if mode in by_mode.index else math.nan
            cells += [fmt_ms(ms), fmt(ms / fused["ms"], ".2f")]
        flash_mib = by_mode.loc["flash", "peak_mib"] if "flash" in by_mode.index else math.nan
        mib = fmt(fused["peak_mib"] / flash_mib, ".2f")
        host = fmt(fused.get("host_ms", math.nan) / fused["ms"], ".2f")
        lines.append(
            f"  {family:<9} {preset:<6} {config:<{width}} {fmt_ms(fused['ms']):>9} "
            f"{cells[0]:>9} {cells[1]:>6} {cells[2]:>9} {cells[3]:>6} {mib:>6} {host:>5}"
            + _commit_tag(rows, newest, with_date=False)
        )
    if groups.ngroups > MAX_CONFIG_BLOCKS:
        lines.append(f"  ... {groups.ngroups - MAX_CONFIG_BLOCKS} more configs in the CSV")
    return lines + [""]


def _fill_in_line(fills: list[dict]) -> str:
    """'older commits fill in presets not measured at the newest: TTT, Long from abc12345
    (date, n of m measurements present)'; one '; '-separated part per older commit."""
    parts = [
        f"{', '.join(f['labels'])} from {f['commit_short']} ({fmt_date(f['commit_date'])}, "
        f"{f['n_ok']} of {f['n_rows']} measurements present)"
        for f in fills
    ]
    return "older commits fill in presets not measured at the newest: " + "; ".join(parts)


def invalid_block(latest: pd.DataFrame, limit: int = 50) -> list[str]:
    """The values of the latest view that the result files hold but that are not valid
    measurements (load.check_value): listed, since the tables show them as n/a."""
    if "invalid" not in latest:
        return []
    bad = latest[latest["invalid"].astype(bool)]
    if bad.empty:
        return []
    lines = [f"INVALID VALUES ({len(bad)}: in the result files, not valid measurements; n/a above)"]
    for _, r in bad.sort_values(["benchmark", "params"]).head(limit).iterrows():
        lines.append(f"  invalid  {r['benchmark']} {r['params']}: {r['invalid']}")
    if len(bad) > limit:
        lines.append(f"  ... {len(bad) - limit} more in the warnings of the run")
    return lines + [""]


def latest_text(df: pd.DataFrame, machine: str, changes: pd.DataFrame | None = None) -> str:
    """The whole `<machine>_latest.txt`: ``machine``'s newest commit, each preset it did not
    measure filled in from the newest older commit that did (``latest_rows_per_class``)."""
    latest = latest_rows_per_class(df, machine)
    if latest.empty:
        return f"{machine}: no results\n"
    newest = int(latest["commit_order"].max())
    at_newest = latest[latest["commit_order"] == newest]
    fills = older_commit_fill_ins(latest)
    first = at_newest.iloc[0]
    card = peaks.card_peak(df, machine)  # the machine's own Peak result, else legacy
    peak = card.tflops if card else None
    table = config_table(latest, peak) if "bwd_mode" in latest else pd.DataFrame()
    n_ok = int(at_newest["value"].notna().sum())
    lines = [
        f"machine {machine}   commit {first['commit_short']}   {fmt_date(first['commit_date'])}"
        f"   {n_ok} of {len(at_newest)} measurements present",
        f"subject: {first['subject']}" if first.get("subject") else "",
        _fill_in_line(fills) if fills else None,
        (
            f"% peak = TFLOP/s / {peak:.0f}, the bf16 dense matmul ceiling: {card.source}"
            if peak
            else "% peak: no measured peak for this machine (no bench_peak.Peak result)"
        ),
        f"ceilings: {card.describe()}" if card and not card.legacy else None,
        "n/a = not run here (mode not applicable, out of memory) or failed its parity check",
        "",
    ]
    lines += headline_block(table, newest)
    lines += fused_vs_sdpa_block(table, newest)
    lines += invalid_block(latest)
    if changes is not None and not changes.empty:
        at_head = changes[
            (changes["machine"] == machine)
            & (changes["commit_new"] == first["commit"])
            & changes["status"].isin([*regress.BAD_STATUSES, regress.IMPROVEMENT])
        ]
        if not at_head.empty:
            lines.append(
                "CHANGES vs the previous commit with results (noise-aware, see metrics.py)"
            )
            for _, r in at_head.sort_values("worse_pct", ascending=False).iterrows():
                lines.append(
                    f"  {r['status']:<11} {r['benchmark']} {r['params']}: "
                    f"{fmt(r['value_old'], '.4g')} -> {fmt(r['value_new'], '.4g')} {r['unit']} "
                    f"({fmt(r['change_pct'], '+.1f')}%, threshold {r['threshold_pct']:.1f}%)"
                )
            lines.append("")
    lines.append(
        "PER CONFIG (newest commit; [commit ...] = a preset not measured there, from that commit)"
        if fills
        else "PER CONFIG (newest commit)"
    )
    if table.empty:
        lines.append("  no bwd_mode-parameterised benchmarks: raw values")
        for _, r in latest.sort_values(["benchmark", "params"]).iterrows():
            tag = f"   [commit {r['commit_short']}]" if r["commit_order"] < newest else ""
            lines.append(
                f"  {r['benchmark']} {r['params']}: {fmt(r['value'], '.4g')} {r['unit']}{tag}"
            )
    else:
        groups = table.groupby(["family", "preset", "config"], sort=False)
        for (family, preset, config), rows in itertools.islice(groups, MAX_CONFIG_BLOCKS):
            lines.append(f"== {family} | {preset} | {config}{_commit_tag(rows, newest)}")
            lines += _config_block(rows, peak)
            lines.append("")
        if groups.ngroups > MAX_CONFIG_BLOCKS:
            lines.append(
                f"... {groups.ngroups - MAX_CONFIG_BLOCKS} more configs: data/all_results.csv"
            )
    return "\n".join(line for line in lines if line is not None).rstrip() + "\n"
