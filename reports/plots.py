"""Plots (matplotlib Agg, PNG + SVG), read only from the tidy table.

Per machine, five figures, whatever the size of the data (the cap keeps `make report` fast:
~0.5 s a figure; a 200-commit x 500-series history still draws 5 figures, not 500):

- ``trend_<family>``: per-commit time and peak memory (a pair of rows per line of panels),
  one panel per config: one config per preset first (the seed and TTT headline shapes, then
  the preset's most measured config), at most MAX_TREND_CONFIGS; one line per bwd_mode, the
  median with a band: the stored noise (asv CI / q25-q75) where the result has one, else the
  gate's A/A default noise of the row's regime (metrics.aa_noise), lighter. A machine with
  fewer than MIN_TREND_COMMITS commits gets no trend (a trend of one commit is a dot).
- ``speed_memory``: latest results, ms vs peak MiB per mode, one panel per (family, config),
  at most MAX_SPEED_MEMORY_PANELS; modes told apart by marker and a figure legend (points
  that coincide stay visible as concentric markers), no text on the points.
- ``scaling_T``: latest results, ms vs Tk per mode for the shape family with the most T values.

"Latest" is tables.latest_rows_per_class: per benchmark class, the newest commit that measured
it; a panel from a commit older than the newest names that commit in its title.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reports import metrics, tables  # noqa: E402
from reports.paths import inside, slug  # noqa: E402

MAX_TREND_CONFIGS = 6  # one per preset (5 presets) and room for one more
TREND_COLUMNS = 3
MIN_TREND_COMMITS = 2
MAX_SPEED_MEMORY_PANELS = 6
MAX_TICK_LABELS = 12
FORMATS = ("png", "svg")
MODE_COLORS = {
    "math": "#444444",
    "sdpa": "#1f77b4",
    "flash": "#2ca02c",
    "compiled": "#17becf",
    "recompute": "#ff7f0e",
    "save_p": "#9467bd",
    "dv_only": "#8c564b",
    "fused": "#d62728",
}
# speed_memory: a marker per mode, drawn largest first so coinciding points stay visible.
MODE_MARKERS = {
    "math": "o",
    "sdpa": "s",
    "flash": "D",
    "compiled": "v",
    "recompute": "^",
    "save_p": "P",
    "dv_only": "X",
    "fused": "*",
}
# Narrow log axes (a memory that does not move) are padded to at least this ratio top/bottom.
MIN_LOG_SPAN = 1.25
# Reproducible SVGs (committed data): fixed ids, no timestamp.
matplotlib.rcParams["svg.hashsalt"] = "reports"
matplotlib.rcParams["figure.max_open_warning"] = 0
# Titles and labels carry machine names and parameter values from the result files: text as
# written, never mathtext ('$\\foo{$' would raise ParseFatalException at draw time).
matplotlib.rcParams["text.parse_math"] = False


def _color(mode: str) -> str:
    if mode in MODE_COLORS:
        return MODE_COLORS[mode]
    palette = plt.get_cmap("tab10").colors
    return matplotlib.colors.to_hex(palette[hash(mode) % len(palette)])


def _wrap(title: str, width: int = 44) -> str:
    return "\n".join(textwrap.wrap(title, width)) or title


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = inside(out_dir, out_dir / f"{slug(stem)}.{fmt}")
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(path, dpi=100, metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def pick_configs(df: pd.DataFrame, limit: int) -> list[str]:
    """Headline configs (seed, then TTT) first, then those with the most measurements."""
    if df.empty:
        return []
    shapes = df.drop_duplicates("config")
    chosen: list[str] = []
    for which in tables.HEADLINE_PRESETS:
        preset = tables.HEADLINE_PRESETS[which][0]
        hits = shapes[shapes["preset"].str.lower() == preset]["config"].tolist()
        chosen += [c for c in hits[:1] if c not in chosen]
    counts = df.groupby("config")["value"].count().sort_values(ascending=False, kind="stable")
    chosen += [c for c in counts.index if c not in chosen]
    return chosen[:limit]


def pick_trend_configs(df: pd.DataFrame, limit: int) -> list[str]:
    """One config per preset, in preset order (Seed and TTT: their headline shape, else the
    preset's most measured config), then the most measured others, at most ``limit``."""
    if df.empty:
        return []
    counts = df.groupby("config")["value"].count()
    headline = pick_configs(df, len(tables.HEADLINE_PRESETS))
    chosen: list[str] = []
    for preset in sorted(df["preset"].dropna().unique(), key=tables.preset_sort_key):
        of_preset = df[df["preset"] == preset]["config"].unique().tolist()
        hits = [c for c in headline if c in of_preset]
        if not hits:
            hits = sorted(of_preset, key=lambda c: -counts.get(c, 0))
        chosen += [c for c in hits[:1] if c not in chosen]
    chosen += [c for c in pick_configs(df, len(counts)) if c not in chosen]
    return chosen[:limit]


def _fmt_tick(v: float, _pos=None) -> str:
    """3 significant digits, thousands as k: '2k', not '2000' (nor '2e+03') next to '1k'."""
    if v >= 1000:
        return f"{v / 1000:.3g}k"
    return f"{v:.3g}"


def _log_axis(ax, which: str = "y", base: float = 10) -> None:
    """Log scale with plain number labels: mathtext labels (10^x) cost ~3 s per report.
    Ticks are set by ``_log_ticks`` once the data are drawn (they depend on the span)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log", base=base)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_fmt_tick))
    axis.set_minor_locator(matplotlib.ticker.NullLocator())  # minor ticks: ~1/3 of draw time
    axis._reports_log_base = base


def _log_ticks(ax, which: str = "y", max_ticks: int = 5) -> None:
    """After drawing: pad a narrow log axis to MIN_LOG_SPAN and pick ticks that fit: 1-2-5
    within two decades, decades only beyond (no '1000' touching '2000'), a few plain ticks
    below one decade (never six labels of '32.5')."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    base = getattr(axis, "_reports_log_base", 10)
    get, set_ = (ax.get_ylim, ax.set_ylim) if which == "y" else (ax.get_xlim, ax.set_xlim)
    lo, hi = get()
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi <= 0:
        return
    if hi / lo < MIN_LOG_SPAN:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(MIN_LOG_SPAN), mid * math.sqrt(MIN_LOG_SPAN)
        set_(lo, hi)
    decades = math.log10(hi / lo)
    if base != 10:
        locator = matplotlib.ticker.LogLocator(base, numticks=max_ticks + 1)
    elif decades > 2:
        locator = matplotlib.ticker.LogLocator(10, subs=(1.0,), numticks=max_ticks + 1)
    elif decades > 0.9:
        locator = matplotlib.ticker.LogLocator(
            10, subs=(1.0, 2.0, 5.0) if decades < 1.3 else (1.0, 3.0)
        )
    else:
        locator = matplotlib.ticker.MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10])
    axis.set_major_locator(locator)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_fmt_tick))
    axis.set_minor_locator(matplotlib.ticker.NullLocator())


