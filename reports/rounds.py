"""Interleaved rounds: a gate session's own between-run noise (``make bench-compare ROUNDS=N``).

Why: a gate that measures the base once and the head once compares two runs, and what
moves between two runs of the same kernels (clocks, the host) is the card's A/A noise; the
floor of every step must sit above it (reports/aa_noise.py). On the H200 that is 8% for
graph ms and 12.5% for GPU-bound eager ms: runs of one commit's kernels differed by up to
5.19% (cold/warm pair, graph ms of Grid grad-grad D64 causal) and 4.40% (two loans, Long
forward T32768), so a 5% step cannot be told from noise with one run a side.

Measured in rounds (head, base, head, base, ...: runner/compare.py), each side has N runs
from one session, and :func:`combine` makes one row per series of them: the value is the
median over the rounds, the noise interval the range of the rounds' values, and
``round_spread`` that range relative to the median. reports/regress.py's rule then uses
``SPREAD_FACTOR`` times the larger side's spread as the row's noise floor in place of the
card's A/A noise, and the stored-noise test becomes "every new round is worse than every
old round". A card that drifts during the session (warming up) puts the two sides' rounds
between each other and flags nothing; a row that is noisy in this session raises its own
floor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A step must be at least this many times the larger side's range of round values (with
# two rounds a side, the range is about 1.1 standard deviations of one run).
SPREAD_FACTOR = 2.0
# The minimum effect of a GPU-bound row measured in rounds, in place of the unit's (5% for
# ms): a step of exactly the minimum effect is flagged only when noise does not shrink it,
# so to catch 5% the bar must sit below it. Set from the H200 rounds of 493bf30 (four runs
# of one commit; docs/gate.md).
ROUND_MIN_EFFECT = 0.04


def combine(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """One side's rounds as one frame: the first round's rows, where every round has a
    finite value the median of them (``value``), their range (``noise_lo``/``noise_hi``),
    ``round_spread`` = range / |median| and ``rounds`` = how many; elsewhere the first
    round's row as it is (``round_spread`` NaN, ``rounds`` 1)."""
    first = frames[0].copy()
    first["round_spread"] = np.nan
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
    first.loc[full, "rounds"] = len(frames)
    return first
