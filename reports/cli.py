"""Command line: build the report, compare two commits (CI gate), derive thresholds from A/A.

    python -m reports                      # build into report/: CSV, <machine>_latest.txt,
                                           #   plots, HTML
    python -m reports compare A B          # changed benchmarks; exit 1 on a regression
    python -m reports aa DIR_A DIR_B       # largest A/A difference per metric -> thresholds
    python -m reports publish              # asv publish into report/asv_html, offline

A and B are commit prefixes, git refs (HEAD~1, main), "latest", or paths to result folders
or files. Exit codes: 0 fine, 1 regression (compare), 2 bad arguments, 3 no results.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from reports import html, metrics, plots, regress, tables, text
from reports.load import CSV_DROP, CSV_DROP_WHEN_EMPTY, NoResultsError, load_results
from reports.paths import inside, slug

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_NO_RESULTS = 3

log = logging.getLogger("reports")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test capture swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _setup_logging() -> None:
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _parse_overrides(items: list[str] | None) -> dict[str, float]:
    """--threshold ms=3 (percent) -> {"ms": 0.03}."""
    out = {}
    for item in items or []:
        unit, _, pct = item.partition("=")
        try:
            out[unit] = float(pct) / 100.0
        except ValueError as exc:
            raise SystemExit(f"--threshold expects UNIT=PERCENT (e.g. ms=3), got {item!r}") from exc
    return out


def report_machines(df: pd.DataFrame) -> list[str]:
    """Machines shown in the latest/HTML report: all but A/A repeat sets."""
    return sorted(m for m in df["machine"].unique() if not metrics.is_aa_machine(m))


def machine_file_names(machines: list[str]) -> dict[str, str]:
    """Machine -> the name its report files take: the name when it is a safe file name, else
    a slug (reports.paths.slug); distinct for distinct machines."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for machine in machines:
        name, i = slug(machine), 2
        while name in taken:
            name, i = f"{slug(machine)}-{i}", i + 1
        taken.add(name)
        out[machine] = name
    return out


