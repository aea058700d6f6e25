"""Regression detection: direction-aware, noise-aware comparisons between commits.

A step between an old and a new measurement of one series (machine x benchmark x params)
is a regression or an improvement only when both hold:

1. it reaches the row's **minimum detectable step**: the unit's minimum effect
   (``|new - old| >= rel_threshold * |old|`` and ``> abs_floor``; reports/metrics.py;
   ``--threshold UNIT=PCT`` overrides the relative part) or, when larger, the A/A noise of
   the row's unit and regime on its card (metrics.aa_noise, from reports/aa_noise.py: what
   moves between two runs of one commit);
2. with stored noise on both sides (asv's 99% CI of the median, else q25-q75 of the
   samples; reports/load.py noise_lo/noise_hi) the two intervals do not overlap
   ("stored noise").

Measured in interleaved rounds (reports/rounds.py), a series' value is the median of its
rounds, its interval their range, and on GPU-bound rows the session's own spread of them
(times rounds.spread_factor) replaces the card's A/A noise in 1., with the smaller minimum
effect rounds.ROUND_MIN_EFFECT; host-bound and host rows keep the A/A noise as a floor.

``rule`` says which applied, ``mdc_pct`` the row's minimum detectable change (the smallest
step in the worse direction that the rule flags: the larger of the minimum effect and the
noise, which for stored noise is the old interval's upper half-width plus the new one's
lower half-width, relative to old). TFLOP/s rows follow their ms row (same machine,
benchmark class, params): the rate is a FLOP model over the time, so its decision is the
time's ("follows ms"). Its sign comes from the unit's direction. A measurement that is a
failure (NaN) where it had a value, or is new and failed, is "failed" and gates like a
regression. ``drift`` compares a commit with the median of the last K commits, which catches
a slow creep that no single step shows.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from reports import metrics
from reports.load import SERIES_KEYS
from reports.rounds import ROUND_MIN_EFFECT, round_noise
from runner import git  # the project's one git helper (standard library only)

REGRESSION = "regression"
FAILED = "failed"
IMPROVEMENT = "improvement"
NOISE = "within noise"  # beyond the threshold, but the noise intervals overlap
UNCHANGED = "unchanged"
NEW = "new"  # no earlier value to compare with
GONE = "missing"  # measured before, not measured (no row at all) now
STILL_FAILING = "still failing"  # failed on both sides of a comparison
SKIPPED = "skipped"  # no value because the benchmark skipped it (asv stores NaN, not null)
DRIFT = "drift"  # beyond the rule against the median of the last K commits
BAD_STATUSES = (REGRESSION, FAILED)
# How many earlier commits the drift baseline takes its median over, and at least how many.
# A drift of r a commit leaves the window's median about DRIFT_WINDOW / 2 * r behind: 30
# makes +1% a commit show as ~15%, past the H200's A/A noise of the kernels' time (graph ms
# 9%; not its GPU-bound eager ms, 17%), where a window of 10 (~5%) never did.
DRIFT_WINDOW = 30
DRIFT_MIN_POINTS = 3

# Columns describing a series, carried into comparison tables.
DESCRIBE = ["family", "preset", "metric", "unit", "direction", "config", "bwd_mode"]


class CommitNotFound(ValueError):
    pass


def thresholds_for(units: pd.Series, overrides: dict[str, float] | None = None):
    """Per-row (minimum effect, abs_floor, worse sign) arrays from metrics.UNIT_RULES."""
    overrides = overrides or {}
    rules = {u: metrics.unit_rule(u) for u in pd.unique(units)}
    rel = units.map(lambda u: overrides.get(u, rules[u].rel_threshold)).to_numpy(float)
    floor = units.map(lambda u: rules[u].abs_floor).to_numpy(float)
    sign = units.map(lambda u: rules[u].worse_sign).to_numpy(float)
    return rel, floor, sign


def _class_key(frame: pd.DataFrame) -> pd.Series:
    """machine | benchmark class (name without the method) | params: a row's siblings."""
    machine = frame["machine"] if "machine" in frame.columns else pd.Series("", index=frame.index)
    stem = frame["benchmark"].astype(str).str.rsplit(".", n=1).str[0]
    return machine.astype(str) + "|" + stem + "|" + frame["params"].astype(str)


_SIBLING_COLUMNS = {"benchmark", "params", "value_old", "value_new"}


