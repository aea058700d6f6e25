"""The text of ``python -m reports compare``: one line per flagged series with its noise band.

The classification is reports/regress.py's; this only prints it (sections by status, the
missing series summarised in one line).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports import metrics, regress, tables

MISSING_SHOWN = 5  # names listed in the missing summary


def _band(r) -> str:
    """The noise the rule used: the two stored intervals, else the A/A default."""
    lo_o, hi_o = getattr(r, "noise_lo_old", np.nan), getattr(r, "noise_hi_old", np.nan)
    lo_n, hi_n = getattr(r, "noise_lo_new", np.nan), getattr(r, "noise_hi_new", np.nan)
    if all(np.isfinite(x) for x in (lo_o, hi_o, lo_n, hi_n)):
        return (
            f"noise [{tables.fmt(lo_o, '.4g')}, {tables.fmt(hi_o, '.4g')}] -> "
            f"[{tables.fmt(lo_n, '.4g')}, {tables.fmt(hi_n, '.4g')}]"
        )
    return f"band +-{r.threshold_pct:.1f}%"


def _fmt_change(r) -> str:
    change = "    n/a " if not np.isfinite(r.change_pct) else f"{r.change_pct:+7.1f}%"
    return (
        f"  {change}  {r.benchmark}  {r.params}  "
        f"{tables.fmt(r.value_old, '.4g')} -> {tables.fmt(r.value_new, '.4g')} {r.unit}  "
        f"({_band(r)}, min detectable {r.mdc_pct:.1f}%; rule: {r.rule}; "
        f"{metrics.direction(r.unit)} is better)"
    )


def _missing_summary(rows: pd.DataFrame) -> str:
    classes = rows["benchmark"].astype(str).str.rsplit(".", n=1).str[0].value_counts()
    by_class = ", ".join(f"{c} ({n})" for c, n in classes.head(8).items())
    more = f", +{len(classes) - 8} classes" if len(classes) > 8 else ""
    names = "; ".join(
        f"{r.benchmark} {r.params}" for r in rows.head(MISSING_SHOWN).itertuples(index=False)
    )
    return (
        f"{len(rows)} series missing (measured on the old side, absent on the new) in "
        f"{by_class}{more}; first: {names}" + (" ..." if len(rows) > MISSING_SHOWN else "")
    )


def print_comparison(cmp: pd.DataFrame, title: str, show_all: bool = False) -> None:
    counts = cmp["status"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in counts.index)
    print(f"{title}: {len(cmp)} series: {summary}")
    sections = [
        (regress.REGRESSION, "REGRESSIONS (worse beyond the minimum effect and the noise)"),
        (regress.DRIFT, "DRIFT (worse than the median of the last commits)"),
        (regress.FAILED, "FAILED (no value: had one before, or new and failed)"),
        (regress.IMPROVEMENT, "IMPROVEMENTS"),
    ]
    if show_all:
        sections += [
            (regress.NOISE, "WITHIN NOISE (beyond the minimum effect, intervals overlap)"),
            (regress.STILL_FAILING, "STILL FAILING (no value on either side)"),
            (regress.NEW, "NEW"),
        ]
    for status, heading in sections:
        rows = cmp[cmp["status"] == status]
        if rows.empty:
            continue
        if status in (regress.REGRESSION, regress.DRIFT, regress.IMPROVEMENT):
            rows = rows.sort_values("worse_pct", ascending=status == regress.IMPROVEMENT)
        print(heading)
        for r in rows.itertuples(index=False):
            print(_fmt_change(r))
    missing = cmp[cmp["status"] == regress.GONE]
    if not missing.empty:
        print(_missing_summary(missing))