def _commit_axis(ax, commits: pd.DataFrame) -> None:
    """x = commit_order; label a thinned set of ticks with short hashes."""
    n = len(commits)
    step = max(1, math.ceil(n / MAX_TICK_LABELS))
    shown = commits.iloc[::step]
    ax.set_xticks(shown["commit_order"].to_numpy())
    ax.set_xticklabels(shown["commit_short"].tolist(), rotation=60, fontsize=7, ha="right")


def _band(g: pd.DataFrame, unit, mode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, stored) per point: the stored noise interval where the row has one, else the
    gate's A/A default noise of the row's unit and regime around the value (NaN when none)."""
    y = g["value"].to_numpy(float)
    lo, hi = g["noise_lo"].to_numpy(float), g["noise_hi"].to_numpy(float)
    stored = np.isfinite(lo) & np.isfinite(hi)
    machine = g["machine"].iloc[0] if "machine" in g.columns and len(g) else None
    rel = np.array(
        [
            metrics.aa_noise(
                unit, metrics.regime(unit, v if unit == "ms" else np.inf, mode), machine
            )
            or np.nan
            for v in y
        ],
        dtype=float,
    )
    lo = np.where(stored, lo, y * (1 - np.minimum(rel, 0.9)))
    hi = np.where(stored, hi, y * (1 + rel))
    return lo, hi, stored


HEADER_IN = 1.0  # inches above the panels: the title, and the legend on a line of its own


def _header(fig, title: str, fontsize: float = 10) -> float:
    """The figure title top left and, below it, one legend of every mode drawn (never over
    a panel nor over the title); returns the ``top`` for subplots_adjust."""
    height = fig.get_figheight()
    fig.suptitle(title, x=0.01, y=1 - 0.08 / height, ha="left", va="top", fontsize=fontsize)
    handles, labels = [], []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(0.0, 1 - 0.3 / height),
            fontsize=8,
            ncol=len(labels),
            frameon=False,
        )
    return 1 - HEADER_IN / height


def trend_figure(mdf: pd.DataFrame, family: str, out_dir: Path) -> list[Path]:
    fdf = mdf[(mdf["family"] == family) & mdf["metric"].isin(["ms", "peak_mib"])]
    if fdf.empty or "bwd_mode" not in fdf or fdf["commit"].nunique() < MIN_TREND_COMMITS:
        return []
    configs = pick_trend_configs(fdf, MAX_TREND_CONFIGS)
    rows = [m for m in ("ms", "peak_mib") if (fdf["metric"] == m).any()]
    commits = mdf.drop_duplicates("commit").sort_values("commit_order")[
        ["commit_order", "commit_short"]
    ]
    ncols = min(TREND_COLUMNS, len(configs))
    blocks = math.ceil(len(configs) / ncols)
    fig, axes = plt.subplots(
        blocks * len(rows),
        ncols,
        figsize=(4.2 * ncols, 2.6 * blocks * len(rows) + 1.0),
        squeeze=False,
        sharex=True,
    )
    any_stored = any_aa = False
    for j, config in enumerate(configs):
        block, col = divmod(j, ncols)
        preset = fdf[fdf["config"] == config]["preset"].iloc[0]
        for i, metric in enumerate(rows):
            ax = axes[block * len(rows) + i][col]
            cdf = fdf[(fdf["metric"] == metric) & (fdf["config"] == config)]
            unit = fdf[fdf["metric"] == metric]["unit"].iloc[0]
            for mode, g in sorted(
                cdf.groupby("bwd_mode"), key=lambda x: tables.mode_sort_key(x[0])
            ):
                g = g.sort_values("commit_order")
                x = g["commit_order"].to_numpy()
                y = g["value"].to_numpy(float)
                if not np.isfinite(y).any():
                    continue
                ax.plot(x, y, marker=".", lw=1.2, color=_color(mode), label=mode)
                lo, hi, stored = _band(g, unit, mode)
                ok = np.isfinite(lo) & np.isfinite(hi)
                for part, alpha in ((ok & stored, 0.3), (ok & ~stored, 0.1)):
                    if part.sum() > 1:
                        ax.fill_between(
                            x, lo, hi, where=part, color=_color(mode), alpha=alpha, lw=0
                        )
                    elif part.any():  # a single point: its interval as an error bar
                        ax.vlines(x[part], lo[part], hi[part], color=_color(mode), alpha=0.5)
                any_stored |= bool((ok & stored).any())
                any_aa |= bool((ok & ~stored).any())
            _log_axis(ax)
            _log_ticks(ax)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(_wrap(f"{preset}: {config}", 60), fontsize=8)
            if col == 0:
                ax.set_ylabel(metrics.unit_rule(unit).label, fontsize=8)
    for j in range(len(configs), blocks * ncols):  # the unused cells of the last block
        for i in range(len(rows)):
            axes[(blocks - 1) * len(rows) + i][j - (blocks - 1) * ncols].axis("off")
    for j in range(ncols):  # commit labels under the lowest panel of each column only
        lowest = (blocks - 1) if (blocks - 1) * ncols + j < len(configs) else blocks - 2
        for block in range(blocks):
            ax = axes[(block + 1) * len(rows) - 1][j]
            if block == lowest:
                _commit_axis(ax, commits)
                ax.tick_params(labelbottom=True)
            else:
                ax.tick_params(labelbottom=False)
    band = []
    if any_stored:
        band.append("dark band = stored noise (asv CI)")
    if any_aa:
        band.append("light band = the gate's A/A noise (none stored)")
    top = _header(
        fig,
        f"{mdf['machine'].iloc[0]}: {family} per commit (line = median"
        + "".join(f"; {b}" for b in band)
        + ")",
    )
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.07,
        right=0.98,
        top=top,
        bottom=0.75 / height,
        wspace=0.25,
        hspace=0.3,
    )
    return _save(fig, out_dir, f"trend_{family}")


def _newest_short(latest: pd.DataFrame) -> str:
    return latest.loc[latest["commit_order"].idxmax(), "commit_short"]


def _older_note(rows: pd.DataFrame, latest: pd.DataFrame) -> str:
    """' @ abc12345' when ``rows`` were measured at a commit older than the view's newest."""
    older = rows[rows["commit_order"] < latest["commit_order"].max()]
    return f" @ {', '.join(sorted(set(older['commit_short'])))}" if not older.empty else ""


