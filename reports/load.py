"""asv results JSON -> one tidy pandas DataFrame (a row per machine x commit x benchmark x params).

Reads asv's result format version 2 directly (pure JSON, no asv import), as written by
``asv.results.Results.save``:

- ``results/<machine>/<commit8>-<env>.json``: ``commit_hash``, ``date`` (commit date, JS ms),
  ``params`` (``machine`` among them), ``env_name``, ``result_columns`` (e.g. ["result",
  "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
  "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]) and
  ``results``: benchmark name -> a row aligned with ``result_columns``; trailing None columns
  are dropped by asv. ``result`` is flattened row-major over the cross product of ``params``
  (a list of lists of ``repr()`` strings); None or NaN marks a skipped or failed combination.
- ``results/benchmarks.json``: name -> ``param_names``, ``unit``, ``type``.

Commit date and order come from ``git log`` of the repository, else from the file's ``date``.
Bad files (not JSON, truncated, nested too deep, not asv results, not a regular file or over
the caps of reports/guard.py) are skipped with a warning naming them. A value that is not a
measurement (a string "1.5", a negative time, 1e308) is read as NaN, its reason in ``invalid``.
"""

from __future__ import annotations

import ast
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports import derived, guard, metrics
from reports import noise as row_noise
from reports.paths import is_safe_name, slug
from runner.git import GitError, git

log = logging.getLogger("reports")

ASV_RESULTS_API_VERSION = 2
# Parameter names of the project's benchmarks, in contract order (bench_suite contract).
CONTRACT_PARAMS = ("B", "H", "T", "D", "dtype", "mask", "bwd_mode")
# One measured quantity over commits is identified by these columns.
SERIES_KEYS = ["machine", "benchmark", "params"]
STAT_COLUMNS = ("ci_99_a", "ci_99_b", "q_25", "q_75")
PROVENANCE_COLUMNS = row_noise.PROVENANCE_COLUMNS  # where, torch, triton, cuda, driver, ...
# Columns the exported CSV keeps (the in-memory table also has params/config strings, noise
# intervals, subject, env_name, started_at and result_file: derivable or bulky; dropping them
# and writing 7 significant digits cut a 200-commit x 504-series CSV from 46 MB to 21 MB and
# its write time from 2.4 s to 1.1 s on the 2-core CI machine).
CSV_DROP = [
    "commit_short",
    "subject",
    "env_name",
    "params",
    "config",
    "noise_lo",
    "noise_hi",
    "noise_source",
    "started_at",
    "result_file",
    *row_noise.PROVENANCE_COLUMNS,  # per result file, repeated on every row: see the table
]
# Dropped from the CSV only when empty (every value valid), so valid results keep their CSV.
CSV_DROP_WHEN_EMPTY = ["invalid"]


class NoResultsError(RuntimeError):
    """No usable asv result was found; the message says where we looked."""


@dataclass
class LoadedResults:
    df: pd.DataFrame
    files_read: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _skip(skipped: list, path: os.PathLike | str, reason: str) -> None:
    skipped.append((str(path), reason))
    log.warning("skipping %s: %s", path, reason)