def build(
    results: Path | str = "results",
    out: Path | str = "report",
    repo: Path | str | None = ".",
    baseline: str | None = None,
    commit_url: str | None = None,
    make_plots: bool = True,
    embed_images: bool = False,
    overrides: dict[str, float] | None = None,
    write_parquet: bool = True,
) -> dict:
    """The whole report from ``results`` into ``out``; returns what it wrote and timings."""
    t0 = time.perf_counter()
    out = Path(out)
    loaded = load_results(results, repo=repo)
    df = loaded.df
    timings = {"load": time.perf_counter() - t0}

    t = time.perf_counter()
    changes = regress.history(df, overrides)
    base_commit, base_changes = None, None
    first = df.sort_values("commit_order")["commit"].iloc[0]
    base_ref = baseline or first
    try:
        base_commit = regress.resolve_commit(df, base_ref, repo)
        base_changes = regress.latest_vs(df, base_commit, repo, overrides)
    except regress.CommitNotFound as exc:
        log.warning("baseline: %s", exc)
    timings["regress"] = time.perf_counter() - t

    t = time.perf_counter()
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    written = {"csv": data_dir / "all_results.csv", "changes": data_dir / "changes.csv"}
    tidy = df.drop(columns=[c for c in CSV_DROP if c in df.columns])
    tidy = tidy.drop(
        columns=[c for c in CSV_DROP_WHEN_EMPTY if c in tidy and not tidy[c].astype(bool).any()]
    )
    # 7 significant digits: above asv's own 5 (truncate_float_list) for stats, exact for MiB.
    tidy.to_csv(written["csv"], index=False, float_format="%.7g")
    news = changes[~changes["status"].isin([regress.UNCHANGED])]
    news.drop(columns=["noise_overlap"]).to_csv(
        written["changes"], index=False, float_format="%.7g"
    )
    if write_parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pass
        else:
            written["parquet"] = data_dir / "all_results.parquet"
            tidy.to_parquet(written["parquet"], index=False)
    timings["data"] = time.perf_counter() - t

    machines = report_machines(df)
    file_names = machine_file_names(machines)
    t = time.perf_counter()
    written["text"] = []
    for machine in machines:
        path = inside(out, out / f"{file_names[machine]}_latest.txt")
        try:
            body = text.latest_text(df, machine, changes)
        except Exception as exc:  # one machine's odd data must not cost the whole report
            log.warning(
                "text report of machine %r failed: %s: %s", machine, type(exc).__name__, exc
            )
            body = f"{machine}: the text report failed ({type(exc).__name__}: {exc})\n"
        path.write_text(body, encoding="utf-8")
        written["text"].append(path)
    timings["text"] = time.perf_counter() - t

    t = time.perf_counter()
    plot_files = {}
    if make_plots:
        for machine in machines:
            plot_dir = inside(out, out / "plots" / file_names[machine])
            try:
                plot_files[machine] = plots.machine_plots(df, machine, plot_dir)
            except Exception as exc:  # as above: the report goes on without these plots
                log.warning(
                    "plots of machine %r failed, left out: %s: %s", machine, type(exc).__name__, exc
                )
                plot_files[machine] = []
    timings["plots"] = time.perf_counter() - t

    t = time.perf_counter()
    written["html"] = html.write_html(
        df,
        changes,
        base_changes,
        base_commit,
        machines,
        plot_files,
        out / "html",
        commit_url=commit_url if commit_url is not None else html.github_commit_url(repo),
        embed_images=embed_images,
        overrides=overrides,
        skipped=loaded.skipped,
    )
    timings["html"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {
        "written": written,
        "plots": plot_files,
        "timings": timings,
        "df": df,
        "changes": changes,
        "loaded": loaded,
    }


def _fmt_change(r) -> str:
    return (
        f"  {r.change_pct:+7.1f}%  {r.benchmark}  {r.params}  "
        f"{tables.fmt(r.value_old, '.4g')} -> {tables.fmt(r.value_new, '.4g')} {r.unit}  "
        f"(threshold {r.threshold_pct:.1f}%, {metrics.direction(r.unit)} is better)"
    )


def print_comparison(cmp: pd.DataFrame, title: str, show_all: bool = False) -> None:
    counts = cmp["status"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in counts.index)
    print(f"{title}: {len(cmp)} series: {summary}")
    sections = [
        (regress.REGRESSION, "REGRESSIONS (worse beyond threshold and noise)", "worse_pct"),
        (regress.FAILED, "FAILED (had a value, now failed or skipped)", None),
        (regress.IMPROVEMENT, "IMPROVEMENTS", "worse_pct"),
        (regress.GONE, "MISSING (not measured in the new run)", None),
    ]
    if show_all:
        sections += [
            (regress.NOISE, "WITHIN NOISE (beyond threshold, intervals overlap)", None),
            (regress.NEW, "NEW", None),
        ]
    for status, heading, sort in sections:
        rows = cmp[cmp["status"] == status]
        if rows.empty:
            continue
        if sort:
            rows = rows.sort_values(sort, ascending=status != regress.REGRESSION)
        print(heading)
        for r in rows.itertuples(index=False):
            print(_fmt_change(r))


def _side(ref: str, df: pd.DataFrame | None, repo, machine: str | None):
    """Rows for one side of a comparison: a path (its newest commit per machine) or a commit."""
    path = Path(ref)
    if path.exists():
        rows = load_results(path, repo=repo).df
        newest = rows.groupby("machine")["commit_order"].transform("max")
        rows = rows[rows["commit_order"] == newest]
        label = str(path)
    else:
        if df is None:
            raise NoResultsError(f"{ref!r} is not a path, and no results folder was loaded")
        commit = regress.resolve_commit(df, ref, repo)
        rows = df[df["commit"] == commit]
        label = commit[:8]
    if machine:
        rows = rows[rows["machine"] == machine]
    return rows, label


def compare(
    a: str,
    b: str,
    results="results",
    repo=".",
    machine=None,
    overrides=None,
    show_all=False,
    allow_failed=False,
) -> int:
    needs_df = not (Path(a).exists() and Path(b).exists())
    df = load_results(results, repo=repo).df if needs_df else None
    old, label_a = _side(a, df, repo, machine)
    new, label_b = _side(b, df, repo, machine)
    if old.empty or new.empty:
        print(
            f"nothing to compare: {label_a} has {len(old)} rows, {label_b} {len(new)}"
            + (f" on machine {machine}" if machine else ""),
            file=sys.stderr,
        )
        return EXIT_NO_RESULTS
    same_machines = set(old["machine"]) == set(new["machine"])
    keys = None if same_machines else ["benchmark", "params"]
    if not same_machines and (old["machine"].nunique() > 1 or new["machine"].nunique() > 1):
        print("the two sides hold different sets of machines: pass --machine", file=sys.stderr)
        return EXIT_USAGE
    cmp = regress.compare_frames(old, new, keys=keys, overrides=overrides)
    if keys is not None:
        cmp["machine"] = f"{old['machine'].iloc[0]} vs {new['machine'].iloc[0]}"
    print_comparison(cmp, f"compare {label_a} -> {label_b}", show_all)
    bad = [regress.REGRESSION] + ([] if allow_failed else [regress.FAILED])
    return EXIT_REGRESSION if cmp["status"].isin(bad).any() else EXIT_OK


def aa(a: str, b: str, repo=".") -> int:
    old = load_results(a, repo=repo).df
    new = load_results(b, repo=repo).df
    summary = regress.aa_summary(old, new)
    if summary.empty:
        print("no series measured in both A/A runs", file=sys.stderr)
        return EXIT_NO_RESULTS
    print(f"A/A: {a} vs {b} (same commit measured twice; every difference is noise)")
    print(summary.drop(columns=["worst_benchmark"]).to_string(index=False, float_format="%.3f"))
    print("largest difference per metric:")
    for r in summary.itertuples(index=False):
        print(f"  {r.metric} ({r.unit}): {r.max_abs_diff_pct:.3f}% at {r.worst_benchmark}")
    print("implied thresholds for reports/metrics.py UNIT_RULES (1.5x the largest, to 0.5%):")
    for unit, g in summary.groupby("unit"):
        print(f"  {unit!r}: rel_threshold={g['implied_threshold_pct'].max() / 100:.3f}")
    flagged = int(summary["flagged_now"].sum())
    print(f"current thresholds flag {flagged} of the A/A pairs (must be 0)")
    return EXIT_REGRESSION if flagged else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    _setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")

    def common(p):
        p.add_argument("--results", default="results", help="asv results folder (results/)")
        p.add_argument("--repo", default=".", help="git repository for commit dates and order")
        p.add_argument(
            "--threshold",
            action="append",
            metavar="UNIT=PCT",
            help="override a unit's relative threshold, e.g. ms=3 (repeatable)",
        )

    pb = sub.add_parser("build", help="build the report (the default command)")
    common(pb)
    pb.add_argument("--out", default="report", help="output folder (report/)")
    pb.add_argument("--baseline", help="baseline commit (default: the oldest with results)")
    pb.add_argument(
        "--commit-url",
        help="link format, e.g. https://host/r/commit/{commit}; "
        "default: GitHub from `git remote get-url origin`, else #commit-<id>",
    )
    pb.add_argument("--no-plots", action="store_true")
    pb.add_argument(
        "--embed-images",
        action="store_true",
        help="inline the PNGs in index.html (one file to send around)",
    )
    pc = sub.add_parser(
        "compare", help="compare commit A (old) with B (new); exit 1 on a regression"
    )
    common(pc)
    pc.add_argument("a")
    pc.add_argument("b")
    pc.add_argument("--machine")
    pc.add_argument("--all", action="store_true", help="also list within-noise and new")
    pc.add_argument(
        "--allow-failed",
        action="store_true",
        help="do not fail on benchmarks that stopped producing a value",
    )
    pa = sub.add_parser(
        "aa",
        help="A/A noise: largest difference between two runs of the "
        "same commit, and the thresholds it implies",
    )
    pa.add_argument("a")
    pa.add_argument("b")
    pa.add_argument("--repo", default=".")
    pp = sub.add_parser("publish", help="asv publish into report/asv_html, made offline")
    pp.add_argument("--html-dir", default="report/asv_html")
    pp.add_argument("--config", default="asv.conf.json")

    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["build", *argv]
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            res = build(
                args.results,
                args.out,
                args.repo,
                args.baseline,
                args.commit_url,
                not args.no_plots,
                args.embed_images,
                _parse_overrides(args.threshold),
            )
            loaded, w = res["loaded"], res["written"]
            n_bad = int(res["changes"]["status"].isin(regress.BAD_STATUSES).sum())
            print(
                f"read {loaded.files_read} result files ({len(loaded.skipped)} skipped), "
                f"{len(res['df'])} rows; {n_bad} regressions/failures in the history"
            )
            for path in [w["csv"], w["changes"], *w["text"], w["html"]]:
                print(f"wrote {path}")
            n_plots = sum(len(v) for v in res["plots"].values())
            print(
                f"wrote {n_plots} plot files; took "
                + ", ".join(f"{k} {v:.2f}s" for k, v in res["timings"].items())
            )
            return EXIT_OK
        if args.command == "compare":
            return compare(
                args.a,
                args.b,
                args.results,
                args.repo,
                args.machine,
                _parse_overrides(args.threshold),
                args.all,
                args.allow_failed,
            )
        if args.command == "aa":
            return aa(args.a, args.b, args.repo)
        if args.command == "publish":
            from reports import publish

            return publish.publish(Path(args.html_dir), Path(args.config))
    except NoResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_RESULTS
    except regress.CommitNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.print_help()
    return EXIT_USAGE