def _suptitle_commit(latest: pd.DataFrame) -> str:
    older = latest["commit_order"] < latest["commit_order"].max()
    return _newest_short(latest) + (" (+ older commits where named)" if older.any() else "")


def speed_memory_figure(latest: pd.DataFrame, out_dir: Path) -> list[Path]:
    have = latest[latest["metric"].isin(["ms", "peak_mib"]) & latest["value"].notna()]
    if have.empty or "bwd_mode" not in have:
        return []
    families = sorted(have["family"].unique(), key=tables.family_sort_key)
    # One preset per (family, config) panel (the first in preset order), so that a panel
    # never mixes two classes, which may come from different commits.
    preset_of: dict[tuple[str, str], str] = {}
    for family, config, preset in sorted(
        set(zip(have["family"], have["config"], have["preset"])),
        key=lambda k: tables.preset_sort_key(k[2]),
    ):
        preset_of.setdefault((family, config), preset)
    panels = [
        (family, config)
        for config in pick_configs(have, MAX_SPEED_MEMORY_PANELS)
        for family in families
        if (family, config) in preset_of
    ][:MAX_SPEED_MEMORY_PANELS]
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (family, config) in zip(axes.flat, panels):
        sel = have[
            (have["family"] == family)
            & (have["config"] == config)
            & (have["preset"] == preset_of[(family, config)])
        ]
        wide = sel.pivot_table(index="bwd_mode", columns="metric", values="value", aggfunc="first")
        modes = sorted(wide.index, key=tables.mode_sort_key)
        for k, mode in enumerate(modes):
            if {"ms", "peak_mib"} <= set(wide.columns):
                x, y = wide.loc[mode, "peak_mib"], wide.loc[mode, "ms"]
                if np.isfinite(x) and np.isfinite(y):
                    # Earlier modes larger and below: coinciding points show as rings.
                    ax.scatter(
                        [x],
                        [y],
                        s=150 - 90 * k / max(len(modes) - 1, 1),
                        marker=MODE_MARKERS.get(mode, "o"),
                        facecolor=_color(mode),
                        edgecolor="white",
                        linewidth=0.6,
                        label=mode,
                        zorder=3 + k,
                    )
        _log_axis(ax, "x")
        _log_axis(ax)
        ax.margins(0.15)
        _log_ticks(ax, "x", max_ticks=4)
        _log_ticks(ax)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("peak memory (MiB)")
        ax.set_ylabel("time (ms)")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(_wrap(f"{family}: {config}{_older_note(sel, latest)}"), fontsize=8)
    first = latest.iloc[0]
    top = _header(
        fig,
        f"{first['machine']} @ {_suptitle_commit(latest)}: speed vs memory (lower-left is better)",
    )
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=top,
        bottom=0.5 / fig.get_figheight(),
        wspace=0.3,
        hspace=0.55,
    )
    return _save(fig, out_dir, "speed_memory")