def _parse_param_value(text) -> str:
    """asv stores parameter values as repr() strings ("'float16'", "2"); give back str(value)."""
    if not isinstance(text, str):
        return str(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return str(value)


def split_benchmark_name(name: str) -> tuple[str, str, str]:
    """'bench_gradgrad.TTT.track_ms' -> ('gradgrad', 'TTT', 'ms').

    Family is the module (without 'bench_'), preset the class, metric the method (without
    'track_'); names of other shapes keep their dotted parts as given.
    """
    parts = name.split(".")
    method = parts[-1]
    if len(parts) >= 3:
        module, cls = parts[-3], parts[-2]
    elif len(parts) == 2:
        module, cls = parts[0], ""
    else:
        module, cls = "", ""
    family = module[len("bench_") :] if module.startswith("bench_") else module
    metric = method[len("track_") :] if method.startswith("track_") else method
    return family, cls, metric


def split_T(t: str) -> tuple[float, float]:
    """'2048' -> (2048, 2048); '1024/9216' -> (1024, 9216); anything else -> (nan, nan)."""
    try:
        if "/" in t:
            tq, tk = t.split("/", 1)
            return float(int(tq)), float(int(tk))
        return float(int(t)), float(int(t))
    except (TypeError, ValueError):
        return math.nan, math.nan


def _read_json(path: Path, skipped: list, what: str):
    """Parsed JSON of ``path``, or None after a warning naming it."""
    data, reason = guard.read_json(path, what)
    if reason:
        _skip(skipped, path, reason)
    return data


def load_benchmarks_meta(path: Path | None, skipped: list) -> dict[str, dict]:
    if path is None:
        log.warning("no benchmarks.json found: units unknown, every metric read as lower-is-better")
        return {}
    data = _read_json(path, skipped, "an asv benchmarks.json")
    if data is None:
        return {}
    if not isinstance(data, dict):
        _skip(skipped, path, "not an asv benchmarks.json (top level is not an object)")
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _read_result_file(path: Path, skipped: list) -> dict | None:
    data = _read_json(path, skipped, "an asv results file")
    if data is None:
        return None
    if not isinstance(data, dict):
        _skip(skipped, path, "not an asv results file (top level is not an object)")
        return None
    missing = [k for k in ("commit_hash", "result_columns", "results") if k not in data]
    if missing:
        _skip(skipped, path, f"not an asv results file (missing {', '.join(missing)})")
        return None
    if data.get("version") != ASV_RESULTS_API_VERSION:
        _skip(
            skipped,
            path,
            f"asv results format version {data.get('version')!r}, "
            f"expected {ASV_RESULTS_API_VERSION} (re-save it with asv 0.6)",
        )
        return None
    columns = data["result_columns"]
    if (
        not isinstance(columns, list)
        or "result" not in columns
        or not isinstance(data["results"], dict)
        or not isinstance(data["commit_hash"], str)
        or not data["commit_hash"]
    ):
        _skip(skipped, path, "malformed asv results (result_columns / results / commit_hash)")
        return None
    return data


@dataclass
class _Builder:
    """Column lists for the row table plus small lookup tables joined at the end."""

    file_id: list = field(default_factory=list)
    bench_id: list = field(default_factory=list)
    combo_id: list = field(default_factory=list)
    value: list = field(default_factory=list)
    invalid: list = field(default_factory=list)  # per row: why the value is invalid, or ""
    stats: dict = field(default_factory=lambda: {k: [] for k in STAT_COLUMNS})
    n_samples: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    started_at: list = field(default_factory=list)
    files: list = field(default_factory=list)  # per file: dict of file-level columns
    benches: dict = field(default_factory=dict)  # (name, unit, param_names) -> id
    combos: dict = field(default_factory=dict)  # (param_names, values) -> id
    combo_cache: dict = field(default_factory=dict)  # json(params) -> list of value tuples
    n_rows: int = 0


def _combos_for(builder: _Builder, params: list) -> list[tuple[str, ...]]:
    key = json.dumps(params)
    combos = builder.combo_cache.get(key)
    if combos is None:
        parsed = [[_parse_param_value(v) for v in axis] for axis in params]
        combos = list(itertools.product(*parsed))
        builder.combo_cache[key] = combos
    return combos


def _machine_name(path: Path, params: dict, skipped: list) -> str | None:
    machine = params.get("machine") or path.parent.name
    if not isinstance(machine, str):
        _skip(skipped, path, f"machine name is not a string ({type(machine).__name__})")
        return None
    if not is_safe_name(machine):
        why = "is not a safe file name: its report files are named"
        log.warning("%s: machine name %r %s %r", path, machine, why, slug(machine))
    return machine


def _add_file(builder: _Builder, path: Path, data: dict, meta: dict, skipped: list) -> None:
    columns = data["result_columns"]
    col = {name: i for i, name in enumerate(columns) if isinstance(name, str)}
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    machine = _machine_name(path, params, skipped)
    if machine is None:
        return
    file_index = len(builder.files)
    n_rows_before = len(builder.value)
    invalid_here, unknown, bad_dates = [], [], []
    date = data.get("date")
    file_date_ms = guard.timestamp_ms(date)
    if date is not None and math.isnan(file_date_ms):
        bad_dates.append(f"date {date!r:.40}")

    def get(row: list, key: str):
        i = col.get(key)
        return row[i] if i is not None and i < len(row) else None

    for name, row in data["results"].items():
        if not isinstance(row, list):
            _skip(skipped, f"{path}:{name}", "benchmark row is not a list")
            continue
        bench_params = get(row, "params") or []
        if not isinstance(bench_params, list) or not all(isinstance(a, list) for a in bench_params):
            _skip(skipped, f"{path}:{name}", "benchmark params are not a list of lists")
            continue
        n = math.prod(len(axis) for axis in bench_params)  # counted before expanding
        if n > guard.MAX_COMBINATIONS:
            _skip(
                skipped,
                f"{path}:{name}",
                f"{n} parameter combinations, over the cap of {guard.MAX_COMBINATIONS}",
            )
            continue
        result = get(row, "result")
        if result is None:  # asv: every combination failed (e.g. a build failure)
            result = [None] * n
        elif not isinstance(result, list):  # very old files stored a bare number
            result = [result]
        if len(result) != n:
            _skip(
                skipped,
                f"{path}:{name}",
                f"{len(result)} results for {n} parameter combinations",
            )
            continue
        if builder.n_rows + n > guard.MAX_ROWS:
            _skip(skipped, path, f"more than {guard.MAX_ROWS} rows in all: not read")
            break
        combos = _combos_for(builder, bench_params)

        info = meta.get(name, {})
        if meta and name not in meta:
            unknown.append(name)
        names = guard.param_names(info, len(bench_params))
        unit = info.get("unit")
        unit = unit if isinstance(unit, str) else None
        bkey = (name, unit, names)
        bid = builder.benches.setdefault(bkey, len(builder.benches))

        checked = [guard.check_value(v, unit) for v in result]
        values = np.array([v for v, _ in checked], dtype=float)
        why = [w for _, w in checked]
        invalid_here += [f"{name}: {w}" for w in why if w]

        for stat_name in STAT_COLUMNS:
            arr = guard.as_float_array(get(row, "stats_" + stat_name), n)
            builder.stats[stat_name].append(
                guard.clean_stat(arr) if arr is not None else np.full(n, math.nan)
            )
        # n: the samples kept, else asv's stats_repeat (the runner stores n there when it
        # keeps a summary, not the samples: runner/noise.py)
        repeat = guard.as_float_array(get(row, "stats_repeat"), n)
        repeat = guard.clean_stat(repeat) if repeat is not None else np.full(n, math.nan)
        samples = get(row, "samples")
        if not isinstance(samples, list) or len(samples) != n:
            samples = [None] * n
        for s, r in zip(samples, repeat):
            good = isinstance(s, list) and len(s) > 0
            builder.n_samples.append(len(s) if good else int(r) if r >= 0 else 0)
            builder.samples.append(s if good else None)
        started = get(row, "started_at")
        started_ms = guard.timestamp_ms(started)
        if started is not None and math.isnan(started_ms):
            bad_dates.append(f"{name} started_at {started!r:.40}")
        builder.started_at.append(np.full(n, started_ms))
        for combo in combos:
            cid = builder.combos.setdefault((names, combo), len(builder.combos))
            builder.combo_id.append(cid)
        builder.value.append(values)
        builder.invalid += why
        builder.bench_id.append(np.full(n, bid))
        builder.file_id.append(np.full(n, file_index))
        builder.n_rows += n

    for items, what in (
        (unknown, "benchmark(s) not in benchmarks.json (unit unknown)"),
        (invalid_here, "invalid value(s), read as invalid"),
        (bad_dates, "timestamp(s) that are not dates, read as unknown"),
    ):
        if items:
            more = "; ..." if len(items) > 3 else ""
            log.warning("%s: %d %s: %s", path, len(items), what, "; ".join(items[:3]) + more)
    if len(builder.value) == n_rows_before and data["results"]:
        return  # every benchmark in it was malformed and reported
    builder.files.append(
        {
            "machine": machine,
            "commit": data["commit_hash"],
            "env_name": str(data.get("env_name", "")),
            "file_date_s": file_date_ms / 1000.0,
            "result_file": str(path),
            **row_noise.provenance(params),
        }
    )


def git_commit_log(repo: Path | str | None) -> pd.DataFrame:
    """Every commit reachable from any ref: commit, date_s (committer time), subject, git_pos.

    git_pos is the position in ``git log --topo-order`` (0 = newest). Empty when git or the
    repository is not there (a tarball of results): dates then come from the result files.
    """
    empty = pd.DataFrame(
        {"commit": pd.Series(dtype=str), "date_s": [], "subject": pd.Series(dtype=str)}
    )
    if repo is None:
        return empty.assign(git_pos=pd.Series(dtype=int))
    try:
        out = git("log", "--all", "--topo-order", "--format=%H %ct %s", repo=repo, timeout=60)
    except GitError:
        return empty.assign(git_pos=pd.Series(dtype=int))
    rows = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            rows.append((parts[0], float(parts[1]), parts[2] if len(parts) > 2 else ""))
    frame = pd.DataFrame(rows, columns=["commit", "date_s", "subject"])
    frame = frame.drop_duplicates("commit").reset_index(drop=True)
    return frame.assign(git_pos=np.arange(len(frame)))


def order_commits(commits: pd.DataFrame, git_log: pd.DataFrame) -> pd.DataFrame:
    """commits (commit, file_date_s) -> + commit_date_s, subject, in_git, commit_order (0 = oldest).

    Commits git knows keep git's topological order; the others (e.g. results from a branch
    this clone lacks) are slotted in by their result file's date.
    """
    c = commits.drop_duplicates("commit").reset_index(drop=True)
    full = c["commit"].astype(str)
    by_hash = git_log.set_index("commit") if len(git_log) else None
    matched = pd.Series([None] * len(c), dtype=object)
    if by_hash is not None:
        known = set(by_hash.index)
        for i, h in enumerate(full):
            if h in known:
                matched[i] = h
            elif 4 <= len(h) < 40:  # a short hash: unique prefix match
                hits = [k for k in known if k.startswith(h)]
                if len(hits) == 1:
                    matched[i] = hits[0]
    in_git = matched.notna().to_numpy()
    c["in_git"] = in_git
    c["commit_date_s"] = c["file_date_s"]
    c["subject"] = ""
    c["git_pos"] = np.nan
    if in_git.any():
        g = by_hash.loc[matched[in_git].tolist()]
        c.loc[in_git, "commit_date_s"] = g["date_s"].to_numpy()
        c.loc[in_git, "subject"] = g["subject"].to_numpy()
        c.loc[in_git, "git_pos"] = g["git_pos"].to_numpy()
    # Known commits: oldest first by git order. Unknown ones go just before the first known
    # commit that is newer than them (known dates made monotone by a running max).
    known_sorted = c[in_git].sort_values("git_pos", ascending=False)
    known_dates = np.maximum.accumulate(known_sorted["commit_date_s"].fillna(0).to_numpy())
    key = np.zeros(len(c))
    key[known_sorted.index.to_numpy()] = np.arange(len(known_sorted), dtype=float)
    unknown = ~in_git
    if unknown.any():
        dates = c.loc[unknown, "commit_date_s"].fillna(np.inf).to_numpy()
        key[unknown] = np.searchsorted(known_dates, dates, side="right") - 0.5
    c["_key"] = key
    c = c.sort_values(["_key", "commit_date_s", "commit"], na_position="last")
    c["commit_order"] = np.arange(len(c))
    return c.drop(columns=["_key", "git_pos"]).reset_index(drop=True)


def load_results(
    paths: Path | str | Iterable[Path | str] = "results",
    repo: Path | str | None = ".",
    benchmarks_json: Path | str | None = None,
) -> LoadedResults:
    """Read every asv result file under ``paths`` into one tidy DataFrame.

    Columns: machine, commit, commit_short, commit_date (UTC), commit_order (0 = oldest),
    subject, env_name, benchmark, family, preset, metric, unit, direction, one column per
    parameter name (strings; B/H/D/Tq/Tk also numeric), params (canonical "B=2 H=4 ..."),
    config (params without bwd_mode), value, invalid ("" or why the file's value was not a
    valid measurement; value is then NaN), ci_99_a, ci_99_b, q_25, q_75, n_samples,
    samples (JSON text or None), noise_lo, noise_hi, noise_source, started_at, result_file,
    and the file's provenance: where (local/modal), torch, triton, cuda, python_version,
    driver, gpu, gpu_clock_mhz, mem_clock_mhz (PROVENANCE_COLUMNS; None/NaN when absent).
    n_samples: the samples kept, else asv's stats_repeat, else 0. Rates (TFLOP/s, GB/s) are
    rows derived from the times (reports/derived.py), never read from a file.
    Raises NoResultsError when nothing usable is there.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    skipped: list[tuple[str, str]] = []
    builder = _Builder()
    files_read = 0
    for root in paths:
        if not root.exists():
            raise NoResultsError(f"no results: {root} does not exist")
        files = guard.find_result_files(root)
        if not files:
            continue
        meta_path = Path(benchmarks_json) if benchmarks_json else guard.find_benchmarks_json(root)
        meta = load_benchmarks_meta(meta_path, skipped)
        for path in files:
            data = _read_result_file(path, skipped)
            if data is None:
                continue
            files_read += 1
            _add_file(builder, path, data, meta, skipped)
    if not builder.value:
        where = ", ".join(str(p) for p in paths)
        raise NoResultsError(
            f"no asv results found under {where} "
            f"({files_read} result files read, {len(skipped)} skipped): "
            "run `make bench` (or `asv run`) first, or point at a results folder"
        )
    df = _assemble(builder, repo)
    return LoadedResults(df=df, files_read=files_read, skipped=skipped)


def _assemble(builder: _Builder, repo) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "file_id": np.concatenate(builder.file_id),
            "bench_id": np.concatenate(builder.bench_id),
            "combo_id": np.asarray(builder.combo_id),
            "value": np.concatenate(builder.value),
            "invalid": pd.Series(builder.invalid, dtype=object),
            **{k: np.concatenate(v) for k, v in builder.stats.items()},
            "n_samples": np.asarray(builder.n_samples, dtype=int),
            "started_at_ms": np.concatenate(builder.started_at),
        }
    )
    files = pd.DataFrame(builder.files)

    benches = pd.DataFrame(
        [(name, unit, names) for (name, unit, names) in builder.benches],
        columns=["benchmark", "unit", "param_names"],
    )
    parts = [split_benchmark_name(n) for n in benches["benchmark"]]
    benches["family"] = [p[0] for p in parts]
    benches["preset"] = [p[1] for p in parts]
    benches["metric"] = [p[2] for p in parts]
    benches["direction"] = [metrics.direction(u) for u in benches["unit"]]

    combos = _combo_table(builder.combos)

    commits = order_commits(files[["commit", "file_date_s"]], git_commit_log(repo))
    files = files.merge(
        commits[["commit", "commit_date_s", "commit_order", "subject"]], on="commit", how="left"
    )

    df = rows.join(files, on="file_id").join(benches, on="bench_id").join(combos, on="combo_id")
    # rows, files, benches and combos joins keep row positions, so samples line up.
    row_noise.fill_quartiles_from_samples(df, builder.samples)
    df["samples"] = [json.dumps(s) if s is not None else None for s in builder.samples]
    df = row_noise.noise_interval(df)
    df["commit_short"] = df["commit"].str[:8]
    df["commit_date"] = pd.to_datetime(df["commit_date_s"], unit="s", utc=True)
    df["started_at"] = pd.to_datetime(df["started_at_ms"], unit="ms", utc=True)
    df = df.drop(
        columns=[
            "file_id",
            "bench_id",
            "combo_id",
            "param_names",
            "file_date_s",
            "started_at_ms",
        ]
    )
    df = _dedupe(df)
    df = derived.add_rates(df)  # TFLOP/s and GB/s from the times (reports/derived.py)
    return _order_columns(df, combos.columns)


def _combo_table(combos: dict) -> pd.DataFrame:
    records = []
    for names, values in combos:
        rec = dict(zip(names, values))
        rec["params"] = " ".join(f"{k}={v}" for k, v in zip(names, values))
        rec["config"] = " ".join(f"{k}={v}" for k, v in zip(names, values) if k != "bwd_mode")
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    for name in ("B", "H", "D"):  # integers in the contract: numeric in the CSV when all are
        if name in table:
            as_num = pd.to_numeric(table[name], errors="coerce")
            if as_num.notna().sum() == table[name].notna().sum():
                table[name] = as_num.astype("Int64")
    if "T" in table:
        tq_tk = [split_T(t) if isinstance(t, str) else (math.nan, math.nan) for t in table["T"]]
        table["Tq"] = pd.array([a for a, _ in tq_tk], dtype="Float64").astype("Int64")
        table["Tk"] = pd.array([b for _, b in tq_tk], dtype="Float64").astype("Int64")
    return table


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per machine x commit x benchmark x params: the newest run wins (two env files)."""
    keys = ["machine", "commit", "benchmark", "params"]
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        n = int(df.duplicated(keys).sum())
        log.warning(
            "%d duplicate measurements (same machine, commit, benchmark, params): "
            "keeping the newest started_at",
            n,
        )
        df = df.sort_values("started_at", na_position="first").drop_duplicates(keys, keep="last")
    return df


def _order_columns(df: pd.DataFrame, combo_columns) -> pd.DataFrame:
    lead = [
        "machine",
        "commit",
        "commit_short",
        "commit_date",
        "commit_order",
        "subject",
        "env_name",
        "benchmark",
        "family",
        "preset",
        "metric",
        "unit",
        "direction",
    ]
    params = [c for c in CONTRACT_PARAMS if c in combo_columns]
    params += ["Tq", "Tk"] if "Tq" in combo_columns else []
    params += sorted(c for c in combo_columns if c not in params and c not in ("params", "config"))
    tail = [
        "params",
        "config",
        "value",
        "invalid",
        "ci_99_a",
        "ci_99_b",
        "q_25",
        "q_75",
        "n_samples",
        "samples",
        "noise_lo",
        "noise_hi",
        "noise_source",
        "started_at",
        "result_file",
        *row_noise.PROVENANCE_COLUMNS,
    ]
    ordered = lead + params + [c for c in tail if c not in params]
    df = df[[c for c in ordered if c in df.columns]]
    return df.sort_values(["machine", "commit_order", "benchmark", "params"]).reset_index(drop=True)
