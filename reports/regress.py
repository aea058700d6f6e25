"""Regression detection: direction-aware, noise-aware comparisons between commits.

A change between an old and a new measurement of one series (machine x benchmark x params)
is called a regression or an improvement only when all three hold:

1. it goes beyond the unit's relative threshold: ``|new - old| > rel_threshold * |old|``
   (reports/metrics.py, from A/A data; overridable per unit);
2. it goes beyond the unit's absolute floor (so 0.03 ms kernels do not flag on 1 us);
3. the two noise intervals do not overlap (asv's 99% CI of the median when stored and
   finite, else the q25-q75 range of the samples; a point with no interval is its value).

Its sign comes from the unit's direction: for "ms"/"MiB"/"ratio" an increase is worse, for
"TFLOP/s" a decrease is. A measurement that turns into a failure (NaN after a value) is
"failed" and counts as a regression: a kernel that fails its parity check is recorded as
failed, never as fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports import metrics
from reports.load import SERIES_KEYS
from runner import git  # the project's one git helper (standard library only)

REGRESSION = "regression"
FAILED = "failed"
IMPROVEMENT = "improvement"
NOISE = "within noise"  # beyond the threshold, but the noise intervals overlap
UNCHANGED = "unchanged"
NEW = "new"  # no earlier value to compare with
GONE = "missing"  # measured before, not measured (no row at all) now
BAD_STATUSES = (REGRESSION, FAILED)

# Columns describing a series, carried into comparison tables.
DESCRIBE = ["family", "preset", "metric", "unit", "direction", "config", "bwd_mode"]


class CommitNotFound(ValueError):
    pass


def thresholds_for(units: pd.Series, overrides: dict[str, float] | None = None):
    """Per-row (rel_threshold, abs_floor) arrays from metrics.UNIT_RULES (+ overrides)."""
    overrides = overrides or {}
    rules = {u: metrics.unit_rule(u) for u in pd.unique(units)}
    rel = units.map(lambda u: overrides.get(u, rules[u].rel_threshold)).to_numpy(float)
    floor = units.map(lambda u: rules[u].abs_floor).to_numpy(float)
    sign = units.map(lambda u: rules[u].worse_sign).to_numpy(float)
    return rel, floor, sign


def host_bound_rows(frame: pd.DataFrame) -> np.ndarray:
    """True where the row's benchmark takes under metrics.HOST_BOUND_BELOW_MS (its own ms
    series, either side): those timings are host-bound and noisy (reports/metrics.py)."""
    needed = {"benchmark", "params", "value_old", "value_new"}
    if not needed <= set(frame.columns) or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    machine = frame["machine"] if "machine" in frame.columns else pd.Series("", index=frame.index)
    stem = frame["benchmark"].astype(str).str.rsplit(".", n=1).str[0]
    key = machine.astype(str) + "|" + stem + "|" + frame["params"].astype(str)
    is_ms = frame["benchmark"].astype(str).str.endswith(".track_ms")
    ms_value = pd.concat([frame["value_old"], frame["value_new"]], axis=1).min(axis=1)
    lookup = pd.Series(ms_value[is_ms].to_numpy(), index=key[is_ms].to_numpy())
    lookup = lookup[~lookup.index.duplicated()]
    ms_of_row = key.map(lookup).to_numpy(float)
    return np.nan_to_num(ms_of_row, nan=np.inf) < metrics.HOST_BOUND_BELOW_MS


def classify(frame: pd.DataFrame, overrides: dict[str, float] | None = None) -> pd.DataFrame:
    """Add change_pct, worse_pct, threshold_pct, noise_overlap and status to a frame holding
    value_old/value_new, noise_lo_old/noise_hi_old, noise_lo_new/noise_hi_new and unit."""
    out = frame.copy()
    rel, floor, sign = thresholds_for(out["unit"].astype(object), overrides)
    units = out["unit"].astype(object)
    host_rel = units.map(
        lambda u: metrics.unit_rule(u).host_bound_rel_threshold or np.nan
    ).to_numpy(float)
    short = host_bound_rows(out) & np.isfinite(host_rel)
    rel = np.where(short, np.fmax(rel, host_rel), rel)
    if "bwd_mode" in out.columns:
        choice_rel = units.map(
            lambda u: metrics.unit_rule(u).backend_choice_rel_threshold or np.nan
        ).to_numpy(float)
        chosen = out["bwd_mode"].isin(metrics.BACKEND_CHOICE_MODES).to_numpy(bool)
        chosen = chosen & np.isfinite(choice_rel)
        rel = np.where(chosen, np.fmax(rel, choice_rel), rel)
    old = out["value_old"].to_numpy(float)
    new = out["value_new"].to_numpy(float)
    lo_o, hi_o = out["noise_lo_old"].to_numpy(float), out["noise_hi_old"].to_numpy(float)
    lo_n, hi_n = out["noise_lo_new"].to_numpy(float), out["noise_hi_new"].to_numpy(float)
    # Points with no interval stand for themselves.
    lo_o, hi_o = np.where(np.isnan(lo_o), old, lo_o), np.where(np.isnan(hi_o), old, hi_o)
    lo_n, hi_n = np.where(np.isnan(lo_n), new, lo_n), np.where(np.isnan(hi_n), new, hi_n)

    with np.errstate(divide="ignore", invalid="ignore"):
        change = (new - old) / np.abs(old)
    diff = np.abs(new - old)
    beyond = (np.abs(change) > rel) & (diff > floor)
    overlap = np.maximum(lo_o, lo_n) <= np.minimum(hi_o, hi_n)
    worse = sign * change

    has_old, has_new = np.isfinite(old), np.isfinite(new)
    both = has_old & has_new
    status = np.full(len(out), UNCHANGED, dtype=object)
    status[both & beyond & overlap] = NOISE
    status[both & beyond & ~overlap & (worse > 0)] = REGRESSION
    status[both & beyond & ~overlap & (worse < 0)] = IMPROVEMENT
    status[has_old & ~has_new] = FAILED
    status[~has_old & has_new] = NEW
    status[~has_old & ~has_new] = UNCHANGED
    out["change_pct"] = 100.0 * change
    out["worse_pct"] = 100.0 * worse
    out["threshold_pct"] = 100.0 * rel
    out["noise_overlap"] = overlap & both
    out["status"] = status
    return out


def _side(df: pd.DataFrame, suffix: str, keys: list[str]) -> pd.DataFrame:
    cols = keys + [c for c in DESCRIBE if c in df.columns and c not in keys]
    cols += ["commit", "value", "noise_lo", "noise_hi"]
    side = df[cols].rename(
        columns={
            "commit": "commit" + suffix,
            "value": "value" + suffix,
            "noise_lo": "noise_lo" + suffix,
            "noise_hi": "noise_hi" + suffix,
        }
    )
    return side


def compare_frames(
    old: pd.DataFrame,
    new: pd.DataFrame,
    keys: list[str] | None = None,
    overrides: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Compare two sets of rows (e.g. two commits, or an A/A pair) series by series.

    ``keys`` identify a series in both (default machine, benchmark, params; drop machine to
    compare two machines' runs). Series only in ``old`` are "missing", only in ``new`` "new".
    """
    keys = list(keys or SERIES_KEYS)
    a, b = _side(old, "_old", keys), _side(new, "_new", keys)
    merged = a.merge(b, on=keys, how="outer", suffixes=("_o", ""), indicator=True)
    for col in DESCRIBE:  # descriptive columns: the new side's, else the old side's
        if col + "_o" in merged:
            merged[col] = merged[col].where(merged[col].notna(), merged[col + "_o"])
            merged = merged.drop(columns=col + "_o")
    merged["unit"] = merged["unit"].astype(object)
    result = classify(merged, overrides)
    result.loc[result["_merge"] == "left_only", "status"] = GONE
    return result.drop(columns="_merge")


