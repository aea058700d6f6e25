"""The PR gate: measure the current tree and a base commit on this machine, then compare.

    python -m runner.compare --base main [--presets seed,ttt] [--allow-missing]
    make bench-compare BASE=main [PRESETS=seed,ttt]

1. HEAD (this checkout, uncommitted changes included) is measured with
   ``runner.asv_run.run_commit`` into ``<out>/head`` (default ``build/gate``, gitignored).
2. The base is measured the same way (``run_commit(<base sha>)``, a temporary worktree) into
   ``<out>/base`` -- unless ``results/<machine>/`` already holds a committed result of the
   base commit and its ``machine.json`` names the same torch and triton as this environment:
   then that file is reused (restricted to the benchmarks this run measures).
   With ``--rounds N`` (N > 1) the two are measured N times each, interleaved (HEAD, base,
   HEAD, base, ...; nothing reused) into ``<out>/head``, ``<out>/base``, ``<out>/head-2``,
   ``<out>/base-2``, ...: each side is then judged on all its rounds, with the session's
   own spread of them as the noise (reports/rounds.py).
3. ``python -m reports compare <out>/base <out>/head`` decides (reports/regress.py's rule):
   the exit status is the gate's: 0 pass, 1 regression or failure, 4 a series missing on the
   HEAD side (``--allow-missing``: pass), 2 bad arguments (HEAD is the base), 3 no results.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from runner import git

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLCHAIN_FIELDS = ("torch", "triton")


def committed_result(results_dir: Path, machine: str, sha: str) -> Path | None:
    """The committed asv result of ``sha`` on ``machine``, or None."""
    hits = sorted((Path(results_dir) / machine).glob(f"{sha[:8]}*.json"))
    hits = [p for p in hits if p.name != "machine.json"]
    return hits[-1] if hits else None


def recorded_toolchain(results_dir: Path, machine: str) -> dict:
    """torch/triton versions from results/<machine>/machine.json ({} when absent)."""
    path = Path(results_dir) / machine / "machine.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(data.get(machine), dict):  # asv's ~/.asv-machine.json layout
        data = data[machine]
    return {k: str(data.get(k, "")) for k in TOOLCHAIN_FIELDS}


def current_toolchain(python: str = sys.executable) -> dict:
    from runner.machine import machine_info

    info = machine_info("gate", python)
    return {k: str(info.get(k, "")) for k in TOOLCHAIN_FIELDS}


def _copy_restricted(src: Path, dest_dir: Path, bench_regex: str | None) -> Path:
    """``src`` into ``dest_dir`` keeping only the benchmarks ``bench_regex`` selects."""
    data = json.loads(src.read_text())
    if bench_regex:
        pattern = re.compile(bench_regex)
        data["results"] = {k: v for k, v in data["results"].items() if pattern.search(k)}
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    dest.write_text(json.dumps(data))
    return dest


def _ensure_benchmarks_json(root: Path, results_dir: Path) -> None:
    if not (root / "benchmarks.json").exists() and (results_dir / "benchmarks.json").exists():
        shutil.copy(results_dir / "benchmarks.json", root / "benchmarks.json")


def gate(
    base: str = "main",
    *,
    presets: Sequence[str] | None = None,
    grid: str | None = None,
    machine: str | None = None,
    results_dir: Path | str = REPO_ROOT / "results",
    out: Path | str = REPO_ROOT / "build" / "gate",
    allow_missing: bool = False,
    reuse: bool = True,
    rounds: int = 1,
    python: str = sys.executable,
    run_commit: Callable | None = None,
    toolchain: Callable[[], dict] | None = None,
    resolve: Callable[[str], str] = git.resolve_commit,
    compare: Callable | None = None,
) -> int:
    """Measure HEAD and ``base``, compare; returns the exit status (see the module doc).
    ``rounds`` > 1: HEAD, base, HEAD, base, ... interleaved (no committed base reused), each
    side judged on all of its rounds (reports/rounds.py). ``run_commit``, ``toolchain``,
    ``resolve`` and ``compare`` are injectable (tests)."""
    from reports import cli

    results_dir, out = Path(results_dir), Path(out)
    head_sha, base_sha = resolve("HEAD"), resolve(base)
    if head_sha == base_sha and not git.dirty(REPO_ROOT):
        print(f"error: HEAD is {base} ({base_sha[:8]}): nothing to gate", file=sys.stderr)
        return cli.EXIT_USAGE
    if run_commit is None or machine is None or grid is None:
        from runner import asv_run
        from runner import machine as machine_mod

        run_commit = run_commit or asv_run.run_commit
        machine = machine or machine_mod.machine_name()
        grid = grid or machine_mod.default_grid()
    regex = None
    try:
        from runner.asv_run import bench_regex

        regex = bench_regex(grid, list(presets) if presets else None)
    except Exception as exc:  # an unknown preset: fail before anything runs
        print(f"error: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    if rounds < 1:
        print(f"error: rounds must be at least 1, got {rounds}", file=sys.stderr)
        return cli.EXIT_USAGE
    toolchain = toolchain or (lambda: current_toolchain(python))
    dirs = [(out / "base", out / "head")]
    dirs += [(out / f"base-{r}", out / f"head-{r}") for r in range(2, rounds + 1)]
    for pair in dirs:
        for side in pair:
            shutil.rmtree(side, ignore_errors=True)
    kw = dict(machine=machine, grid=grid, presets=list(presets) if presets else None)

    print(f"gate: measuring HEAD ({head_sha[:8]}) on {machine} into {out / 'head'}", flush=True)
    run_commit("HEAD", results_dir=out / "head", **kw)

    reused = committed_result(results_dir, machine, base_sha) if reuse and rounds == 1 else None
    if reused is not None:
        now, then = toolchain(), recorded_toolchain(results_dir, machine)
        if now != then:
            print(f"gate: not reusing {reused} (toolchain {then} there, {now} here)")
            reused = None
    if reused is not None:
        print(f"gate: base {base} ({base_sha[:8]}): reusing {reused} (same torch/triton)")
        _copy_restricted(reused, out / "base" / machine, regex)
    else:
        print(f"gate: measuring base {base} ({base_sha[:8]}) into {out / 'base'}", flush=True)
        run_commit(base_sha, results_dir=out / "base", **kw)
    for r, (base_dir, head_dir) in enumerate(dirs[1:], 2):
        # interleaved: what drifts during the session lands on both sides
        print(f"gate: round {r}/{rounds}: HEAD into {head_dir}, then base into {base_dir}")
        run_commit("HEAD", results_dir=head_dir, **kw)
        run_commit(base_sha, results_dir=base_dir, **kw)
    for pair in dirs:
        for side in pair:
            _ensure_benchmarks_json(side, results_dir)
    compare = compare or cli.compare
    extra = {"rounds": [(str(b), str(h)) for b, h in dirs[1:]]} if rounds > 1 else {}
    return compare(
        str(out / "base"),
        str(out / "head"),
        repo=str(REPO_ROOT),
        allow_missing=allow_missing,
        **extra,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m runner.compare",
        description="PR gate: measure HEAD and BASE here, exit non-zero on a regression, "
        "failure or missing series.",
    )
    p.add_argument("--base", default="main", help="base commit or ref (default main)")
    p.add_argument("--presets", help="comma-separated presets of the grid, e.g. seed,ttt")
    p.add_argument("--grid", help="default: by hardware")
    p.add_argument("--machine", help="asv machine name (default: machine_name())")
    p.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "gate"))
    p.add_argument("--allow-missing", action="store_true")
    p.add_argument("--no-reuse", action="store_true", help="always measure the base")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure HEAD and the base this many times each, interleaved; each side is "
        "judged on all its rounds, with this session's spread as the noise (default 1)",
    )
    args = p.parse_args(argv)
    presets = [s.strip() for s in (args.presets or "").split(",") if s.strip()] or None
    return gate(
        args.base,
        presets=presets,
        grid=args.grid,
        machine=args.machine,
        results_dir=args.results_dir,
        out=args.out,
        allow_missing=args.allow_missing,
        reuse=not args.no_reuse,
        rounds=args.rounds,
    )


if __name__ == "__main__":
    sys.exit(main())
