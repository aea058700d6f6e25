"""Command line: build the report, compare two commits (CI gate), derive thresholds from A/A.

    python -m reports                      # build into report/: CSV, <machine>_latest.txt,
                                           #   plots, HTML
    python -m reports compare A B          # changed benchmarks; exit 1 on a regression
    python -m reports aa DIR_A DIR_B       # largest A/A difference per metric -> thresholds
    python -m reports machines A B         # two cards side by side (--out DIR: write it too)
    python -m reports publish              # asv publish into report/asv_html, offline
    python -m reports costs                # what each run cost (results/*/runs.jsonl)

A and B are commit prefixes, git refs (HEAD~1, main), "latest", or paths to result folders
or files. Exit codes: 0 fine, 1 regression, drift or failure (compare), 2 bad arguments
(incl. a commit compared with itself), 3 no results, 4 series missing on the new side
(compare; --allow-missing accepts).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from reports import costs as run_costs
from reports import guard, html, machines, metrics, plots, regress, roofline, tables, text
from reports import rounds as round_rows
from reports.compare_text import print_comparison
from reports.derived import PEAK_FAMILY
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


class _OnceFilter(logging.Filter):
    """Each distinct warning once per process (compare loads the results more than once)."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def _setup_logging() -> None:
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.addFilter(_OnceFilter())
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


