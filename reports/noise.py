"""What a row of results is worth: its noise interval and its provenance (issue 15).

- Noise: asv's stats columns (ci_99_a/b, q_25/q_75; the runner fills them for every timing
  row from the suite's sample summaries, runner/noise.py) give each row ``noise_lo``,
  ``noise_hi`` and ``noise_source``: the 99% interval of the median where there is one,
  else the quartiles (stored, or from the samples kept), else "none".
- Provenance: the toolchain and host that measured a result file, from its ``params``
  (asv copies the machine file there; runner/machine.py PROVENANCE_KEYS), one column each
  so the regression gate can warn when two sides differ.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports import guard
from runner.machine import PROVENANCE_KEYS

# Provenance of a result file (runner/machine.py PROVENANCE_KEYS, in the file's "params":
# asv copies the machine file there): one column each, None/NaN in files that predate a
# field. The clocks are numbers (MHz); "-" (unknown when measured) reads as missing.
PROVENANCE_COLUMNS = ("where", *(k for k in PROVENANCE_KEYS if k != "where"))
NUMERIC_PROVENANCE = ("gpu_clock_mhz", "mem_clock_mhz")


def provenance(params: dict) -> dict:
    """The provenance fields of a result file's params (PROVENANCE_COLUMNS); None or NaN
    where the file has none."""
    out: dict = {}
    for key in PROVENANCE_COLUMNS:
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or value.strip() in ("", "-"):
            value = None
        if key in NUMERIC_PROVENANCE:
            try:
                value = float(value) if value is not None else math.nan
            except ValueError:
                value = math.nan
            value = value if math.isfinite(value) else math.nan
        out[key] = value
    return out


def noise_interval(df: pd.DataFrame) -> pd.DataFrame:
    """noise_lo/noise_hi: asv's 99% CI when finite, else q25-q75 (stored or from samples)."""
    ci_ok = np.isfinite(df["ci_99_a"]) & np.isfinite(df["ci_99_b"])
    iqr_ok = np.isfinite(df["q_25"]) & np.isfinite(df["q_75"]) & ~ci_ok
    df["noise_lo"] = np.where(ci_ok, df["ci_99_a"], np.where(iqr_ok, df["q_25"], np.nan))
    df["noise_hi"] = np.where(ci_ok, df["ci_99_b"], np.where(iqr_ok, df["q_75"], np.nan))
    source = np.where(ci_ok, "ci_99", np.where(iqr_ok, "iqr", "none"))
    df["noise_source"] = source
    return df


def fill_quartiles_from_samples(df: pd.DataFrame, samples: list) -> None:
    """q_25/q_75 from the samples kept where the file has no quartiles."""
    need = df["n_samples"].to_numpy() > 1
    need &= np.array([s is not None for s in samples], dtype=bool)  # n from stats_repeat
    need &= ~(np.isfinite(df["q_25"].to_numpy()) & np.isfinite(df["q_75"].to_numpy()))
    for i in np.flatnonzero(need):
        s = np.array([x for x in samples[i] if guard.is_number(x)], dtype=float)
        s = s[np.isfinite(s) & (np.abs(s) <= guard.MAX_ABS_VALUE)]
        if len(s) > 1:
            df.iat[i, df.columns.get_loc("q_25")] = np.quantile(s, 0.25)
            df.iat[i, df.columns.get_loc("q_75")] = np.quantile(s, 0.75)
