"""Roofline per machine: arithmetic intensity vs achieved TFLOP/s, under the card's own roofs.

``plots/<machine>/roofline.png`` and ``.svg`` (``python -m reports`` / ``make report``): one
panel per path (forward, backward, grad-grad), one point per (config, mode) of the latest
view (tables.latest_rows_per_class):

- x: arithmetic intensity, FLOPs per byte of HBM traffic, both from harness/flops.py (the
  FLOP model and, beside it, the byte model: compulsory traffic, so x is an upper bound);
- y: achieved TFLOP/s, the FLOP model over the eager ms (filled markers) and over the
  CUDA-graph replay (hollow markers, the kernels alone) where there is one;
- roofs: the card's own measured bf16 matmul TFLOP/s (horizontal) and HBM copy GB/s
  (slanted: TFLOP/s = intensity x GB/s / 1000), both from its newest bench_peak.Peak run
  (reports/peaks.py); a machine without one draws the legacy H100 matmul line, labelled so,
  and no memory roof. Without any roof (no Peak result, no legacy number) no figure.

Separate from plots.py (the dashboard's figures); cli.build adds these files to each
machine's plot list, so the HTML shows them with the rest.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402

from harness import flops  # noqa: E402  (standard library only)
from harness.grid import PATHS  # noqa: E402
from reports import peaks, tables  # noqa: E402
from reports.paths import inside  # noqa: E402
from reports.plots import FORMATS, MODE_COLORS  # noqa: E402  (and its rcParams)

NAME = "roofline"
PATH_TITLES = {"forward": "forward", "backward": "forward + backward", "gradgrad": "grad-grad"}
_PLAIN = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")


def roofline_points(df: pd.DataFrame, machine: str) -> pd.DataFrame:
    """One row per (family, preset, config, bwd_mode) of the latest view with an achieved
    rate: family, preset, config, bwd_mode, intensity (FLOP/byte), tflops (eager) and
    graph_tflops (NaN without a graph replay)."""
    cols = ["family", "preset", "config", "bwd_mode", "intensity", "tflops", "graph_tflops"]
    latest = tables.latest_rows_per_class(df, machine)
    need = {"bwd_mode", "B", "H", "Tq", "Tk", "D", "mask", "dtype"}
    if latest.empty or not need <= set(latest.columns):
        return pd.DataFrame(columns=cols)
    rates = latest[latest["metric"].isin(["tflops", "graph_tflops"]) & latest["bwd_mode"].notna()]
    rates = rates[rates["family"].isin(PATHS)]
    if rates.empty:
        return pd.DataFrame(columns=cols)
    keys = ["family", "preset", "config", "bwd_mode"]
    wide = (
        rates.drop_duplicates([*keys, "metric"])
        .set_index([*keys, "metric"])["value"]
        .unstack("metric")
        .reindex(columns=["tflops", "graph_tflops"])
        .reset_index()
    )
    wide.columns.name = None
    shapes = rates.drop_duplicates(keys).set_index(keys)
    idx = pd.MultiIndex.from_frame(wide[keys])
    shape = {c: shapes[c].reindex(idx).to_numpy() for c in need - {"bwd_mode"}}
    wide["intensity"] = [
        _intensity(f, *(shape[c][i] for c in ("B", "H", "Tq", "Tk", "D", "mask", "dtype")))
        for i, f in enumerate(wide["family"])
    ]
    wide = wide[np.isfinite(wide["intensity"]) & (wide[["tflops", "graph_tflops"]] > 0).any(axis=1)]
    return wide[cols].reset_index(drop=True)


def _intensity(family, B, H, Tq, Tk, D, mask, dtype) -> float:
    try:
        ints = [int(x) for x in (B, H, Tq, Tk, D)]
        return flops.intensity(family, *ints, str(mask), str(dtype))
    except (TypeError, ValueError):
        return math.nan


def roofline_figure(points: pd.DataFrame, card: peaks.CardPeak, machine: str):
    """The figure: one log-log panel per path, the roofs, the points coloured by mode."""
    families = [f for f in PATHS if (points["family"] == f).any()] or list(PATHS)
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 4.4), squeeze=False)
    ai = points["intensity"].to_numpy(float)
    ai = ai[np.isfinite(ai) & (ai > 0)]
    if card.tflops and card.gbps:  # keep the ridge point in view
        ai = np.append(ai, card.tflops * 1e3 / card.gbps)
    lo, hi = (ai.min() / 4, ai.max() * 4) if ai.size else (1.0, 1e4)
    rates = points[["tflops", "graph_tflops"]].to_numpy(float)
    rates = rates[np.isfinite(rates) & (rates > 0)]
    top = max([*rates, card.tflops or 0.0]) * 2.5
    bottom = (rates.min() if rates.size else top / 1e3) / 3
    x = np.geomspace(lo, hi, 200)
    for ax, family in zip(axes[0], families):
        roof = np.full_like(x, np.inf)
        if card.tflops:
            style = "--" if card.legacy else "-"
            what = "legacy H100 matmul" if card.legacy else "bf16 matmul"
            ax.plot(x, np.full_like(x, card.tflops), style, color="black", lw=1.2,
                    label=f"{what} {card.tflops:.0f} TFLOP/s")  # fmt: skip
            roof = np.minimum(roof, card.tflops)
        if card.gbps:
            mem = x * card.gbps / 1e3
            ax.plot(x, mem, ":", color="black", lw=1.2, label=f"HBM copy {card.gbps:.0f} GB/s")
            roof = np.minimum(roof, mem)
        if np.isfinite(roof).all():
            ax.fill_between(x, roof, bottom, color="0.93", zorder=0)
        mine = points[points["family"] == family]
        for mode, rows in sorted(
            mine.groupby("bwd_mode"), key=lambda m: tables.mode_sort_key(m[0])
        ):
            color = MODE_COLORS.get(mode, "#7f7f7f")
            eager = rows[rows["tflops"] > 0]
            ax.scatter(eager["intensity"], eager["tflops"], color=color, s=28, label=mode, zorder=3)
            graph = rows[rows["graph_tflops"] > 0]
            if not graph.empty:
                ax.scatter(graph["intensity"], graph["graph_tflops"], facecolors="none",
                           edgecolors=color, s=44, zorder=3)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(bottom, top)
        for axis in (
            ax.xaxis,
            ax.yaxis,
        ):  # plain numbers: mathtext is off (reports/plots.py rcParams)
            axis.set_major_formatter(_PLAIN)
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("arithmetic intensity (FLOP / byte, harness/flops.py)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.set_title(PATH_TITLES.get(family, family))
        ax.grid(True, which="major", alpha=0.3)
    seen: dict = {}  # one legend for all panels: label -> handle
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=min(len(seen), 6),
               fontsize=8, frameon=False)  # fmt: skip
    note = "filled: eager ms; hollow: CUDA-graph replay. Roofs: " + card.source
    if not card.gbps:
        note += "; no measured HBM bandwidth: no memory roof"
    fig.suptitle(f"{machine}: roofline (latest results)\n{note}", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.93))
    return fig


def machine_roofline(df: pd.DataFrame, machine: str, out_dir: Path | str) -> list[Path]:
    """Write ``roofline.png`` and ``.svg`` for ``machine`` into ``out_dir``; the files written
    (none without a roof or without points)."""
    card = peaks.card_peak(df, machine)
    if card is None or not (card.tflops or card.gbps):
        return []
    points = roofline_points(df, machine)
    if points.empty:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = roofline_figure(points, card, machine)
    written = []
    try:
        for ext in FORMATS:
            path = inside(out_dir, out_dir / f"{NAME}.{ext}")
            meta = {"Date": None} if ext == "svg" else {"Software": None}  # reproducible
            fig.savefig(path, dpi=100, metadata=meta)
            written.append(path)
    finally:
        plt.close(fig)
    return written
