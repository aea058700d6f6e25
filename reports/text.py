"""`<machine>_latest.txt`: the latest results, per config: math vs each bwd_mode and SDPA.

Per config (family x preset x shape): ms, speedup vs math (math ms / mode ms; > 1 = win),
peak MiB and its ratio to math, TFLOP/s and % of the machine's measured peak, parity.
A headline block on top shows the seed shape and the TTT shape.

"Latest" is per asv benchmark class (``latest_rows_per_class``, shared with html.py and
plots.py): each class comes from the newest commit that has rows for it, so a partial run
at the newest commit (``--presets seed,grid``, a missing Modal shard) does not hide the
other presets; those are labelled with the older commit they come from.
"""

from __future__ import annotations

import math

import pandas as pd

from reports import metrics, regress

# Display order of bwd_mode values (bench_suite contract); others follow alphabetically.
MODE_ORDER = ["math", "sdpa", "flash", "compiled", "recompute", "save_p", "dv_only", "fused"]
FAMILY_ORDER = ["forward", "backward", "gradgrad"]
# bench_suite's classes (common.PRESETS), headline first
PRESET_ORDER = ["Seed", "TTT", "Long", "Grid", "Short", "CPU"]
BASELINE_MODE = "math"
# The fused kernels' yardsticks (bench_suite: "flash" = SDPA pinned to FlashAttention-2,
# "sdpa" = PyTorch's fastest backend, cuDNN on the H100).
FUSED_MODE = "fused"
YARDSTICK_MODES = ("flash", "sdpa")
# Headline shapes: the preset class names of the contract, else the shapes themselves.
HEADLINE_PRESETS = {
    "seed": ("seed", lambda row: row.get("T") == "2048" and row.get("D") == 128),
    "ttt": ("ttt", lambda row: row.get("T") == "1024/9216"),
}
METRIC_COLUMNS = {m: m for m in metrics.CONTRACT_METRICS}


