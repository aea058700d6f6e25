"""`make bench-gpu GPUS=N`: the suite for one commit, sharded over N local GPUs.

One forked child per shard, pinned to one GPU with CUDA_VISIBLE_DEVICES and in a session
of its own (one signal stops it with its asv and benchmark processes); a GPU takes the
next pending shard when its last one ends (heaviest shards first). Each shard runs
`asv run` into its own folder under .asv/shards/<machine>/<commit>/ (runner/shards.py),
so an interrupted run keeps every finished shard and a re-run does only the rest; a
stopped shard ends its asv, forkserver and benchmark processes (runner.asv_run). The
merge locks results/<machine> (runner/integrity.py) while it writes. When
all shards are done they are merged into results/<machine>/ (runner/merge.py), with
machine = machine_name(n_gpus=N): N GPUs busy at once share one host's CPU, power and
PCIe, so an N-GPU run gets its own history (suffix -xN), and the table is printed from
the shards' own progress records.

    python -m runner.local_gpus [--gpus N] [--shards S] [--commit HEAD] [--preset P] [--bench RE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import selectors
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from runner import asv_run, git, interrupts, merge, progress, shards
from runner.machine import default_grid, machine_name, visible_gpus

DEFAULT_STAGING = shards.REPO_ROOT / ".asv" / "shards"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


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
        grid_regex = asv_run.bench_regex(grid, presets)
    wanted = shards.select_units(shards.list_benchmarks(bench_dir), grid_regex, bench)
    if not wanted:
        raise SystemExit(f"no benchmarks of grid {grid!r} match presets={presets} bench={bench!r}")
    done = shards.completed_shards(staging, commit)
    missing = shards.missing_units(wanted, done, bench)
    costs = shards.costs_for(missing, results_dir, machine)
    return wanted, shards.plan_shards(missing, n_shards, costs, bench)


class _Worker:
    """One shard in a forked child: its own session (so one signal stops it, asv and the
    benchmark processes), pinned to one GPU, its output through a pipe to the parent."""

    def __init__(self, shard: shards.Shard, device: str, log_path: Path, body: Callable):
        self.shard, self.device, self.log_path = shard, device, log_path
        self.started = time.time()
        self._buf = b""
        self._prefix = f"  gpu{device}| ".encode()
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(write_fd, device, body)
        os.close(write_fd)
        self.fd = read_fd
        os.set_blocking(read_fd, False)
        self.log = open(log_path, "wb")  # noqa: SIM115  (closed in finish())

    def pump(self) -> bool:
        """Copy what the child wrote to its log and, prefixed, to this terminal; False at EOF."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                if self._buf:
                    self._write(self._buf + b"\n")
                    self._buf = b""
                return False
            *lines, self._buf = (self._buf + chunk).split(b"\n")
            if lines:
                self._write(b"".join(line + b"\n" for line in lines))

    def _write(self, data: bytes) -> None:
        self.log.write(data)
        self.log.flush()
        out = b"".join(self._prefix + line for line in data.splitlines(True))
        sys.stdout.write(out.decode(errors="replace"))
        sys.stdout.flush()

    def poll(self) -> int | None:
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)

    def finish(self, timeout: float = 5.0) -> None:
        """Copy the rest of the output (at most ``timeout`` s: a leftover grandchild may
        keep the pipe open), then close the pipe and the log."""
        deadline = time.time() + timeout
        while self.pump() and time.time() < deadline:
            select.select([self.fd], [], [], 0.1)
        os.close(self.fd)
        self.log.close()

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def _child(write_fd: int, device: str, body: Callable) -> None:
    code = 1
    try:
        os.setsid()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        # fresh file objects: the inherited ones may hold the parent's unflushed output
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # SIGTERM (the parent stopping this shard) ends it like Ctrl-C: run_commit then
        # stops asv, its forkserver and the benchmark processes (they are in process groups
        # of their own, out of reach of a signal to this one) and removes their temp folders.
        signal.signal(signal.SIGTERM, asv_run._raise_keyboard_interrupt)
        os.environ.update(CUDA_VISIBLE_DEVICES=device, PYTHONUNBUFFERED="1")
        result = body()
        print(json.dumps(result.manifest))
        code = 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def run_shards(
    commit: str,
    todo: list[shards.Shard],
    devices: list[str],
    *,
    machine: str,
    grid: str,
    bench: str | None,
    staging: Path,
    run_commit: shards.RunCommit | None = None,
    worktree: Path | None = None,
) -> list[str]:
    """Run the shards, one child per GPU at a time; return the keys of the shards that failed.

    ``run_commit``: runner.asv_run.run_commit (the default) or a stand-in with its signature.
    """
    total_cost = sum(s.cost for s in todo) or 1.0
    pending = list(todo)  # heaviest first: plan_shards sorts them so
    running: dict[str, _Worker] = {}
    failed: list[str] = []
    index = {s.key: i + 1 for i, s in enumerate(todo)}
    selector = selectors.DefaultSelector()
    kwargs = {"worktree": worktree} if worktree else {}
    stack = contextlib.ExitStack()
    stack.enter_context(interrupts.sticky())  # a Ctrl-C that lands on a fork is not lost
    try:
        while pending or running:
            interrupts.check()
            for device in devices:
                if device in running or not pending:
                    continue
                shard = pending.pop(0)
                folder = shards.shard_dir(staging, commit, shard)
                folder.parent.mkdir(parents=True, exist_ok=True)

                def body(shard=shard):
                    return shards.run_shard(
                        commit,
                        shard.units,
                        staging,
                        machine=machine,
                        grid=grid,
                        bench=bench,
                        run_commit=run_commit,
                        **kwargs,
                    )

                worker = _Worker(shard, device, folder.parent / f"{shard.key}.log", body)
                selector.register(worker.fd, selectors.EVENT_READ, worker)
                running[device] = worker
                log(
                    f"shard {index[shard.key]}/{len(todo)} {shard.key} on GPU {device}: "
                    f"{shard.describe()} (~{100 * shard.cost / total_cost:.0f}% of the work)"
                )
            for key, _ in selector.select(timeout=0.2):
                key.data.pump()
            for device, worker in list(running.items()):
                code = worker.poll()
                if code is None:
                    continue
                del running[device]
                selector.unregister(worker.fd)
                worker.finish()  # the log file is complete before it is read
                shard, took = worker.shard, time.time() - worker.started
                n = f"{index[shard.key]}/{len(todo)}"
                if code == 0:
                    log(f"shard {n} {shard.key} done on GPU {device} in {took:.0f} s")
                else:
                    failed.append(shard.key)
                    text = worker.log_path.read_text(errors="replace")
                    tail = "".join(text.splitlines(True)[-15:])
                    log(
                        f"shard {n} {shard.key} FAILED on GPU {device} (exit {code})"
                        f" after {took:.0f} s; log {worker.log_path}:\n{tail}"
                    )
    except KeyboardInterrupt:
        # Stop each shard's whole process group (worker, asv, benchmark processes), so no
        # orphan keeps a GPU busy; an unfinished shard has no manifest and reruns next time.
        for worker in running.values():
            worker.signal(signal.SIGTERM)
        deadline = time.time() + 60  # each worker gives its asv 10 s, then SIGKILL
        for worker in running.values():
            while worker.poll() is None:
                if time.time() > deadline:
                    worker.signal(signal.SIGKILL)
                    os.waitpid(worker.pid, 0)
                    break
                time.sleep(0.1)
            worker.finish()
        unfinished = [
            s for s in todo if shards.read_manifest(shards.shard_dir(staging, commit, s)) is None
        ]
        log(
            f"interrupted: finished shards stay in {staging / commit}; the same command "
            f"runs only the {len(unfinished)} unfinished ones"
        )
        raise
    finally:
        selector.close()
        stack.close()
    return failed


