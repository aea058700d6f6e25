"""The tables behind every report: what the latest view holds, and how it is shaped.

text.py (``<machine>_latest.txt``), html.py (the summary of ``index.html``) and plots.py
(``speed_memory``, ``scaling_T``) all render from here, so they cannot disagree:

- the display order of modes, families and presets (``*_sort_key``);
- the latest view (``latest_rows_per_class``): per asv benchmark class, the newest commit
  that has rows for it, so a partial run at the newest commit (``--presets seed,grid``, a
  missing Modal shard) does not hide the other presets; ``older_commit_fill_ins`` names the
  older commits that fill in;
- the per-config table (``config_table``): one row per (family, preset, config, bwd_mode)
  with ms, speedup vs math, win/loss, memory vs math, TFLOP/s and % of peak, parity;
- the headline shapes (``HEADLINE_PRESETS``, ``headline_rows``);
- number formatting shared by the renderers (``fmt``, ``fmt_ms``, ``fmt_tflops``,
  ``fmt_date``).
"""

from __future__ import annotations

import math

import pandas as pd

from reports import metrics
from reports.derived import PEAK_FAMILY  # bench_peak.Peak: the card's ceilings, not a preset

# Display order of bwd_mode values (bench_suite contract); others follow alphabetically.
MODE_ORDER = ["math", "sdpa", "flash", "compiled", "recompute", "save_p", "dv_only", "fused"]
FAMILY_ORDER = ["forward", "backward", "gradgrad"]
# bench_suite's classes (harness.grid.PRESETS), headline first
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
# Configs (family x preset x shape) a machine's text and HTML show in full; the rest are
# counted (data/all_results.csv has them). The bench_suite presets make ~60; a results file
# of 20,000 classes would otherwise take minutes to render.
MAX_CONFIG_BLOCKS = 500


# CPU runs (`make bench` on a machine without CUDA: runner.machine names them cpu-<arch>,
# their rows are the CPU preset) are smoke tests of the harness, not measurements of the
# kernels: the report leaves them out unless asked (--include-cpu, make REPORT_CPU=1).
CPU_MACHINE_PREFIX = "cpu-"
CPU_PRESET = "CPU"


def cpu_machines(df: pd.DataFrame) -> list[str]:
    """Machines whose results are CPU runs: named cpu-<arch>, or (a MACHINE= name) holding
    only rows of the CPU preset."""
    if df.empty:
        return []
    only_cpu = df.groupby("machine")["preset"].agg(lambda p: set(p.dropna()) == {CPU_PRESET})
    return sorted(m for m, cpu in only_cpu.items() if cpu or str(m).startswith(CPU_MACHINE_PREFIX))


def mode_sort_key(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def family_sort_key(family: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def preset_sort_key(preset: str) -> tuple[int, str]:
    return (PRESET_ORDER.index(preset) if preset in PRESET_ORDER else len(PRESET_ORDER), preset)


def fmt(x: float, spec: str = ".3f", missing: str = "n/a") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or pd.isna(x):
        return missing
    return format(x, spec)


def fmt_ms(x: float) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    return format(x, ".4f" if x < 1 else ".3f" if x < 100 else ".1f")


def fmt_tflops(x: float) -> str:
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
    rows of the newest commit that has rows for that class, and only that commit's. The
    card's ceilings (family ``peak``, bench_peak.Peak) are left out: reports/peaks.py reads
    them.

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
    if "family" in mdf.columns:  # the card's ceilings are no benchmark class (reports/peaks.py)
        mdf = mdf[mdf["family"] != PEAK_FAMILY]
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


def headline_rows(table: pd.DataFrame, which: str) -> pd.DataFrame:
    """The rows of the ``which`` headline: its preset class, else the rows of its shape; one
    preset per config (the first in preset order), so that a config's modes are unique even
    when many classes share the shape."""
    preset_name, shape_test = HEADLINE_PRESETS[which]
    rows = table[table["preset"].str.lower() == preset_name]
    if rows.empty and not table.empty:
        shapes = table.drop_duplicates("config")  # the shape columns follow the config
        hits = shapes[shapes.apply(lambda r: bool(shape_test(r.to_dict())), axis=1)]["config"]
        rows = table[table["config"].isin(hits)]
    if rows.empty or rows.drop_duplicates(["config", "preset"])["config"].is_unique:
        return rows
    order = {p: i for i, p in enumerate(sorted(rows["preset"].unique(), key=preset_sort_key))}
    rank = rows["preset"].map(order)
    return rows[rank == rank.groupby(rows["config"]).transform("min")]