def scaling_figure(latest: pd.DataFrame, out_dir: Path) -> list[Path]:
    ms = latest[(latest["metric"] == "ms") & latest["value"].notna()]
    if ms.empty or "Tk" not in ms or "bwd_mode" not in ms or ms["Tk"].isna().all():
        return []
    # Shapes equal except for T: the group with the most distinct Tk values.
    group_cols = [c for c in ("preset", "B", "H", "D", "dtype", "mask") if c in ms]
    keyed = ms.assign(_group=ms[group_cols].apply(lambda c: c.map(str)).agg(" ".join, axis=1))
    spread = keyed.groupby("_group")["Tk"].nunique()
    best = spread.idxmax()
    if spread.max() < 2:
        return []
    sel = keyed[keyed["_group"] == best]
    families = sorted(sel["family"].unique(), key=tables.family_sort_key)
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4.2), squeeze=False)
    for ax, family in zip(axes[0], families):
        fsel = sel[sel["family"] == family]
        for mode, g in sorted(fsel.groupby("bwd_mode"), key=lambda x: tables.mode_sort_key(x[0])):
            g = g.sort_values("Tk")
            ax.plot(
                g["Tk"].astype(float), g["value"], marker="o", ms=3, color=_color(mode), label=mode
            )
        _log_axis(ax, "x", base=2)
        _log_axis(ax)
        _log_ticks(ax, "x")
        _log_ticks(ax)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("T (keys)")
        ax.set_ylabel("time (ms)")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(f"{family}{_older_note(fsel, latest)}", fontsize=9)
    first = latest.iloc[0]
    top = _header(fig, f"{first['machine']} @ {_suptitle_commit(latest)}: scaling in T ({best})", 9)
    fig.subplots_adjust(left=0.08, right=0.98, top=top, bottom=0.6 / 4.2, wspace=0.3)
    return _save(fig, out_dir, "scaling_T")