def mode_sort_key(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def family_sort_key(family: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def preset_sort_key(preset: str) -> tuple[int, str]:
    return (PRESET_ORDER.index(preset) if preset in PRESET_ORDER else len(PRESET_ORDER), preset)


def _fmt(x: float, spec: str = ".3f", missing: str = "n/a") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or pd.isna(x):
        return missing
    return format(x, spec)


def _fmt_ms(x: float) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    return format(x, ".4f" if x < 1 else ".3f" if x < 100 else ".1f")


def _fmt_tflops(x: float) -> str:
    """One decimal on a GPU (312.4), three significant digits on a CPU (0.0517)."""
    if x is None or pd.isna(x):
        return "n/a"
    return format(x, ".1f" if abs(x) >= 10 else ".3g")


def newest_commit_rows(df: pd.DataFrame, machine: str) -> pd.DataFrame:
    """Rows of ``machine``'s newest commit with results (the CHANGES section's commit)."""
    mdf = df[df["machine"] == machine]
    newest = mdf["commit_order"].max()
    return mdf[mdf["commit_order"] == newest]


def benchmark_class(benchmark: pd.Series) -> pd.Series:
    """'bench_backward.TTT.track_ms' -> 'bench_backward.TTT': asv's benchmark class, whose
    methods share one setup_cache and so are always measured together, in one run."""
    return benchmark.astype(str).str.rsplit(".", n=1).str[0]


def latest_rows_per_class(df: pd.DataFrame, machine: str) -> pd.DataFrame:
    """The latest view of ``machine``: for each asv benchmark class (family + preset), all the
    rows of the newest commit that has rows for that class, and only that commit's.

    The one rule behind every "latest" table (text, HTML summary, speed/memory and scaling
    plots). A class the newest commit did not measure (a partial ``--presets`` run, a
    sharded run with a shard missing) comes from the newest older commit that did; the
    caller labels it with that commit (``older_commit_fill_ins``).

    "Has rows", not "has a non-null value": a class is in a result file only when asv ran it
    (or tried to), and a run whose every value failed (setup_cache raised, OOM, a broken
    kernel) is stored as rows of nulls. Those rows are the newest truth about that class, so
    they are shown (as n/a, and as "failed" in CHANGES) rather than hidden behind older,
    passing numbers that no longer describe the code. Only a class absent from the newest
    result file, i.e. not asked for, is filled in from an older commit.

    Whole classes, never single rows: comparisons inside one config (speedup vs math, vs
    flash, vs sdpa, memory ratios) then always combine measurements of one commit.
    """
    mdf = df[df["machine"] == machine]
    if mdf.empty:
        return mdf
    newest_for_class = (
        mdf["commit_order"].groupby(benchmark_class(mdf["benchmark"])).transform("max")
    )
    return mdf[mdf["commit_order"] == newest_for_class]


def fmt_date(date) -> str:
    return date.strftime("%Y-%m-%d %H:%M UTC") if pd.notna(date) else "date unknown"


def older_commit_fill_ins(view: pd.DataFrame) -> list[dict]:
    """What of a ``latest_rows_per_class`` view comes from commits older than its newest one:
    one dict per such commit, newest first, with commit, commit_short, commit_date, n_ok,
    n_rows and labels: the presets it fills in ('TTT'), or 'family.preset' where other
    families of that preset come from another commit. Empty when all is from the newest."""
    if view.empty:
        return []
    newest = view["commit_order"].max()
    classes = view.assign(_class=benchmark_class(view["benchmark"]))
    older = classes[classes["commit_order"] < newest]
    if older.empty:
        return []
    per_class = classes.drop_duplicates("_class")
    out = []
    for _, rows in sorted(older.groupby("commit_order"), key=lambda x: -x[0]):
        first = rows.iloc[0]
        filled = per_class[per_class["_class"].isin(set(rows["_class"]))]
        labels = []
        for preset, prow in sorted(filled.groupby("preset"), key=lambda x: preset_sort_key(x[0])):
            of_preset = per_class[per_class["preset"] == preset]
            if preset and len(of_preset) == len(prow):
                labels.append(preset)
                continue
            for r in sorted(prow.itertuples(), key=lambda r: family_sort_key(r.family)):
                labels.append(f"{r.family}.{preset}" if preset and r.family else r._class)
        out.append(
            {
                "commit": first["commit"],
                "commit_short": first["commit_short"],
                "commit_date": first["commit_date"],
                "commit_order": first["commit_order"],
                "n_ok": int(rows["value"].notna().sum()),
                "n_rows": len(rows),
                "labels": labels,
            }
        )
    return out


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


def config_table(latest: pd.DataFrame, peak: float | None) -> pd.DataFrame:
    """Pivot the latest rows (``latest_rows_per_class``) into one row per (family, preset,
    config, bwd_mode) with ms, speedup, win_loss, peak_mib, mem_ratio, tflops, pct_peak,
    parity, and the commit each row was measured at when the input carries commits."""
    have = latest[latest["metric"].isin(list(METRIC_COLUMNS)) & latest["bwd_mode"].notna()]
    if have.empty:
        return pd.DataFrame()
    # A config's ratios only combine rows of one commit: the commit is part of the key (with
    # latest_rows_per_class each class has a single commit anyway).
    group = ["family", "preset", "config"] + (["commit"] if "commit" in have else [])
    idx = [*group, "bwd_mode"]
    # Only (config, mode) pairs that exist: a pivot_table(dropna=False) would cross them all.
    wide = have.drop_duplicates(idx + ["metric"]).set_index(idx + ["metric"])["value"]
    wide = wide.unstack("metric").reindex(columns=list(METRIC_COLUMNS)).reset_index()
    wide.columns.name = None
    math_rows = wide[wide["bwd_mode"] == BASELINE_MODE].set_index(group)
    key = pd.MultiIndex.from_frame(wide[group])
    math_ms = math_rows["ms"].reindex(key).to_numpy()
    math_mib = math_rows["peak_mib"].reindex(key).to_numpy()
    wide["speedup"] = math_ms / wide["ms"].to_numpy()
    flash_rows = wide[wide["bwd_mode"] == "flash"].set_index(group)
    wide["vs_flash"] = flash_rows["ms"].reindex(key).to_numpy() / wide["ms"].to_numpy()
    wide["mem_ratio"] = wide["peak_mib"].to_numpy() / math_mib
    wide["win_loss"] = [
        "--" if m == BASELINE_MODE or not math.isfinite(s) else ("win" if s > 1 else "loss")
        for m, s in zip(wide["bwd_mode"], wide["speedup"].fillna(math.nan))
    ]
    wide["pct_peak"] = 100.0 * wide["tflops"] / peak if peak else math.nan
    # Shape columns for ordering and headline matching.
    shapes = have.drop_duplicates("config").set_index("config")
    for col in ("B", "H", "T", "D", "dtype", "mask", "Tq", "Tk"):
        if col in shapes:
            wide[col] = wide["config"].map(shapes[col])
    if "commit" in have:
        commits = have.drop_duplicates("commit").set_index("commit")
        for col in ("commit_short", "commit_date", "commit_order"):
            if col in commits:
                wide[col] = wide["commit"].map(commits[col])
    wide["_fam"] = wide["family"].map(family_sort_key)
    wide["_mode"] = wide["bwd_mode"].map(mode_sort_key)
    wide["_preset"] = wide["preset"].map(preset_sort_key)
    shape_order = [c for c in ("B", "H", "Tq", "Tk", "T", "D", "dtype", "mask") if c in wide]
    order = ["_fam", "_preset", *shape_order, "config", "_mode"]
    wide = wide.sort_values(order, na_position="last")
    return wide.drop(columns=["_fam", "_mode", "_preset"]).reset_index(drop=True)


def _config_block(rows: pd.DataFrame, peak: float | None) -> list[str]:
    header = (
        f"  {'mode':<10} {'ms':>10} {'speedup':>8} {'win/loss':>8} {'peak MiB':>10} "
        f"{'vs math':>8} {'TFLOP/s':>8} {'% peak':>7} {'parity':>7} {'vs flash':>8} "
        f"{'host ms':>8}"
    )
    lines = [header]
    for _, r in rows.iterrows():
        lines.append(
            f"  {r['bwd_mode']:<10} {_fmt_ms(r['ms']):>10} {_fmt(r['speedup'], '.2f') + 'x':>8} "
            f"{r['win_loss']:>8} {_fmt(r['peak_mib'], '.0f'):>10} "
            f"{_fmt(r['mem_ratio'], '.2f') + 'x':>8} {_fmt_tflops(r['tflops']):>8} "
            f"{_fmt(r['pct_peak'], '.1f') + '%' if peak and pd.notna(r['pct_peak']) else 'n/a':>7} "
            f"{_fmt(r['parity'], '.2f'):>7} {_fmt(r['vs_flash'], '.2f') + 'x':>8} "
            f"{_fmt_ms(r['host_ms']):>8}"
        )
    return [line.replace("n/ax", " n/a") for line in lines]


def headline_rows(table: pd.DataFrame, which: str) -> pd.DataFrame:
    preset_name, shape_test = HEADLINE_PRESETS[which]
    by_preset = table[table["preset"].str.lower() == preset_name]
    if not by_preset.empty:
        return by_preset
    if table.empty:
        return table
    mask = table.apply(lambda r: bool(shape_test(r.to_dict())), axis=1)
    return table[mask]


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
                    cell = f"{_fmt(r['speedup'], '.2f')}x {r['win_loss']}"
                    if pd.notna(r["mem_ratio"]):
                        cell += f" {r['mem_ratio']:.2f}x mem"
                    cells.append(f"{cell:>20}")
                math_ms = _fmt_ms(base["ms"]) if base is not None else "n/a"
                math_mib = _fmt(base["peak_mib"], ".0f") if base is not None else "n/a"
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
    for (family, preset, config), rows in table.groupby(["family", "preset", "config"], sort=False):
        by_mode = rows.set_index("bwd_mode")
        if FUSED_MODE not in by_mode.index or not any(m in by_mode.index for m in YARDSTICK_MODES):
            continue
        fused = by_mode.loc[FUSED_MODE]
        cells = []
        for mode in YARDSTICK_MODES:
            ms = by_mode.loc[mode, "ms"] if mode in by_mode.index else math.nan
            cells += [_fmt_ms(ms), _fmt(ms / fused["ms"], ".2f")]
        flash_mib = by_mode.loc["flash", "peak_mib"] if "flash" in by_mode.index else math.nan
        mib = _fmt(fused["peak_mib"] / flash_mib, ".2f")
        host = _fmt(fused.get("host_ms", math.nan) / fused["ms"], ".2f")
        lines.append(
            f"  {family:<9} {preset:<6} {config:<{width}} {_fmt_ms(fused['ms']):>9} "
            f"{cells[0]:>9} {cells[1]:>6} {cells[2]:>9} {cells[3]:>6} {mib:>6} {host:>5}"
            + _commit_tag(rows, newest, with_date=False)
        )
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
    peak = metrics.peak_tflops(machine)
    table = config_table(latest, peak) if "bwd_mode" in latest else pd.DataFrame()
    n_ok = int(at_newest["value"].notna().sum())
    lines = [
        f"machine {machine}   commit {first['commit_short']}   {fmt_date(first['commit_date'])}"
        f"   {n_ok} of {len(at_newest)} measurements present",
        f"subject: {first['subject']}" if first.get("subject") else "",
        _fill_in_line(fills) if fills else None,
        (
            f"% peak = TFLOP/s / {peak:.0f} (measured bf16 dense matmul ceiling on the lent "
            "H100, shared/anchors/README.md)"
            if peak
            else "% peak: no measured peak for this machine"
        ),
        "n/a = not run here (mode not applicable, out of memory) or failed its parity check",
        "",
    ]
    lines += headline_block(table, newest)
    lines += fused_vs_sdpa_block(table, newest)
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
                    f"{_fmt(r['value_old'], '.4g')} -> {_fmt(r['value_new'], '.4g')} {r['unit']} "
                    f"({_fmt(r['change_pct'], '+.1f')}%, threshold {r['threshold_pct']:.1f}%)"
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
                f"  {r['benchmark']} {r['params']}: {_fmt(r['value'], '.4g')} {r['unit']}{tag}"
            )
    else:
        for (family, preset, config), rows in table.groupby(
            ["family", "preset", "config"], sort=False
        ):
            lines.append(f"== {family} | {preset} | {config}{_commit_tag(rows, newest)}")
            lines += _config_block(rows, peak)
            lines.append("")
    return "\n".join(line for line in lines if line is not None).rstrip() + "\n"