def _sibling(frame: pd.DataFrame, key: pd.Series, method: str, larger: bool) -> np.ndarray:
    """Each row's value of its benchmark's ``method`` row (same machine, class and params):
    the larger or the smaller of its two sides; NaN where there is none."""
    is_m = frame["benchmark"].astype(str).str.endswith("." + method)
    sides = pd.concat([frame["value_old"], frame["value_new"]], axis=1)
    value = sides.max(axis=1) if larger else sides.min(axis=1)
    lookup = pd.Series(value[is_m].to_numpy(), index=key[is_m].to_numpy())
    lookup = lookup[~lookup.index.duplicated()]
    return key.map(lookup).to_numpy(float)


def own_ms(frame: pd.DataFrame, key: pd.Series | None = None) -> np.ndarray:
    """Each row's benchmark's own ms (its track_ms sibling, the smaller side); inf if none.
    ``key``: :func:`_class_key` of ``frame`` when the caller has it."""
    if not _SIBLING_COLUMNS <= set(frame.columns) or frame.empty:
        return np.full(len(frame), np.inf)
    key = _class_key(frame) if key is None else key
    return np.nan_to_num(_sibling(frame, key, "track_ms", larger=False), nan=np.inf)


def own_host_share(
    frame: pd.DataFrame, key: pd.Series | None = None, ms: np.ndarray | None = None
) -> np.ndarray:
    """Each row's benchmark's host ms (its track_host_ms sibling, the larger side) over its
    own ms (:func:`own_ms`, or ``ms``); 0 where either is unknown."""
    if not _SIBLING_COLUMNS <= set(frame.columns) or frame.empty:
        return np.zeros(len(frame))
    key = _class_key(frame) if key is None else key
    ms = own_ms(frame, key) if ms is None else ms
    host = _sibling(frame, key, "track_host_ms", larger=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = host / ms
    return np.nan_to_num(share, nan=0.0, posinf=0.0)


def _host_bound_with_graph(
    frame: pd.DataFrame, regimes: np.ndarray, key: pd.Series | None = None
) -> np.ndarray:
    """Eager ms rows in the host_bound regime whose track_graph_ms sibling has values."""
    is_ms = (frame["unit"].astype(object) == "ms").to_numpy() & (regimes == metrics.HOST_BOUND)
    if not is_ms.any() or "benchmark" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    key = _class_key(frame) if key is None else key
    graph = frame["benchmark"].astype(str).str.endswith(".track_graph_ms").to_numpy().copy()
    graph &= frame["value_old"].notna().to_numpy() | frame["value_new"].notna().to_numpy()
    return is_ms & key.isin(set(key[graph])).to_numpy()


# A rate's method -> the method of the time it is derived from (reports/derived.py).
RATE_SOURCE = {
    "track_tflops": "track_ms",
    "track_graph_tflops": "track_graph_ms",
    "track_gbps": "track_ms",
}


def _series_key(frame: pd.DataFrame, benchmark: pd.Series) -> pd.Series:
    machine = frame["machine"] if "machine" in frame.columns else pd.Series("", index=frame.index)
    return machine.astype(str) + "|" + benchmark + "|" + frame["params"].astype(str)


def _follow_ms(out: pd.DataFrame) -> None:
    """Rate rows (TFLOP/s, GB/s) with their time row take its decision (in place): the rate
    is the FLOP model over that time (reports/derived.py), so it moves exactly when the
    time does. ``track_tflops`` follows ``track_ms``, ``track_graph_tflops`` ``track_graph_ms``."""
    is_rate = out["unit"].astype(object).isin(["TFLOP/s", "GB/s"]).to_numpy()
    if not is_rate.any() or "benchmark" not in out.columns:
        return
    names = out["benchmark"].astype(str)
    stem, method = names.str.rpartition(".")[0], names.str.rpartition(".")[2]
    source = stem + "." + method.map(RATE_SOURCE).fillna("")
    key = _series_key(out, source)  # a rate row: the key of its time row
    own = _series_key(out, names)  # every row: its own key
    if "commit_new" in out.columns:  # history: one step per commit of each series
        step = "@" + out["commit_new"].astype(str)
        key, own = key + step, own + step
    is_time = method.isin(set(RATE_SOURCE.values())).to_numpy()
    cols = ["status", "threshold_pct", "mdc_pct", "noise_overlap"]
    ms_rows = out.loc[is_time, cols].set_index(own[is_time].to_numpy())
    ms_rows = ms_rows[~ms_rows.index.duplicated()]
    follow = is_rate & key.isin(ms_rows.index).to_numpy()
    both = out["value_old"].notna().to_numpy() & out["value_new"].notna().to_numpy()
    follow &= both
    if not follow.any():
        return
    sib = ms_rows.loc[key[follow].to_numpy()]
    sib_status = sib["status"].to_numpy()
    ok = np.isin(sib_status, [REGRESSION, IMPROVEMENT, NOISE, UNCHANGED])
    idx = out.index[follow][ok]
    for col in cols:
        out.loc[idx, col] = sib[col].to_numpy()[ok]
    out.loc[idx, "rule"] = "follows ms"


def classify(frame: pd.DataFrame, overrides: dict[str, float] | None = None) -> pd.DataFrame:
    """Add change_pct, worse_pct, threshold_pct, mdc_pct, rule, noise_overlap and status to a
    frame holding value_old/value_new, noise_lo_old/noise_hi_old, noise_lo_new/noise_hi_new
    and unit (bwd_mode, benchmark and params when present pick the regime)."""
    out = frame.copy()
    units = out["unit"].astype(object)
    min_eff, floor, sign = thresholds_for(units, overrides)
    old = out["value_old"].to_numpy(float)
    new = out["value_new"].to_numpy(float)
    lo_o, hi_o = out["noise_lo_old"].to_numpy(float), out["noise_hi_old"].to_numpy(float)
    lo_n, hi_n = out["noise_lo_new"].to_numpy(float), out["noise_hi_new"].to_numpy(float)
    stored = np.isfinite(lo_o) & np.isfinite(hi_o) & np.isfinite(lo_n) & np.isfinite(hi_n)
    # Points with no interval stand for themselves.
    lo_o, hi_o = np.where(np.isnan(lo_o), old, lo_o), np.where(np.isnan(hi_o), old, hi_o)
    lo_n, hi_n = np.where(np.isnan(lo_n), new, lo_n), np.where(np.isnan(hi_n), new, hi_n)

    key = _class_key(out) if _SIBLING_COLUMNS <= set(out.columns) else None
    ms_of_row = own_ms(out, key)
    share = own_host_share(out, key, ms_of_row)
    modes = out["bwd_mode"] if "bwd_mode" in out.columns else pd.Series(None, index=out.index)
    regimes = [metrics.regime(*r) for r in zip(units, ms_of_row, modes, share)]
    # The A/A noise of the row's card (a cross-machine comparison: the new side's card).
    mcol = next((c for c in ("machine", "machine_new") if c in out.columns), None)
    machines = out[mcol] if mcol else pd.Series(None, index=out.index, dtype=object)
    aa = np.array(
        [metrics.aa_noise(u, r, m) for u, r, m in zip(units, regimes, machines)], dtype=float
    )  # None -> nan
    # The step to flag is at least the minimum effect and the card's A/A (between-run)
    # noise: a stored interval is within one run and does not see what moves between runs
    # (on the H200, GPU-bound kernels up to 5% in graph ms, the host 2.5x; aa_noise.py).
    # Measured in interleaved rounds, a series has this session's between-run noise of its
    # own, which stands in for the card's (reports/rounds.py).
    # Only where the kernels set the time: the host's time is heavy-tailed, and two rounds
    # cannot bound it (H200, 493bf30, four runs of one commit: the Short fused backward's
    # eager ms 0.431/0.464 ms in two runs, 0.574/0.684 in the other two, its graph ms
    # 0.429-0.430 in all four). Host-bound and host rows keep the card's A/A noise.
    spread, round_floor = round_noise(out)
    rounds_ = np.isfinite(round_floor)
    gpu_rounds = rounds_ & (np.asarray(regimes, dtype=object) == metrics.GPU_BOUND)
    aa_floor = np.nan_to_num(aa, nan=0.0)
    session = np.nan_to_num(round_floor, nan=0.0)
    noise_floor = np.where(gpu_rounds, session, np.fmax(aa_floor, session))
    # Our kernels only (one tuned config a commit); SDPA picks a backend and a plan per
    # process, and its eager Long backward T32768 took 13.91/14.03 ms in two of the four
    # runs, 13.83/12.87 in the other two: -4.4%, ranges apart; it keeps 5%.
    own_bar = units.isin(list(overrides or {})).to_numpy()  # --threshold: the user's bar
    library = modes.isin(list(metrics.BACKEND_CHOICE_MODES)).to_numpy()
    lower = gpu_rounds & ~own_bar & ~library
    min_eff = np.where(lower, np.fmin(min_eff, ROUND_MIN_EFFECT), min_eff)
    rel = np.fmax(min_eff, noise_floor)
    # A host-bound eager row whose graph-replay sibling is measured: the kernel is judged on
    # graph ms, the eager row at its (host-bound) A/A noise.
    host_eager = _host_bound_with_graph(out, np.asarray(regimes, dtype=object), key)

    with np.errstate(divide="ignore", invalid="ignore"):
        change = (new - old) / np.abs(old)
        # stored noise: the worse-direction step that separates the intervals
        sep = np.where(sign > 0, (hi_o - old) + (new - lo_n), (old - lo_o) + (hi_n - new))
        sep_rel = sep / np.abs(old)
    diff = np.abs(new - old)
    overlap = np.maximum(lo_o, lo_n) <= np.minimum(hi_o, hi_n)
    # "at least the minimum effect" (a 1.05x step is 5%, give or take a rounding error)
    beyond = (np.abs(change) >= rel * (1 - 1e-9)) & (diff > floor)
    apart = np.where(stored, ~overlap, True)
    worse = sign * change

    has_old, has_new = np.isfinite(old), np.isfinite(new)
    both = has_old & has_new
    status = np.full(len(out), UNCHANGED, dtype=object)
    status[both & beyond & ~apart] = NOISE
    status[both & beyond & apart & (worse > 0)] = REGRESSION
    status[both & beyond & apart & (worse < 0)] = IMPROVEMENT
    status[has_old & ~has_new] = FAILED
    status[~has_old & has_new] = NEW
    status[~has_old & ~has_new] = UNCHANGED
    between = [
        f"A/A noise {u}/{r} {100 * a:.1f}%, min effect {100 * m:.1f}%"
        if np.isfinite(a)
        else f"min effect {100 * m:.1f}% (no A/A noise for {u})"
        for u, r, a, m in zip(units, regimes, aa, min_eff)
    ]
    between = [
        f"interleaved rounds, spread {100 * sp:.1f}% -> floor {100 * fl:.1f}%, min effect "
        f"{100 * m:.1f}%"
        if g
        else f"{b}; interleaved rounds, spread {100 * sp:.1f}% -> floor {100 * fl:.1f}% "
        "(not GPU-bound)"
        if r
        else b
        for b, g, r, sp, fl, m in zip(between, gpu_rounds, rounds_, spread, round_floor, min_eff)
    ]
    rule = np.where(stored, [f"stored noise, {b}" for b in between], between)
    out["change_pct"] = 100.0 * change
    out["worse_pct"] = 100.0 * worse
    out["threshold_pct"] = 100.0 * rel
    out["mdc_pct"] = 100.0 * np.where(stored, np.fmax(rel, np.nan_to_num(sep_rel, nan=0.0)), rel)
    rule = np.where(host_eager, "host-bound, kernel judged on graph ms; " + rule.astype(str), rule)
    out["rule"] = rule
    out["regime"] = regimes
    out["noise_overlap"] = np.where(stored, overlap, False) & both
    out["status"] = status
    _follow_ms(out)
    return out


def _raw_results(path: str) -> dict:
    """benchmark -> {"v1 v2 ...": raw result} of one asv result file (None: failed, NaN:
    skipped; load.py reads both as NaN)."""
    from reports.load import _parse_param_value, _read_result_file

    data = _read_result_file(Path(path), []) if Path(path).is_file() else None
    if not data:
        return {}
    cols = data["result_columns"]
    i_res, i_par = cols.index("result"), cols.index("params")
    out = {}
    for name, row in data["results"].items():
        try:
            params = [[_parse_param_value(v) for v in axis] for axis in row[i_par]]
            result = row[i_res]
            combos = list(itertools.product(*params))
            if not isinstance(result, list) or len(result) != len(combos):
                continue
            out[name] = {" ".join(c): r for c, r in zip(combos, result)}
        except (TypeError, IndexError, ValueError):
            continue
    return out


def asv_skipped(files: pd.Series, benchmarks: pd.Series, params: pd.Series) -> np.ndarray:
    """True where the raw result is NaN (asv: the benchmark raised NotImplementedError, a
    combination that does not apply), False where it is null (a failure) or a value."""
    out = np.zeros(len(files), dtype=bool)
    cache: dict[str, dict] = {}
    for i, (f, b, p) in enumerate(zip(files, benchmarks, params)):
        if not isinstance(f, str):
            continue
        raw = cache.setdefault(f, _raw_results(f))
        values = " ".join(part.split("=", 1)[-1] for part in str(p).split(" "))
        v = raw.get(str(b), {}).get(values)
        out[i] = isinstance(v, float) and math.isnan(v)
    return out


def _side(df: pd.DataFrame, suffix: str, keys: list[str]) -> pd.DataFrame:
    cols = keys + [c for c in DESCRIBE if c in df.columns and c not in keys]
    cols += ["commit", "value", "noise_lo", "noise_hi"]
    cols += ["result_file"] if "result_file" in df.columns else []
    cols += [c for c in ("round_spread", "round_floor") if c in df.columns]  # reports/rounds.py
    side = df[cols].rename(
        columns={
            "commit": "commit" + suffix,
            "value": "value" + suffix,
            "noise_lo": "noise_lo" + suffix,
            "noise_hi": "noise_hi" + suffix,
            "result_file": "result_file" + suffix,
            "round_spread": "round_spread" + suffix,
            "round_floor": "round_floor" + suffix,
        }
    )
    return side


def _mark_skips(result: pd.DataFrame, candidates: pd.Series) -> None:
    """A no-value row the benchmark skipped (asv NaN) with no value before is SKIPPED."""
    cand = candidates.to_numpy(bool) & result["value_old"].isna().to_numpy()
    if not cand.any() or "result_file_new" not in result.columns:
        return
    sub = result[cand]
    # A derived rate (track_tflops) is skipped when the time it comes from was.
    method = sub["benchmark"].astype(str).str.rpartition(".")
    source = method[0] + "." + method[2].map(lambda m: RATE_SOURCE.get(m, m))
    skip = asv_skipped(sub["result_file_new"], source, sub["params"])
    result.loc[sub.index[skip], "status"] = SKIPPED


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
    # A failure now: FAILED when it had a value or is new; failing on both sides is news
    # but not this change's doing.
    no_new = result["value_new"].isna()
    result.loc[no_new & (result["_merge"] == "right_only"), "status"] = FAILED
    result.loc[no_new & result["value_old"].isna() & (result["_merge"] == "both"), "status"] = (
        STILL_FAILING
    )
    _mark_skips(result, result["status"].isin([FAILED, STILL_FAILING]) & no_new)
    result.loc[result["_merge"] == "left_only", "status"] = GONE
    return result.drop(columns="_merge")


def history(df: pd.DataFrame, overrides: dict[str, float] | None = None) -> pd.DataFrame:
    """Every measurement vs the same series' previous commit with a value (vectorised).

    A failure (NaN) right after a value is "failed"; a value after failures is compared with
    the last good value, so a series that breaks and recovers shows both steps.
    """
    cols = SERIES_KEYS + [c for c in DESCRIBE if c not in SERIES_KEYS and c in df.columns]
    cols += ["commit", "commit_order", "value", "noise_lo", "noise_hi"]
    cols += ["result_file"] if "result_file" in df.columns else []
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
            "result_file": "result_file_new",
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
    # A series whose first measurement failed is a failure, not "unchanged".
    first_none = first & result["value_new"].isna().to_numpy()
    result.loc[first_none, "status"] = FAILED
    _mark_skips(result, pd.Series(first_none, index=result.index))
    return result


def drift(
    df: pd.DataFrame,
    commit: str,
    k: int = DRIFT_WINDOW,
    overrides: dict[str, float] | None = None,
) -> pd.DataFrame:
    """``commit``'s rows vs the median of each series' last ``k`` earlier values on the same
    machine (at least DRIFT_MIN_POINTS of them): status DRIFT where the classify rule (A/A
    default noise: a median carries no interval) calls that a regression.

    A slow creep (+1% a commit) never trips the step-by-step rule; against a median ~k/2
    commits back it does once it adds up to the minimum effect.
    """
    new = df[df["commit"] == commit]
    if new.empty:
        return compare_frames(df.iloc[:0], df.iloc[:0])
    order = new["commit_order"].max()
    earlier = df[(df["commit_order"] < order) & df["machine"].isin(new["machine"].unique())]
    earlier = earlier[earlier["value"].notna()].sort_values("commit_order")
    window = earlier.groupby(SERIES_KEYS, observed=True, sort=False).tail(k)
    stats = window.groupby(SERIES_KEYS, observed=True)["value"].agg(["median", "count"])
    stats = stats[stats["count"] >= DRIFT_MIN_POINTS].reset_index()
    base = new.drop(columns=["value"]).merge(
        stats.rename(columns={"median": "value"}), on=SERIES_KEYS, how="inner"
    )
    if base.empty:
        return compare_frames(df.iloc[:0], df.iloc[:0])
    base["noise_lo"] = np.nan
    base["noise_hi"] = np.nan
    base["commit"] = f"median of last {k}"
    cur = new[new.set_index(SERIES_KEYS).index.isin(base.set_index(SERIES_KEYS).index)]
    out = compare_frames(base, cur, overrides=overrides)
    out["drift_points"] = out.merge(stats, on=SERIES_KEYS, how="left")["count"].to_numpy()
    out.loc[out["status"] == REGRESSION, "status"] = DRIFT
    out.loc[out["status"] == DRIFT, "rule"] = (
        f"drift vs median of last {k}: " + out.loc[out["status"] == DRIFT, "rule"]
    )
    return out


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


def _aa_pairs(old: pd.DataFrame, new: pd.DataFrame, extra=()) -> pd.DataFrame:
    """Every same-code difference of ``old`` and ``new``, and of each (old, new) in ``extra``
    (further runs of the same kernels and measuring code), pooled."""
    if extra:
        parts = [_aa_pairs(old, new)] + [_aa_pairs(a, b) for a, b in extra]
        return pd.concat(parts, ignore_index=True)
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
    return cmp


def aa_noise_defaults(
    old: pd.DataFrame, new: pd.DataFrame, source: dict | None = None, extra=()
) -> dict:
    """The A/A derivation metrics.aa_noise reads: per unit and regime, the pairs, the median
    and largest same-commit difference, and the threshold it implies
    (metrics.implied_threshold: 1.5x the largest, rounded up to 0.5%); ``extra``: further
    (old, new) pairs pooled with it."""
    cmp = _aa_pairs(old, new, extra)
    noise = {}
    for (unit, reg), g in cmp.groupby(["unit", "regime"], sort=True):
        worst = g.loc[g["abs_rel"].idxmax()]
        noise[f"{unit}|{reg}"] = {
            "pairs": int(len(g)),
            "median_abs_diff_pct": round(100.0 * float(g["abs_rel"].median()), 4),
            "max_abs_diff_pct": round(100.0 * float(worst["abs_rel"]), 4),
            "worst": f"{worst['benchmark']} {worst['params']}",
            "threshold": metrics.implied_threshold(float(worst["abs_rel"])),
        }
    return {
        "about": "A/A noise per card and unit|regime; written by `python -m reports aa A B "
        "--write` (one card per pair); read by reports/metrics.py aa_noise: the floor of "
        "every row's minimum detectable step (what moves between runs). threshold = 1.5 x "
        "max_abs_diff, rounded up to 0.5%.",
        "source": source or {},
        "host_bound_below_ms": metrics.HOST_BOUND_BELOW_MS,
        "noise": noise,
    }


def aa_summary(old: pd.DataFrame, new: pd.DataFrame, extra=()) -> pd.DataFrame:
    """Largest same-commit (A/A) difference per unit and metric, and the threshold it implies.

    Series are matched on benchmark and params (the two runs may carry different machine
    names, e.g. h100-sxm-80gb-aa1 / -aa2). ``flagged_now`` counts the pairs the current
    thresholds would call a regression or improvement: it must be 0.

    When the two sides share commits (e.g. the A side is a machine's whole history and the
    B side a repeat of one of its commits), only those commits are compared, commit by
    commit. ``extra``: further (old, new) pairs pooled with it.
    """
    cmp = _aa_pairs(old, new, extra)
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