# Figures are independent: render them in forked workers (2 cores: ~1.8x faster for a
# 200-commit history). REPORTS_PLOT_WORKERS=1 forces one process.
_JOB: dict = {}


def _render(task: tuple) -> list[Path]:
    df, machine, out_dir = _JOB["df"], _JOB["machine"], _JOB["out_dir"]
    kind, arg = task
    mdf = df[df["machine"] == machine]
    if kind == "trend":
        return trend_figure(mdf, arg, out_dir)
    latest = tables.latest_rows_per_class(df, machine)
    if kind == "speed_memory":
        return speed_memory_figure(latest, out_dir)
    return scaling_figure(latest, out_dir)


def machine_plots(df: pd.DataFrame, machine: str, out_dir: Path) -> list[Path]:
    """All figures for one machine into out_dir; returns the written paths (PNG and SVG)."""
    mdf = df[df["machine"] == machine]
    if mdf.empty or "bwd_mode" not in mdf or mdf["bwd_mode"].isna().all():
        return []
    # Plots compare bwd_modes: rows without one (a benchmark benchmarks.json does not know,
    # whose parameters are p0, p1, ...) are in the text and HTML, not here.
    mdf = mdf[mdf["bwd_mode"].notna()]
    tasks = [("trend", f) for f in sorted(mdf["family"].unique(), key=tables.family_sort_key)]
    tasks += [("speed_memory", None), ("scaling", None)]
    _JOB.update(df=mdf, machine=machine, out_dir=out_dir)
    workers = int(os.environ.get("REPORTS_PLOT_WORKERS", min(os.cpu_count() or 1, 4)))
    try:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
                results = pool.map(_render, tasks, chunksize=1)
        else:
            results = [_render(t) for t in tasks]
    finally:
        _JOB.clear()
    written = [p for paths in results for p in paths]
    # A figure not drawn this time (no trend for a one-commit machine) leaves no stale file.
    keep = {p.resolve() for p in written}
    for old in [*out_dir.glob("*.png"), *out_dir.glob("*.svg")] if out_dir.is_dir() else []:
        if old.resolve() not in keep:
            old.unlink()
    return written