def history(df: pd.DataFrame, overrides: dict[str, float] | None = None) -> pd.DataFrame:
    """Every measurement vs the same series' previous commit with a value (vectorised).

    A failure (NaN) right after a value is "failed"; a value after failures is compared with
    the last good value, so a series that breaks and recovers shows both steps.
    """
    cols = SERIES_KEYS + [c for c in DESCRIBE if c not in SERIES_KEYS and c in df.columns]
    cols += ["commit", "commit_order", "value", "noise_lo", "noise_hi"]
    d = df[cols].sort_values(SERIES_KEYS + ["commit_order"]).reset_index(drop=True)
    group = d.groupby(SERIES_KEYS, sort=False, observed=True)
    finite = d["value"].notna()
    # The last earlier row with a value: shift by one within the series, then forward-fill.
    good = d[["commit", "value", "noise_lo", "noise_hi"]].where(finite)
    good["_series"] = group.ngroup()
    prev = good.groupby("_series").shift(1)
    prev = prev.groupby(good["_series"]).ffill()
    immediate_prev_value = group["value"].shift(1)
    out = d.rename(
        columns={
            "commit": "commit_new",
            "value": "value_new",
            "noise_lo": "noise_lo_new",
            "noise_hi": "noise_hi_new",
            "commit_order": "commit_order_new",
        }
    )
    out["commit_old"] = prev["commit"]
    out["value_old"] = prev["value"]
    out["noise_lo_old"] = prev["noise_lo"]
    out["noise_hi_old"] = prev["noise_hi"]
    out["unit"] = out["unit"].astype(object)
    result = classify(out, overrides)
    # A failure is reported once, when it starts; later NaNs are not news.
    still_failing = (result["status"] == FAILED) & immediate_prev_value.isna().to_numpy()
    result.loc[still_failing, "status"] = UNCHANGED
    first = group.cumcount().to_numpy() == 0
    result.loc[first & result["value_new"].notna().to_numpy(), "status"] = NEW
    return result