def main(argv: list[str] | None = None, *, run_commit: shards.RunCommit | None = None) -> int:
    """The CLI; ``run_commit`` replaces runner.asv_run.run_commit (tests)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=int, help="GPUs to use (default: every visible GPU)")
    p.add_argument("--shards", type=int, help="number of shards (default: one per GPU)")
    p.add_argument("--commit", default="HEAD")
    p.add_argument("--repo", type=Path, default=shards.REPO_ROOT, help="git repo of --commit")
    p.add_argument("--grid", help="grid name (default: runner.machine.default_grid())")
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
    p.add_argument("--machine", help="asv machine name (default: machine_name(n_gpus=N))")
    args = p.parse_args(argv)
    args.staging = args.staging.resolve()

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
    commit = git.resolve_commits(args.commit, args.repo)[0]
    grid = args.grid or default_grid()
    machine = args.machine or machine_name(n_gpus=len(devices))
    with contextlib.ExitStack() as stack:
        worktree = None  # HEAD: asv_run measures the checkout itself
        if commit != git.resolve_commit("HEAD", args.repo):
            # one worktree for all shards (asv_run would make one per shard)
            worktree = stack.enter_context(git.worktree(commit, args.repo))
        bench_dir = args.bench_dir
        if worktree and args.bench_dir == shards.DEFAULT_BENCH_DIR:
            bench_dir = worktree / "bench_suite"
        return _run(args, commit, devices, grid, machine, bench_dir, worktree, run_commit)


def _run(args, commit, devices, grid, machine, bench_dir, worktree, run_commit) -> int:
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
            run_commit=run_commit,
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
            events = [e for f, units in taken.items() for e in shards.shard_events(f, units)]
            progress.print_table(events, f"{path.parent.name}/{path.name}")
    if not args.keep_staging:
        shutil.rmtree(staging / commit, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
