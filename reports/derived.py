"""Rates derived from the stored times: TFLOP/s and GB/s, never stored as asv tracks.

asv reads every track as lower-is-better, so a stored TFLOP/s gain shows as a regression in
``asv compare`` and ``asv publish`` (issue 15 item 3). The suite stores times only (ms,
graph ms); every rate in the reports is one of them turned around with the one model of
the work, harness/flops.py (standard library only: no torch here):

- attention rows (families forward, backward, gradgrad): ``tflops`` from ``track_ms`` and
  ``graph_tflops`` from ``track_graph_ms``: ``flops.flops(path, B, H, Tq, Tk, D, mask)``
  over the time, in TFLOP/s;
- the card's ceilings (``bench_peak.Peak``, column ``op``): ``tflops`` of the matmul ops
  and ``gbps`` (GB/s) of the copy, from ``flops.PEAK_OPS``.

A derived row keeps its time row's machine, commit, params, invalid reason and sample count;
its name is the time's with the method renamed (``bench_gradgrad.TTT.track_tflops``), its
noise interval and CIs are the time's turned around (a rate's low end is the time's high
end). Rates stored by older suites (``track_tflops`` rows) are dropped for the derived ones,
so every TFLOP/s of every commit comes from the same model.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import flops
from harness.grid import PATHS

TFLOPS, GRAPH_TFLOPS, GBPS = "tflops", "graph_tflops", "gbps"
DERIVED_METRICS = (TFLOPS, GRAPH_TFLOPS, GBPS)
# time metric -> the rate derived from it on attention rows
RATE_OF_TIME = {"ms": TFLOPS, "graph_ms": GRAPH_TFLOPS}
RATE_UNIT = {TFLOPS: "TFLOP/s", GRAPH_TFLOPS: "TFLOP/s", GBPS: "GB/s"}
PEAK_FAMILY = "peak"
# columns whose values swap ends when a time becomes a rate
_SWAP = (("noise_lo", "noise_hi"), ("ci_99_a", "ci_99_b"), ("q_25", "q_75"))
_ATTN_KEYS = ["family", "B", "H", "Tq", "Tk", "D", "mask"]


def attention_flops(rows: pd.DataFrame) -> np.ndarray:
    """The FLOP model's count for each row (NaN where the row is not an attention problem)."""
    out = np.full(len(rows), math.nan)
    if rows.empty or not set(_ATTN_KEYS) <= set(rows.columns):
        return out
    keys = rows[_ATTN_KEYS].astype(object)
    group = keys.groupby(_ATTN_KEYS, dropna=False, sort=False).ngroup().to_numpy()
    firsts = pd.Series(np.arange(len(rows))).groupby(group).first()
    per_group = np.full(group.max() + 1 if len(group) else 0, math.nan)
    for g, i in firsts.items():
        per_group[g] = _one_flops(*keys.iloc[i].tolist())
    valid = group >= 0
    out[valid] = per_group[group[valid]]
    return out


def _one_flops(family, B, H, Tq, Tk, D, mask) -> float:
    if family not in PATHS:
        return math.nan
    try:
        ints = [int(x) for x in (B, H, Tq, Tk, D)]
        return flops.flops(family, *ints, str(mask))
    except (TypeError, ValueError):  # NA, or a parameter the model cannot read
        return math.nan


def peak_work(op: str) -> tuple[str, float] | None:
    """(derived metric, FLOPs or bytes) of one Peak op, None for an op the model lacks."""
    model = flops.peak_op(str(op))
    if model is None:
        return None
    return (TFLOPS, model.flops) if model.kind == "matmul" else (GBPS, model.bytes)


def _rate_rows(src: pd.DataFrame, work: np.ndarray, metric: pd.Series | str, scale: float):
    """``src`` time rows turned into rate rows: value = work / ms / scale."""
    keep = np.isfinite(work)
    src, work = src[keep], work[keep]
    if src.empty:
        return src
    out = src.copy()
    metric = metric[keep] if isinstance(metric, pd.Series) else pd.Series(metric, index=src.index)
    old_method = "track_" + src["metric"].astype(str)
    out["metric"] = metric.to_numpy()
    out["benchmark"] = [
        b[: len(b) - len(m)] + "track_" + new
        for b, m, new in zip(src["benchmark"].astype(str), old_method, out["metric"])
    ]
    out["unit"] = [RATE_UNIT[m] for m in out["metric"]]
    out["direction"] = "higher"

    def turn(col):
        with np.errstate(divide="ignore", invalid="ignore"):
            v = work / src[col].to_numpy(float) / scale
        return np.where(np.isfinite(v), v, math.nan)

    out["value"] = turn("value")
    for lo, hi in _SWAP:
        if lo in src.columns and hi in src.columns:
            out[lo], out[hi] = turn(hi), turn(lo)
    if "samples" in out.columns:
        out["samples"] = None
    return out


def add_rates(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (reports.load's table) without stored rates, plus the derived ones."""
    if df.empty or "metric" not in df.columns:
        return df
    base = df[~df["metric"].isin(DERIVED_METRICS)]
    parts = [base]
    family = base["family"].astype(str)
    times = base[base["metric"].isin(list(RATE_OF_TIME)) & family.isin(PATHS)]
    if not times.empty:
        work = attention_flops(times)
        metric = times["metric"].map(RATE_OF_TIME)
        parts.append(_rate_rows(times, work, metric, 1e9))
    if "op" in base.columns:
        peak = base[(family == PEAK_FAMILY) & (base["metric"] == "ms")]
        if not peak.empty:
            found = [peak_work(op) for op in peak["op"]]
            metric = pd.Series([f[0] if f else TFLOPS for f in found], index=peak.index)
            work = np.array([f[1] if f else math.nan for f in found], dtype=float)
            is_gbps = (metric == GBPS).to_numpy()
            # TFLOP/s = FLOP / ms / 1e9; GB/s = bytes / ms / 1e6
            parts.append(_rate_rows(peak[~is_gbps], work[~is_gbps], metric[~is_gbps], 1e9))
            parts.append(_rate_rows(peak[is_gbps], work[is_gbps], metric[is_gbps], 1e6))
    parts = [p for p in parts if not p.empty]
    if len(parts) == 1:
        return parts[0]
    out = pd.concat(parts, ignore_index=True)
    keys = [k for k in ("machine", "commit_order", "benchmark", "params") if k in out.columns]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)