def _without_cpu(df: pd.DataFrame, include_cpu: bool) -> pd.DataFrame:
    """The report's rows: CPU runs left out (said on stderr) unless ``include_cpu``."""
    cpu = [] if include_cpu else tables.cpu_machines(df)
    if not cpu:
        return df
    kept = df[~df["machine"].isin(cpu)]
    if kept.empty:
        raise NoResultsError(
            f"only CPU results ({', '.join(cpu)}): the report leaves CPU runs out; "
            "include them with --include-cpu (make report REPORT_CPU=1)"
        )
    log.warning(
        "left out the CPU runs of %s (%d rows); --include-cpu (make REPORT_CPU=1) includes them",
        ", ".join(cpu),
        len(df) - len(kept),
    )
    return kept


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
    include_cpu: bool = False,
) -> dict:
    """The whole report from ``results`` into ``out``; returns what it wrote and timings.
    CPU runs (tables.cpu_machines) are left out unless ``include_cpu``."""
    t0 = time.perf_counter()
    out = Path(out)
    loaded = load_results(results, repo=repo)
    df = _without_cpu(loaded.df, include_cpu)
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

    machines_list = report_machines(df)
    file_names = machine_file_names(machines_list)
    t = time.perf_counter()
    written["text"] = []
    for machine in machines_list:
        path = inside(out, out / f"{file_names[machine]}_latest.txt")
        try:
            body = text.latest_text(df, machine, changes)
        except Exception as exc:  # one machine's odd data must not cost the whole report
            log.warning(
                "text report of machine %r failed: %s: %s", machine, type(exc).__name__, exc
            )
            body = f"{machine}: the text report failed ({type(exc).__name__}: {exc})\n"
        cost = run_costs.cost_line(run_costs.cost_rows(results, machine))
        if cost:  # the run-cost trend: `python -m reports costs` has the table
            body += f"\nRUN COST (runs.jsonl, python -m reports costs): {cost}\n"
        path.write_text(body, encoding="utf-8")
        written["text"].append(path)
    # Machines side by side (issue 17 item 3): every pair of report machines sharing rows.
    for a, b in machines.pairs(df, machines_list):
        path = inside(out, out / machines.file_name(file_names[a], file_names[b]))
        try:
            body = machines.machines_text(df, a, b)
        except Exception as exc:  # as above: one pair's odd data must not cost the report
            log.warning("machines %r vs %r failed: %s: %s", a, b, type(exc).__name__, exc)
            body = f"{a} vs {b}: the table failed ({type(exc).__name__}: {exc})\n"
        path.write_text(body, encoding="utf-8")
        written["text"].append(path)
    timings["text"] = time.perf_counter() - t

    t = time.perf_counter()
    plot_files = {}
    if make_plots:
        for machine in machines_list:
            plot_dir = inside(out, out / "plots" / file_names[machine])
            try:
                plot_files[machine] = plots.machine_plots(df, machine, plot_dir)
            except Exception as exc:  # as above: the report goes on without these plots
                log.warning(
                    "plots of machine %r failed, left out: %s: %s", machine, type(exc).__name__, exc
                )
                plot_files[machine] = []
            try:  # the roofline (reports/roofline.py), listed with the machine's plots
                plot_files[machine] += roofline.machine_roofline(df, machine, plot_dir)
            except Exception as exc:
                log.warning(
                    "roofline of machine %r failed, left out: %s: %s",
                    machine,
                    type(exc).__name__,
                    exc,
                )
    timings["plots"] = time.perf_counter() - t

    t = time.perf_counter()
    written["html"] = html.write_html(
        df,
        changes,
        base_changes,
        base_commit,
        machines_list,
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


EXIT_MISSING = 4  # compare: series of the old side not measured on the new side


def _load_path(path, repo, results="results") -> pd.DataFrame:
    """Rows of a results path; one with no benchmarks.json near it (a result file kept
    outside a results folder) takes the one of ``results``: the units, so the directions."""
    fallback = Path(results) / "benchmarks.json"
    own = guard.find_benchmarks_json(Path(path)) is not None
    meta = fallback if not own and fallback.is_file() else None
    return load_results(path, repo=repo, benchmarks_json=meta).df


def _side(ref: str, df: pd.DataFrame | None, repo, machine: str | None, results="results"):
    """Rows for one side of a comparison: a path (its newest commit per machine,
    :func:`_load_path`) or a commit. Returns (rows, label, commit or None)."""
    path = Path(ref)
    commit = None
    if path.exists():
        rows = _load_path(path, repo, results)
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
    return rows, label, commit


def compare(
    a: str,
    b: str,
    results="results",
    repo=".",
    machine=None,
    overrides=None,
    show_all=False,
    allow_failed=False,
    allow_missing=False,
    drift_window: int = regress.DRIFT_WINDOW,
    rounds: list[tuple[str, str]] | None = None,
) -> int:
    """Exit EXIT_REGRESSION on a regression, drift or failure, EXIT_MISSING on a missing
    series (unless allowed), EXIT_USAGE for a self-comparison, EXIT_OK otherwise.

    ``rounds``: (old, new) result paths of further interleaved rounds of the same two
    sides (runner/compare.py --rounds); each side is judged on all of its rounds
    (reports/rounds.py)."""
    if Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve():
        print(f"error: {a} and {b} are the same results: nothing to compare", file=sys.stderr)
        return EXIT_USAGE
    needs_df = not (Path(a).exists() and Path(b).exists())
    df = load_results(results, repo=repo).df if needs_df else None
    old, label_a, commit_a = _side(a, df, repo, machine, results)
    new, label_b, commit_b = _side(b, df, repo, machine, results)
    if rounds:
        if not all(Path(p).exists() for pair in rounds for p in pair):
            print("error: every round is a results path", file=sys.stderr)
            return EXIT_USAGE
        olds = [old] + [_side(ra, None, repo, machine, results)[0] for ra, _ in rounds]
        news = [new] + [_side(rb, None, repo, machine, results)[0] for _, rb in rounds]
        old = round_rows.combine(olds, regress.SERIES_KEYS)
        new = round_rows.combine(news, regress.SERIES_KEYS)
        label_a, label_b = f"{label_a} (+{len(rounds)})", f"{label_b} (+{len(rounds)})"
    if commit_a is not None and commit_a == commit_b:
        print(
            f"error: {a!r} and {b!r} are the same commit ({label_a}): compare a commit with "
            "another one (e.g. the base branch's)",
            file=sys.stderr,
        )
        return EXIT_USAGE
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
    if commit_b is not None and df is not None and drift_window > 0:
        hist = df[df["machine"].isin(new["machine"].unique())]
        drifted = regress.drift(hist, commit_b, drift_window, overrides)
        drifted = drifted[drifted["status"] == regress.DRIFT]
        if not drifted.empty:
            idx = cmp.set_index(regress.SERIES_KEYS).index
            hit = idx.isin(drifted.set_index(regress.SERIES_KEYS).index)
            calm = ~cmp["status"].isin([*regress.BAD_STATUSES, regress.IMPROVEMENT]).to_numpy()
            repl = drifted.set_index(regress.SERIES_KEYS).reindex(idx[hit & calm])
            cols = ["value_old", "noise_lo_old", "noise_hi_old", "change_pct", "worse_pct"]
            cols += ["threshold_pct", "mdc_pct", "rule", "status"]
            for col in cols:
                cmp.loc[hit & calm, col] = repl[col].to_numpy()
    print_comparison(cmp, f"compare {label_a} -> {label_b}", show_all)
    # The card's ceilings (bench_peak.Peak) are shown, never gated: a slower matmul says the
    # card changed (clocks, another GPU), not the code.
    gated = cmp[cmp["family"] != PEAK_FAMILY] if "family" in cmp.columns else cmp
    ceilings = cmp.loc[cmp.index.difference(gated.index), "status"]
    if ceilings.isin([regress.REGRESSION, regress.DRIFT, regress.FAILED]).any():
        print("note: the card's own ceilings (bench_peak.Peak) moved; they are not gated")
    bad = [regress.REGRESSION, regress.DRIFT] + ([] if allow_failed else [regress.FAILED])
    if gated["status"].isin(bad).any():
        return EXIT_REGRESSION
    if not allow_missing and (gated["status"] == regress.GONE).any():
        print("gate: missing series fail the comparison (--allow-missing to accept)")
        return EXIT_MISSING
    return EXIT_OK


def aa(a: str, b: str, repo=".", write: str | None = None, pairs=()) -> int:
    """``pairs``: further (A, B) result paths, runs of the same kernels and measuring code
    (e.g. rounds kept in tests/data), pooled with A and B."""
    old, new = _load_path(a, repo), _load_path(b, repo)
    extra = [tuple(_load_path(p, repo) for p in pair) for pair in pairs]
    if write:
        commits = sorted(set(old["commit"]) & set(new["commit"])) or sorted(set(new["commit"]))
        source = {"a": str(a), "b": str(b), "commits": [c[:8] for c in commits]}
        if pairs:
            source["pairs"] = [[str(p) for p in pair] for pair in pairs]
        derived = regress.aa_noise_defaults(old, new, source, extra)
        card = metrics.card_of(sorted(old["machine"].unique())[0])
        merged = metrics.merge_aa_defaults(metrics.aa_defaults(write), derived, card)
        Path(write).write_text(metrics.aa_defaults_text(merged, write), encoding="utf-8")
        metrics._read_aa_defaults.cache_clear()
        print(f"wrote {write}: {len(derived['noise'])} unit|regime noise thresholds for {card}")
        for key, v in derived["noise"].items():
            print(
                f"  {key}: {v['pairs']} pairs, max {v['max_abs_diff_pct']:.3f}% -> "
                f"{100 * v['threshold']:.1f}%"
            )
    summary = regress.aa_summary(old, new, extra)
    if summary.empty:
        print("no series measured in both A/A runs", file=sys.stderr)
        return EXIT_NO_RESULTS
    also = f" and {len(pairs)} more pairs" if pairs else ""
    print(f"A/A: {a} vs {b}{also} (same code measured again; every difference is noise)")
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
            help="override a unit's minimum effect, e.g. ms=3 (repeatable)",
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
        "--include-cpu",
        action="store_true",
        help="include CPU runs (machines cpu-*, the CPU preset); left out by default",
    )
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
    pc.add_argument(
        "--allow-missing",
        action="store_true",
        help="do not fail on series the old side has and the new side lacks",
    )
    pc.add_argument(
        "--drift-window",
        type=int,
        default=regress.DRIFT_WINDOW,
        help="also compare B with the median of its last N commits (0: off)",
    )
    pc.add_argument(
        "--round",
        nargs=2,
        action="append",
        metavar=("A2", "B2"),
        help="results of a further interleaved round of A and B (repeatable; paths): "
        "each series is judged on all rounds (reports/rounds.py)",
    )
    pa = sub.add_parser(
        "aa",
        help="A/A noise: largest difference between two runs of the "
        "same commit, and the thresholds it implies",
    )
    pa.add_argument("a")
    pa.add_argument("b")
    pa.add_argument("--repo", default=".")
    pa.add_argument(
        "--write",
        nargs="?",
        const=str(metrics.AA_DEFAULTS_PATH),
        help="write the per unit|regime noise thresholds (default reports/aa_noise.py)",
    )
    pa.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("A2", "B2"),
        default=[],
        help="two more runs of the same kernels and measuring code (paths), pooled with A "
        "and B (repeatable)",
    )
    pm = sub.add_parser(
        "machines",
        help="two machines side by side: same preset/config/mode, ms, %% of each card's own "
        "peak, ratio (newest commit each ran)",
    )
    pm.add_argument("a")
    pm.add_argument("b")
    pm.add_argument("--results", default="results", help="asv results folder (results/)")
    pm.add_argument("--repo", default=".", help="git repository for commit dates and order")
    pm.add_argument("--out", help="also write machines_<a>_vs_<b>.txt into this folder")
    pk = sub.add_parser("costs", help="what each run cost (results/<machine>/runs.jsonl)")
    pk.add_argument("--results", default="results")
    pk.add_argument("--machine")
    pk.add_argument("--last", type=int, default=20, help="runs per machine (0: all)")
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
                include_cpu=args.include_cpu,
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
                args.allow_missing,
                args.drift_window,
                rounds=[tuple(r) for r in args.round or []],
            )
        if args.command == "aa":
            return aa(args.a, args.b, args.repo, args.write, [tuple(p) for p in args.pair])
        if args.command == "machines":
            names = machine_file_names([args.a, args.b])
            return machines.command(args.a, args.b, args.results, args.repo, args.out, names)
        if args.command == "costs":
            rows = run_costs.cost_rows(args.results, args.machine)
            print(run_costs.costs_table(rows, args.last or None), end="")
            return EXIT_OK
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
