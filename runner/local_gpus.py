"""`make bench-gpu GPUS=N`: the suite for one commit, sharded over N local GPUs.

One child process per shard, pinned to one GPU with CUDA_VISIBLE_DEVICES; a GPU takes
the next pending shard when its last one ends (heaviest shards first). Each shard runs
`asv run` into its own folder under .asv/shards/<machine>/<commit>/ (runner/shards.py),
so an interrupted run keeps every finished shard and a re-run does only the rest. When
all shards are done they are merged into results/<machine>/ (runner/merge.py), with
machine = machine_name(n_gpus=N): N GPUs busy at once share one host's CPU, power and
PCIe, so an N-GPU run gets its own history (suffix -xN), and the table is printed.

    python -m runner.local_gpus [--gpus N] [--shards S] [--commit HEAD] [--preset P] [--bench RE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from runner import merge, shards

DEFAULT_STAGING = shards.REPO_ROOT / ".asv" / "shards"
DEFAULT_RUNNER = "runner.asv_run:run_commit"


def visible_gpus() -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`."""
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
    if pinned is not None:
        return [d.strip() for d in pinned.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _asv_run():
    from runner import asv_run  # lazy: the other half of the runner, asv invocation

    return asv_run


def plan(
    commit: str,
    *,
    machine: str,
    grid: str,
    n_shards: int,
    staging: Path,
    results_dir: Path,
    bench_dir: Path,
    presets: list[str] | None,
    bench: str | None,
    grid_regex: str | None = None,
) -> tuple[dict[str, list[str]], list[shards.Shard]]:
    """(wanted units -> expected names, shards still to run) for one commit."""
    if grid_regex is None:
        grid_regex = _asv_run().bench_regex(grid, presets)
    wanted = shards.select_units(shards.list_benchmarks(bench_dir), grid_regex, bench)
    if not wanted:
        raise SystemExit(f"no benchmarks of grid {grid!r} match presets={presets} bench={bench!r}")
    done = shards.completed_shards(staging, commit)
    missing = shards.missing_units(wanted, done, bench)
    costs = shards.costs_for(missing, results_dir, machine)
    return wanted, shards.plan_shards(missing, n_shards, costs, bench)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _copy_output(proc: subprocess.Popen, log_path: Path, prefix: str) -> None:
    """A shard's output into its log file, and onto this terminal with the GPU as prefix."""
    with open(log_path, "w") as log_file:
        for line in proc.stdout:
            log_file.write(line)
            log_file.flush()
            sys.stdout.write(prefix + line)
            sys.stdout.flush()


def run_shards(
    commit: str,
    todo: list[shards.Shard],
    devices: list[str],
    *,
    machine: str,
    grid: str,
    bench: str | None,
    staging: Path,
    runner: str,
    worktree: str | None = None,
) -> list[str]:
    """Run the shards, one child per GPU at a time; return the keys of the shards that failed."""
    total_cost = sum(s.cost for s in todo) or 1.0
    pending = list(todo)  # heaviest first: plan_shards sorts them so
    running: dict[str, tuple] = {}  # device -> (process, shard, start, log, output copier)
    failed: list[str] = []
    index = {s.key: i + 1 for i, s in enumerate(todo)}
    try:
        while pending or running:
            for device in devices:
                if device in running or not pending:
                    continue
                shard = pending.pop(0)
                folder = shards.shard_dir(staging, commit, shard)
                folder.parent.mkdir(parents=True, exist_ok=True)
                log_path = folder.parent / f"{shard.key}.log"
                cmd = [
                    sys.executable,
                    "-m",
                    "runner.local_gpus",
                    "--worker",
                    "--commit",
                    commit,
                    "--units",
                    ",".join(shard.units),
                    "--machine",
                    machine,
                    "--grid",
                    grid,
                    "--staging",
                    str(staging),
                    "--runner",
                    runner,
                ]
                if bench:
                    cmd += ["--bench", bench]
                if worktree:
                    cmd += ["--worktree", worktree]
                env = dict(os.environ, CUDA_VISIBLE_DEVICES=device, PYTHONUNBUFFERED="1")
                proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=shards.REPO_ROOT,
                    text=True,
                    errors="replace",
                    start_new_session=True,  # its own process group: asv and its children
                )
                copier = threading.Thread(
                    target=_copy_output, args=(proc, log_path, f"  gpu{device}| "), daemon=True
                )
                copier.start()
                running[device] = (proc, shard, time.time(), log_path, copier)
                log(
                    f"shard {index[shard.key]}/{len(todo)} {shard.key} on GPU {device}: "
                    f"{shard.describe()} (~{100 * shard.cost / total_cost:.0f}% of the work)"
                )
            time.sleep(0.2)
            for device, (proc, shard, started, log_path, copier) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[device]
                copier.join(timeout=5)  # the log file is complete before it is read
                took = time.time() - started
                n = f"{index[shard.key]}/{len(todo)}"
                if proc.returncode == 0:
                    log(f"shard {n} {shard.key} done on GPU {device} in {took:.0f} s")
                else:
                    failed.append(shard.key)
                    tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-15:])
                    log(
                        f"shard {n} {shard.key} FAILED on GPU {device} (exit {proc.returncode})"
                        f" after {took:.0f} s; log {log_path}:\n{tail}"
                    )
    except KeyboardInterrupt:
        # Stop each shard's whole process group (worker, asv, benchmark processes), so no
        # orphan keeps a GPU busy; an unfinished shard has no manifest and reruns next time.
        for proc, *_ in running.values():
            _signal_group(proc, signal.SIGTERM)
        for proc, *_ in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
        unfinished = [
            s for s in todo if shards.read_manifest(shards.shard_dir(staging, commit, s)) is None
        ]
        log(
            f"interrupted: finished shards stay in {staging / commit}; the same command "
            f"runs only the {len(unfinished)} unfinished ones"
        )
        raise
    return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=int, help="GPUs to use (default: every visible GPU)")
    p.add_argument("--shards", type=int, help="number of shards (default: one per GPU)")
    p.add_argument("--commit", default="HEAD")
    p.add_argument("--repo", type=Path, default=shards.REPO_ROOT, help="git repo of --commit")
    p.add_argument("--grid", help="grid name (default: runner.asv_run.default_grid())")
    p.add_argument("--preset", action="append", help="only these preset classes (repeatable)")
    p.add_argument("--bench", help="only benchmarks matching this regex")
    p.add_argument("--grid-regex", help="units of the grid (default: asv_run.bench_regex)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument(
        "--staging",
        type=Path,
        default=DEFAULT_STAGING,
        help="where shard outputs wait until merged (kept if interrupted)",
    )
    p.add_argument("--bench-dir", type=Path, default=shards.DEFAULT_BENCH_DIR)
    p.add_argument("--keep-staging", action="store_true", help="keep shard folders after merging")
    p.add_argument("--no-table", action="store_true", help="do not print the table at the end")
    p.add_argument(
        "--runner",
        default=DEFAULT_RUNNER,
        help="module:function with runner.asv_run.run_commit's signature (tests)",
    )
    p.add_argument("--machine", help="asv machine name (default: machine_name(n_gpus=N))")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--units", help=argparse.SUPPRESS)
    p.add_argument("--worktree", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.staging = args.staging.resolve()  # workers run from the repo root

    if args.worker:  # one shard, in a child pinned to one GPU by the parent
        result = shards.run_shard(
            args.commit,
            args.units.split(","),
            args.staging,
            machine=args.machine,
            grid=args.grid,
            bench=args.bench,
            run_commit=shards.load_callable(args.runner),
            **({"worktree": args.worktree} if args.worktree else {}),
        )
        print(json.dumps(result.manifest))
        return 0

    devices = visible_gpus()
    if args.gpus is not None:
        if args.gpus < 1:
            p.error(f"--gpus must be >= 1, got {args.gpus}")
        if devices and len(devices) < args.gpus:
            p.error(f"--gpus {args.gpus}, but only GPUs {','.join(devices)} are visible")
        # No GPU at all: ids 0..N-1 as labels, so the N-GPU path runs on a CPU box (CPU grid).
        devices = devices[: args.gpus] if devices else [str(i) for i in range(args.gpus)]
    if not devices:
        p.error("no GPU found (nvidia-smi -L lists none): pass --gpus N (make bench-gpu GPUS=N)")
    n_gpus = len(devices)
    commit = shards.resolve_commits(args.commit, args.repo)[0]
    grid = args.grid or _asv_run().default_grid()
    machine = args.machine or _asv_run().machine_name(n_gpus=n_gpus)
    with _checkout(args.repo, commit) as worktree:
        bench_dir = args.bench_dir
        if worktree and args.bench_dir == shards.DEFAULT_BENCH_DIR:
            bench_dir = Path(worktree) / "bench_suite"
        return _run(args, commit, devices, grid, machine, bench_dir, worktree)


@contextlib.contextmanager
def _checkout(repo: Path, commit: str):
    """None for HEAD (asv_run measures the checkout itself); else one worktree for all shards.

    asv_run would make its own worktree per call at a path named by the commit, which
    parallel shards of one commit would share and remove under each other.
    """
    if commit == shards.resolve_commits("HEAD", repo)[0]:
        yield None
        return
    path = Path(repo) / ".asv" / "worktrees" / f"{commit[:8]}-shards"
    git = ["git", "-C", str(repo), "worktree"]
    subprocess.run(git + ["remove", "--force", str(path)], capture_output=True)
    subprocess.run(git + ["add", "--detach", str(path), commit], check=True, capture_output=True)
    try:
        yield str(path)
    finally:
        subprocess.run(git + ["remove", "--force", str(path)], capture_output=True)


def _run(args, commit, devices, grid, machine, bench_dir, worktree) -> int:
    n_gpus = len(devices)
    staging = args.staging / machine
    wanted, todo = plan(
        commit,
        machine=machine,
        grid=grid,
        n_shards=args.shards or n_gpus,
        staging=staging,
        results_dir=args.results_dir,
        bench_dir=bench_dir,
        presets=args.preset,
        bench=args.bench,
        grid_regex=args.grid_regex,
    )
    n_units = len(wanted)
    log(
        f"commit {commit[:8]}, machine {machine}, grid {grid}: {n_units} units, "
        f"{n_units - sum(len(s.units) for s in todo)} already done, {len(todo)} shards "
        f"on GPUs {','.join(devices)}"
    )
    started = time.time()
    try:
        failed = run_shards(
            commit,
            todo,
            devices,
            machine=machine,
            grid=grid,
            bench=args.bench,
            staging=staging,
            runner=args.runner,
            worktree=worktree,
        )
    except KeyboardInterrupt:
        return 130
    done = shards.completed_shards(staging, commit)
    missing = shards.missing_units(wanted, done, args.bench)
    if failed or missing:
        log(
            f"{len(failed)} shards failed; units not done: {', '.join(missing)}. "
            f"Finished shards are kept in {staging / commit}: run the same command again."
        )
        return 1
    log(f"all shards done in {time.time() - started:.0f} s; merging into {args.results_dir}")
    taken = shards.units_by_shard(shards.assign_units(done, wanted, args.bench))
    report = merge.merge_shards(
        {f / shards.SHARD_RESULTS: units for f, units in taken.items()},
        results_dir=args.results_dir,
    )
    print(report.summary())
    expected = {n for names in wanted.values() for n in names}
    absent = {u for f in taken for u in done[f].get("absent_units", [])}
    expected = {n for n in expected if shards.unit_of(n) not in absent}
    for path in report.written:
        if path.parent.name != machine or not path.name.startswith(commit[:8]):
            continue
        lacking, _ = merge.coverage(path, expected)
        if lacking:
            log(f"{path} lacks {len(lacking)} benchmarks, e.g. {lacking[:5]}")
            return 1
        if not args.no_table:
            _asv_run().print_table(path)
    if not args.keep_staging:
        shutil.rmtree(staging / commit, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
