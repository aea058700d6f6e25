"""Interleaved rounds: a gate session's own between-run noise (``make bench-compare ROUNDS=N``).

Why: a gate that measures the base once and the head once compares two runs, and what
moves between two runs of the same kernels (clocks, the host) is the card's A/A noise; the
floor of every step must sit above it (reports/aa_noise.py). On the H200 that is 9% for
graph ms and 17% for GPU-bound eager ms: runs of the same kernels differed by up to 5.75%
(graph ms of Long forward T32768, a warm and a cold run) and 11% (eager ms of the Long
grad-grad T16384, likewise), so a 5% step cannot be told from noise with one run a side.

Measured in rounds (head, base, head, base, ...: runner/compare.py), each side has N runs
from one session, and :func:`combine` makes one row per series of them: the value is the
median over the rounds, the noise interval the range of the rounds' values, and
``round_spread`` that range relative to the median, ``round_floor`` the noise floor it
gives (:func:`spread_factor` times it). reports/regress.py's rule then uses the larger
side's floor in place of the card's A/A noise on GPU-bound rows, and the stored-noise test
becomes "every new round is worse than every old round". A card that drifts during the
session (warming up) puts the two sides' rounds between each other and flags nothing; a
row that is noisy in this session raises its own floor.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# With two rounds a side a step must be at least this many times the larger side's range of
# round values (the range of two runs is about 1.13 standard deviations of one run).
SPREAD_FACTOR = 2.0
# d2(n): the expected range of n normal samples, in standard deviations (the control-chart
# constant): how the range of n rounds grows with n.
RANGE_IN_SIGMAS = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847}
# The minimum effect of a GPU-bound row measured in rounds, in place of the unit's (5% for
# ms): a step of exactly the minimum effect is flagged only when noise does not shrink it,
# so to catch 5% the bar must sit below it. Set from the H200 rounds of 493bf30 (four runs
# of one commit; docs/gate.md).
ROUND_MIN_EFFECT = 0.04


def spread_factor(n: int) -> float:
    """The floor per unit of range with ``n`` rounds a side: ``SPREAD_FACTOR`` at two, and
    beyond it the same multiple of the standard error of a difference of two n-round
    means, which shrinks as sqrt(2 / n) while the range of n runs grows as d2(n): 1.09 at
    three rounds, 0.77 at four. So more rounds catch smaller steps, as they should; with
    a fixed factor the growing range would make them catch less."""
    n = min(max(int(n), 2), max(RANGE_IN_SIGMAS))
    per_sigma = SPREAD_FACTOR * RANGE_IN_SIGMAS[2]  # at n = 2, sqrt(2 / n) = 1
    return per_sigma * math.sqrt(2 / n) / RANGE_IN_SIGMAS[n]


def combine(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """One side's rounds as one frame: the first round's rows, where every round has a
    finite value the median of them (``value``), their range (``noise_lo``/``noise_hi``),
    ``round_spread`` = range / |median|, ``round_floor`` = :func:`spread_factor` times it
    and ``rounds`` = how many; elsewhere the first round's row as it is (``round_spread``
    and ``round_floor`` NaN, ``rounds`` 1)."""
    first = frames[0].copy()
    first["round_spread"] = np.nan
    first["round_floor"] = np.nan
    first["rounds"] = 1
    if len(frames) < 2 or first.empty:
        return first
    if "machine" in keys and all(f["machine"].nunique() == 1 for f in frames):
        # Rounds are one side measured again, so one card: runs kept under names of their
        # own (h200-sxm-140gb-r3) line up with the first by benchmark and params; with the
        # machine in the key no round would match and the spread would silently be lost.
        keys = [k for k in keys if k != "machine"]
    index = pd.MultiIndex.from_frame(first[keys].astype(str))
    values = []
    for frame in frames:
        own = frame.set_index(pd.MultiIndex.from_frame(frame[keys].astype(str)))["value"]
        own = own[~own.index.duplicated(keep="first")]
        values.append(own.reindex(index).to_numpy(float))
    vals = np.column_stack(values)
    full = np.isfinite(vals).all(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        med = np.median(vals, axis=1)
        lo, hi = vals.min(axis=1), vals.max(axis=1)
        spread = (hi - lo) / np.abs(med)
    first.loc[full, "value"] = med[full]
    first.loc[full, "noise_lo"] = lo[full]
    first.loc[full, "noise_hi"] = hi[full]
    first.loc[full, "round_spread"] = spread[full]
    first.loc[full, "round_floor"] = spread_factor(len(frames)) * spread[full]
    first.loc[full, "rounds"] = len(frames)
    return first


def round_noise(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(spread, floor) per row of a comparison (reports/regress.py: ``*_old``/``*_new``
    columns), of the side with the larger floor; NaN unless both sides were measured in
    rounds."""
    cols = {"round_spread_old", "round_spread_new", "round_floor_old", "round_floor_new"}
    if not cols <= set(frame.columns):
        nan = np.full(len(frame), np.nan)
        return nan, nan
    spreads = [frame[f"round_spread_{s}"].to_numpy(float) for s in ("old", "new")]
    floors = [frame[f"round_floor_{s}"].to_numpy(float) for s in ("old", "new")]
    both = np.isfinite(floors[0]) & np.isfinite(floors[1])
    new_larger = floors[1] > floors[0]
    spread = np.where(both, np.where(new_larger, spreads[1], spreads[0]), np.nan)
    floor = np.where(both, np.fmax(floors[0], floors[1]), np.nan)
    return spread, floor