def resolve_commit(df: pd.DataFrame, ref: str, repo: str | None = ".") -> str:
    """A commit prefix, 'latest', or a git ref (HEAD~1, a branch) -> the full hash in df."""
    commits = df[["commit", "commit_order"]].drop_duplicates("commit")
    if ref == "latest":
        return commits.sort_values("commit_order")["commit"].iloc[-1]
    hits = commits[commits["commit"].str.startswith(ref)]["commit"].tolist()
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CommitNotFound(f"commit prefix {ref!r} is ambiguous: {', '.join(hits[:5])}")
    if repo is not None:
        try:
            full = git.resolve_commit(ref, repo)
        except git.GitError:  # not a repository, or no such ref
            full = ""
        if full and (commits["commit"] == full).any():
            return full
        if full:
            raise CommitNotFound(f"{ref!r} is commit {full[:8]}, which has no results")
    known = ", ".join(commits.sort_values("commit_order")["commit"].str[:8].tolist()[-10:])
    raise CommitNotFound(f"no results for commit {ref!r} (latest with results: {known})")


def latest_vs(df: pd.DataFrame, baseline: str, repo=".", overrides=None) -> pd.DataFrame:
    """Each machine's newest commit vs ``baseline`` on the same machine."""
    base = resolve_commit(df, baseline, repo)
    parts = []
    for _machine, mdf in df.groupby("machine", sort=True):
        if not (mdf["commit"] == base).any():
            continue
        newest = mdf.loc[mdf["commit_order"].idxmax(), "commit"]
        parts.append(
            compare_frames(
                mdf[mdf["commit"] == base], mdf[mdf["commit"] == newest], None, overrides
            )
        )
    if not parts:
        return compare_frames(df.iloc[:0], df.iloc[:0])
    return pd.concat(parts, ignore_index=True)


def aa_summary(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Largest same-commit (A/A) difference per unit and metric, and the threshold it implies.

    Series are matched on benchmark and params (the two runs may carry different machine
    names, e.g. h100-sxm-80gb-aa1 / -aa2). ``flagged_now`` counts the pairs the current
    thresholds would call a regression or improvement: it must be 0.

    When the two sides share commits (e.g. the A side is a machine's whole history and the
    B side a repeat of one of its commits), only those commits are compared, commit by
    commit.
    """
    keys = ["benchmark", "params"]
    common = sorted(set(old["commit"]) & set(new["commit"]))
    if common:
        parts = [
            compare_frames(old[old["commit"] == c], new[new["commit"] == c], keys=keys)
            for c in common
        ]
        cmp = pd.concat(parts, ignore_index=True)
    else:
        cmp = compare_frames(old, new, keys=keys)
    cmp = cmp[cmp["value_old"].notna() & cmp["value_new"].notna()].copy()
    cmp["abs_rel"] = cmp["change_pct"].abs() / 100.0
    rows = []
    for (unit, metric), g in cmp.groupby(["unit", "metric"], sort=True, dropna=False):
        worst = g.loc[g["abs_rel"].idxmax()]
        rule = metrics.unit_rule(unit)
        rows.append(
            {
                "unit": unit,
                "metric": metric,
                "pairs": len(g),
                "median_abs_diff_pct": 100.0 * g["abs_rel"].median(),
                "p95_abs_diff_pct": 100.0 * g["abs_rel"].quantile(0.95),
                "max_abs_diff_pct": 100.0 * worst["abs_rel"],
                "worst_benchmark": f"{worst['benchmark']} {worst['params']}",
                "current_threshold_pct": 100.0 * rule.rel_threshold,
                "implied_threshold_pct": 100.0 * metrics.implied_threshold(worst["abs_rel"]),
                "flagged_now": int(g["status"].isin([REGRESSION, IMPROVEMENT]).sum()),
            }
        )
    return pd.DataFrame(rows)
