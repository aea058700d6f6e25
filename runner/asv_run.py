"""How the asv suite is run: `make bench` (one commit) and `make bench-history` (a range).

    python -m runner.asv_run [--grid gpu|cpu] [--presets seed,ttt] [--results-dir results]
                             [--machine NAME] [--commit HEAD | --range A..B] [--bench REGEX]
                             [--lock-timeout S]

Decisions (docs/design.md traps 6, 9, 10, 12):

- Environment: asv's ``existing`` environment, the python that runs this (or ``--python``),
  with ``--set-commit-hash`` so results are saved; nothing is reinstalled per commit. asv
  would name it after the interpreter's path (host paths, a home directory, in committed
  file names); the runner names it ``existing-py3`` (runner.integrity.ENV_NAME) on every
  machine, ``python`` "3" in the result files.
- results/ (trap 12): asv writes into a private results folder per ``asv run`` (asv
  rewrites benchmarks.json at the start of every run, in place); a finished run is merged
  into ``--results-dir`` by runner.merge: result files and machine.json replaced
  atomically, benchmarks.json merged (other commits' benchmarks stay), conflicts checked
  before anything is written. An interrupt or SIGKILL at any moment leaves results/ as it
  was or as merged, never empty or shrunk. One run per ``results/<machine>`` at a time:
  a flock (runner/integrity.py) held for the whole run; a second run waits, printing who
  holds it, or with ``--lock-timeout S`` gives up after S seconds naming the holder.
- Code under test: asv does not install anything into an existing environment, so the
  benchmarks import ``kernels`` from PYTHONPATH, which this module points at the source
  tree of the commit: the checkout itself for HEAD, else a ``git worktree add --detach``
  of the commit (:func:`runner.git.worktree`, removed afterwards). The worktree's own
  ``bench_suite`` and ``asv.conf.json`` are used too. Each setup_cache logs the folder it
  imported ``kernels`` from.
- Machine: pinned by name (runner/machine.py), its machine file written per run into a
  temporary file (no race between parallel shards, nothing left in ~/.asv-machine.json).
- Measuring (issue 20): one process per commit, ``python -m harness.worker``
  (runner/measurer.py), measures the classes each ``asv run`` selects just before it
  (:func:`chunk_classes`), with the same harness.measure.measure_preset a setup_cache
  runs, then the card's ceilings where that run has them (:func:`chunk_peak`: the first
  of a GPU run; ``bench_peak.Peak`` had kept a process of its own, torch and CUDA started
  for ~1.5 s of GPU work), and leaves the records in the run's temporary folder
  (harness/records.py). The
  classes' setup_caches return them, and runner/asv_inproc.py runs those setup_caches and
  their track_* lookups inside asv's own process: torch is imported, CUDA started and
  each kernel compiled and tuned once per commit instead of once per class (15 in the
  GPU grid), and asv forks nothing for them (it forked 1422 processes for the GPU grid,
  one per benchmark and parameter combination). A commit without harness/worker.py (older
  than this), a class the worker did not reach, or ``BENCH_SUITE_WORKER=0`` measures in
  its setup_cache as before. Triton's cache: a folder per Triton version and card, shared
  by all commits (runner/caches.py).
- Launch: ``--launch-method forkserver`` (20 s instead of 113 s of process start-up on
  the H100 for 12 benchmarks) for whatever asv still runs in processes of its own (an
  older commit's classes, a class the measuring process did not reach); the suite
  touches no GPU at import time.
- Config: a temporary copy of the source tree's asv.conf.json with absolute paths
  (repo, benchmark_dir, results_dir, html_dir, env_dir), so results land in
  ``--results-dir`` whatever tree the suite came from.
- Interruptions: a result is merged only when its ``asv run`` ends. A GPU grid takes
  minutes, so the runner calls ``asv run`` once per preset (:func:`preset_chunks`), each
  after the measuring process measured that preset:
  Ctrl-C, a SIGTERM or a lost machine costs the preset that was running, not the presets
  before it, and the runner says which presets it kept and which to run again. On
  SIGINT/SIGTERM it ends the whole run: asv puts its forkserver (and so the benchmark
  processes) in process groups of their own, so the runner marks asv's environment with a
  per-run token and ends every process carrying it (SIGTERM, SIGKILL after 10 s), found in
  /proc wherever it was re-parented; asv's temporary folders (forkserver sockets) are in
  the runner's own temporary folder, removed with it. asv and its direct children die
  with the runner (PDEATHSIG) even when it is SIGKILLed; so does the measuring process
  (the same token, PDEATHSIG), which is told to exit before the last ``asv run`` (that
  run only reads records) and reaped after it.
- Fixed cost of an ``asv run`` (issue 20; figures in docs/benchmarks.md): discovery runs
  in a commit's first ``asv run`` only, the later ones read its list (runner/
  asv_process.py); in-process lookups hash each benchmark's source once (runner/
  asv_inproc.py). An extra ``asv run`` still costs about 0.6 s on the 2-core dev VM
  (interpreter and imports, asv's git and environment checks, its exit). asv saves a
  commit's result only when a run ends (``Results.load_data`` merges the earlier runs'
  results of the commit into the file; nothing is saved within a run), so one ``asv run``
  per commit would save that and lose every preset measured before an interruption or a
  lost machine: one per preset stays.
- Noise: asv leaves the stats columns of ``track_*`` rows empty; before a run is merged,
  the runner fills them (99% interval of the median, quartiles, n) for the ms, host ms and
  graph ms rows from the suite's record events (runner/noise.py).
- Output: the table at the end is built from the suite's own progress records (the
  PROGRESS_ENV file, read live), not by parsing asv's result JSON again: reports/ is the
  one reader of result files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# BENCH_SUITE_WORKER=0: no measuring process; every class measures in its own setup_cache
WORKER_ENV = "BENCH_SUITE_WORKER"
if str(REPO_ROOT) not in sys.path:  # `python runner/asv_run.py` as well as `-m`
    sys.path.insert(0, str(REPO_ROOT))

from harness import grid as grids  # noqa: E402  (standard library only)
from harness import records  # noqa: E402  (standard library only)
from runner import caches, costs, git, integrity, interrupts, measurer, merge, noise  # noqa: E402
from runner.asv_process import ASV_MAIN as _ASV_MAIN  # noqa: E402
from runner.asv_process import die_with_parent as _die_with_parent  # noqa: E402
from runner.asv_process import run_asv as _run_asv  # noqa: E402
from runner.asv_process import stop_run as _stop_run  # noqa: E402
from runner.machine import default_grid, machine_name, write_machine_file  # noqa: E402
from runner.measurer import Measurer  # noqa: E402
from runner.progress import ProgressTail, failures, print_overhead, print_table  # noqa: E402

# --------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------


def bench_regex(grid: str, presets: Sequence[str] | None = None, *, peak: bool = True) -> str:
    """asv --bench regex selecting the classes of ``grid`` (or of the given presets of it),
    and on a grid of ``PEAK_GRIDS`` (GPU) the card's ceilings, ``bench_peak.Peak``, unless
    ``peak`` is False."""
    if grid not in grids.GRIDS:
        raise ValueError(f"grid must be one of {sorted(grids.GRIDS)}, got {grid!r}")
    chosen = list(grids.GRIDS[grid]) if not presets else [p.strip().lower() for p in presets]
    bad = [p for p in chosen if p not in grids.GRIDS[grid]]
    if bad:
        raise ValueError(f"presets {bad} are not in the {grid} grid {grids.GRIDS[grid]}")
    classes = "|".join(grids.PRESETS[p].class_name for p in chosen)
    families = "|".join(grids.PATHS)
    if peak and grid in grids.PEAK_GRIDS:
        klass = grids.PEAK_CLASS.replace(".", r"\.")
        return rf"^(?:bench_({families})\.({classes})|{klass})\.track_"
    return rf"^bench_({families})\.({classes})\.track_"


# the track_* metrics of the suite's classes: names to try an asv --bench regex on
TRACK_PROBES = ("ms", "tflops", "peak_mib", "parity", "host_ms", "graph_ms")


def chunk_classes(regex: str) -> list[tuple[str, str]]:
    """The suite's preset classes, as (preset, path), that an asv --bench regex selects (a
    class is selected when the regex finds one of its track_* names): what the measuring
    process measures before that ``asv run``. Presets in harness.grid order, then paths."""
    pattern = re.compile(regex)
    return [
        (preset.name, path)
        for preset in grids.PRESETS.values()
        for path in grids.PATHS
        if any(
            pattern.search(f"bench_{path}.{preset.class_name}.track_{metric}")
            for metric in TRACK_PROBES
        )
    ]


def chunk_peak(regex: str) -> bool:
    """Whether an asv --bench regex selects the card's ceilings (``bench_peak.Peak``): the
    measuring process then measures them too, after that run's classes."""
    return re.search(regex, f"{grids.PEAK_CLASS}.track_ms") is not None


def preset_chunks(grid: str, presets: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(preset, --bench regex) per preset of ``grid`` (or of ``presets``): one asv run each.
    The first also measures the card's ceilings (GPU grids): once per commit run."""
    bench_regex(grid, presets)  # the same checks of grid and presets, the same errors
    chosen = list(grids.GRIDS[grid]) if not presets else [p.strip().lower() for p in presets]
    return [(p, bench_regex(grid, [p], peak=i == 0)) for i, p in enumerate(chosen)]


# --------------------------------------------------------------------------------------
# Running asv
# --------------------------------------------------------------------------------------


def load_asv_conf(path: Path) -> dict:
    """asv.conf.json with its full-line // comments removed."""
    text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("//"))
    return json.loads(text)


def _write_run_conf(src: Path, results_dir: Path, tmp: Path) -> Path:
    conf_file = src / "asv.conf.json"
    if not conf_file.is_file():
        raise FileNotFoundError(f"{conf_file} does not exist: this commit has no asv suite")
    conf = load_asv_conf(conf_file)
    conf.update(
        repo=str(REPO_ROOT),
        benchmark_dir=str(src / conf.get("benchmark_dir", "bench_suite")),
        results_dir=str(results_dir),
        html_dir=str(REPO_ROOT / conf.get("html_dir", "report/asv_html")),
        env_dir=str(REPO_ROOT / conf.get("env_dir", ".asv/env")),
    )
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=2))
    return path


def _source_env(src: Path, env: dict | None, progress: Path | None) -> dict:
    """The environment for asv: the source tree first on the benchmarks' import path.

    asv drops PYTHONPATH from the benchmark processes' environment and sets
    ASV_PYTHONPATH as their PYTHONPATH instead.
    """
    run_env = dict(os.environ if env is None else env)
    old = [p for p in run_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    run_env["ASV_PYTHONPATH"] = os.pathsep.join([str(src)] + [p for p in old if p != str(src)])
    # Long presets allocate tens of GiB in varying sizes; on the H100 the default allocator
    # left 14 GiB reserved-but-free and the T=32768 forward ran out of memory. max_memory_
    # allocated (what the suite records) does not depend on this setting.
    run_env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if progress is not None:
        run_env[grids.PROGRESS_ENV] = str(progress)
    return run_env


def run_commit(
    commit: str = "HEAD",
    *,
    machine: str,
    results_dir: str | os.PathLike = "results",
    bench: str | None = None,
    grid: str | None = None,
    python: str = sys.executable,
    env: dict | None = None,
    worktree: str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
    presets: Sequence[str] | None = None,
    events: list[dict] | None = None,
    lock_timeout: float | None = None,
) -> Path:
    """Run the suite for one commit into ``results_dir/<machine>/``; return the result JSON.

    ``bench``: an asv --bench regex, run in one ``asv run``. Without it, one ``asv run``
    per preset of ``grid`` (:func:`default_grid` by default), or of ``presets``
    (:func:`preset_chunks`): an interruption loses only the preset that was running.
    ``worktree``: a checkout of ``commit`` to measure;
    without one, HEAD is measured in this checkout and any other commit in a temporary
    worktree. ``env``: the environment for asv (default os.environ); the source tree goes
    first on the benchmarks' import path (ASV_PYTHONPATH: asv makes it their PYTHONPATH).
    asv's own output streams through; so do the suite's progress lines. ``events``: a list
    that receives the suite's progress events, each with ``"commit": sha`` added
    (:func:`runner.progress.print_table` reads them), plus one ``{"event": "asv_failed"}``
    per ``asv run`` that exited 2 (a benchmark failed). ``lock_timeout``: seconds to wait for
    another writer's lock on ``results_dir/<machine>`` (None: wait, printing who holds it; 0: raise
    runner.integrity.LockBusy at once). asv writes into a private folder; each finished
    ``asv run`` is merged into ``results_dir`` (runner.merge); on Ctrl-C/SIGTERM every
    process of the run is ended before KeyboardInterrupt propagates.
    """
    sha = git.resolve_commit(commit)
    if worktree is None and sha != git.resolve_commit("HEAD"):
        with git.worktree(sha) as wt:
            return run_commit(
                sha,
                machine=machine,
                results_dir=results_dir,
                bench=bench,
                grid=grid,
                python=python,
                env=env,
                worktree=wt,
                extra_args=extra_args,
                presets=presets,
                events=events,
                lock_timeout=lock_timeout,
            )
    src = Path(worktree).resolve() if worktree is not None else REPO_ROOT
    if worktree is None and git.dirty(src, "kernels", "harness", "bench_suite"):
        print(
            f"note: kernels/, harness/ or bench_suite/ has uncommitted changes; they are measured "
            f"and recorded as {sha[:8]}",
            flush=True,
        )
    results_dir = Path(results_dir).resolve()
    chunks = [("--bench", bench)] if bench else preset_chunks(grid or default_grid(), presets)
    python = shutil.which(python) or python
    started = time.time()
    finished: list[str] = []
    broken: list[tuple[str, int]] = []
    written: list[Path] = []
    some_failed = False
    asv_s = 0.0  # the asv processes' wall time (the cost record's asv_s)
    token = uuid.uuid4().hex
    integrity.become_subreaper()
    lock = integrity.FolderLock(results_dir / machine, timeout=lock_timeout, say=_say)
    with lock, tempfile.TemporaryDirectory(prefix="asv-run-") as tmp_name:
        tmp = Path(tmp_name)
        asv_tmp = tmp / "t"  # asv's own temporary folders (forkserver sockets: short paths)
        asv_tmp.mkdir()
        machine_file = write_machine_file(tmp / "asv-machine.json", machine, python)
        progress = tmp / "progress.jsonl"
        run_env = _source_env(src, env, progress)
        run_env[integrity.RUN_TOKEN_ENV] = token
        # Triton's kernels and tunings in a folder of this Triton version and card, shared
        # by every commit and worktree (runner/caches.py); a TRITON_CACHE_DIR set stays
        info = json.loads(machine_file.read_text()).get(machine, {})
        run_env[caches.TRITON_CACHE_ENV] = caches.run_triton_dir(run_env, info)
        caches.scrub_triton_dir(run_env[caches.TRITON_CACHE_ENV], say=_say)  # corrupt JSON out
        meas = _measurer(python, src, run_env, tmp)
        inproc = str(REPO_ROOT / "runner" / "asv_inproc.py") if meas is not None else ""
        with ProgressTail(progress) as tail, contextlib.ExitStack() as stack:
            if meas is not None:
                stack.callback(meas.close)
            stack.enter_context(interrupts.sticky())  # a Ctrl-C on a fork is not lost
            for i, (label, regex) in enumerate(chunks, 1):
                part = f" [{i}/{len(chunks)} {label}]" if len(chunks) > 1 else ""
                print(
                    f"asv run {sha[:8]} on {machine}{part}: --bench '{regex}', kernels from {src}",
                    flush=True,
                )
                # asv writes into a private results folder (it rewrites benchmarks.json
                # there at its start); only a finished run is merged into results_dir.
                private = tmp / f"results-{i}"
                conf = _write_run_conf(src, private, tmp / f"conf-{i}")
                cmd = [
                    python,
                    "-c",
                    _ASV_MAIN,
                    str(machine_file),
                    str(asv_tmp),
                    integrity.PYTHON_LABEL,
                    inproc,
                    str(tmp / "discovered.json"),  # one discovery per commit
                    "run",
                    "--config",
                    str(conf),
                    "-E",
                    f"existing:{python}",
                    "--set-commit-hash",
                    sha,
                    "--machine",
                    machine,
                    "--launch-method",
                    "forkserver",
                    "--bench",
                    regex,
                    *extra_args,
                ]
                try:
                    t_start = time.time()
                    if meas is not None:  # one process measures the classes asv reads
                        meas.measure(chunk_classes(regex), peak=chunk_peak(regex))
                        if i == len(chunks):
                            meas.finish()  # it exits while the last asv run reads
                    t_asv = time.time()
                    code = _run_asv(cmd, src, run_env)
                    asv_s += time.time() - t_asv
                    interrupts.check()  # one that asv's start (a fork) swallowed
                    # where a preset's seconds go: the measuring process, then asv itself
                    # (discovery, its own processes, the track lookups, writing results)
                    print(
                        f"asv run {i}/{len(chunks)} {label}: measuring process "
                        f"{t_asv - t_start:.1f} s, asv {time.time() - t_asv:.1f} s",
                        flush=True,
                    )
                    if code in (0, 2):  # 2: results saved, some benchmarks failed
                        measured = noise.read_events(progress)
                        # the noise of each timing into asv's stats columns (runner/noise.py)
                        noise.fill_results_dir(private, measured)
                        costs.setup_cache_durations(private, measured)
                        written += _merge_private(private, results_dir, machine)
                except KeyboardInterrupt:  # Ctrl-C, or SIGTERM via main()'s handler
                    _stop_run(token)
                    _report_interrupted(sha, machine, grid, results_dir, chunks, finished, label)
                    # what the run spent until now (runs.jsonl), the finished presets named
                    started_procs = meas.started if meas is not None else None
                    info = {
                        "asv_runs": i,
                        "measuring_processes": started_procs,
                        "asv_s": round(asv_s, 3),
                    }
                    tail.events.append({"event": "run_info", **info})
                    costs.record_run(
                        results_dir / machine,
                        tail.events,
                        commit=sha,
                        wall_s=time.time() - started,
                        interrupted=True,
                    )
                    raise
                if code in (0, 2):
                    finished.append(label)
                    if code == 2:
                        some_failed = True
                        tail.events.append({"event": "asv_failed", "tag": label, "commit": sha})
                else:
                    broken.append((label, code))
        wall_s = time.time() - started
        tail.events.append(
            {
                "event": "run_info",
                "asv_runs": len(chunks),
                "measuring_processes": meas.started if meas is not None else None,
                "asv_s": round(asv_s, 3),
            }
        )
        cost = costs.record_run(results_dir / machine, tail.events, commit=sha, wall_s=wall_s)
    if events is not None:
        events.extend({**e, "commit": sha} for e in tail.events)
    if broken:
        saved = f"; {', '.join(finished)} saved" if finished else ""
        what = ", ".join(f"{label} (exit {code})" for label, code in broken)
        raise RuntimeError(f"asv run failed for {sha[:8]}: {what}{saved}")
    result = _result_file(written, sha, results_dir / machine)
    if some_failed:
        print(
            f"note: some benchmarks of {sha[:8]} FAILED (a parity failure or an error); "
            f"they are recorded as failed in {result}",
            flush=True,
        )
    print_overhead(tail.events, wall_s)
    print(cost, flush=True)  # the run's cost record (runner/costs.py), as appended
    return result


def _measurer(python: str, src: Path, run_env: dict, tmp: Path) -> Measurer | None:
    """The run's measuring process (runner/measurer.py; started on first use), and the
    records folder in ``run_env`` for asv's setup_caches; None for a tree without it (an
    older commit) or with BENCH_SUITE_WORKER=0: each class measures in its setup_cache."""
    if run_env.get(WORKER_ENV, "1") == "0" or not measurer.supported(src):
        run_env.pop(records.RECORDS_ENV, None)
        return None
    run_env[records.RECORDS_ENV] = str(tmp / "records")
    worker_env = dict(run_env, PYTHONPATH=run_env["ASV_PYTHONPATH"])
    worker_env.pop(records.RECORDS_ENV)
    return Measurer(
        python, src, worker_env, tmp / "records", tmp / "measure.log",
        preexec_fn=_die_with_parent, say=_say,
    )  # fmt: skip


def _say(message: str) -> None:
    print(message, flush=True)


def _merge_private(private: Path, results_dir: Path, machine: str) -> list[Path]:
    """Merge one finished ``asv run``'s private results folder into ``results_dir`` (locked,
    atomic, conflicts checked first: runner.merge); returns the result files written."""
    if list(private.glob("*/*.json")) and any(
        p.name != "machine.json" for p in private.glob("*/*.json")
    ):
        report = merge.merge_shards([private], results_dir, replace_machine_files=True, say=_say)
        return report.written
    merge.merge_benchmarks_json(results_dir, [private / "benchmarks.json"], say=_say)
    return []


def _report_interrupted(sha, machine, grid, results_dir, chunks, finished, running) -> None:
    """What an interrupted run kept, and the command that measures the rest."""
    rest = [label for label, _ in chunks if label not in finished]
    kept = ", ".join(finished) if finished else "nothing"
    print(
        f"\ninterrupted while measuring {running} of {sha[:8]}: kept {kept} "
        f"(merged into {results_dir / machine}); lost the part that was running "
        f"(results/ untouched by it).",
        flush=True,
    )
    if rest and all(label != "--bench" for label in rest):
        print(
            f"measure the rest with: python -m runner.asv_run --commit {sha[:8]} "
            f"--grid {grid or default_grid()} --presets {','.join(rest)} --machine {machine}",
            flush=True,
        )


def _result_file(written: list[Path], sha: str, folder: Path) -> Path:
    mine = [p for p in written if p.name.startswith(sha[:8])]
    if not mine:
        raise RuntimeError(f"asv run wrote no result for {sha[:8]} under {folder}")
    return mine[-1]


def run_history(
    range_spec: str,
    *,
    machine: str,
    results_dir: str | os.PathLike = "results",
    bench: str | None = None,
    grid: str | None = None,
    python: str = sys.executable,
    env: dict | None = None,
    extra_args: Sequence[str] = (),
    presets: Sequence[str] | None = None,
    events: list[dict] | None = None,
    lock_timeout: float | None = None,
) -> list[Path]:
    """One result file per commit of ``range_spec``, each measured from its own worktree.

    The environment (torch, triton) stays the same for all; commits without an asv suite
    are reported and skipped.
    """
    paths = []
    commits = git.resolve_commits(range_spec)
    for i, sha in enumerate(commits, 1):
        print(f"=== {i}/{len(commits)}: {sha[:8]} {git.subject(sha)}", flush=True)
        with git.worktree(sha) as wt:
            if not (wt / "asv.conf.json").is_file() or not (wt / "bench_suite").is_dir():
                print(f"skipping {sha[:8]}: it has no asv.conf.json / bench_suite", flush=True)
                continue
            paths.append(
                run_commit(
                    sha,
                    machine=machine,
                    results_dir=results_dir,
                    bench=bench,
                    grid=grid,
                    python=python,
                    env=env,
                    worktree=wt,
                    extra_args=extra_args,
                    presets=presets,
                    events=events,
                    lock_timeout=lock_timeout,
                )
            )
    return paths


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m runner.asv_run",
        description="Run the asv suite for one commit (default HEAD) or a range of commits.",
    )
    p.add_argument("--grid", choices=sorted(grids.GRIDS), help="default: by hardware")
    p.add_argument("--presets", help="comma-separated presets of the grid, e.g. seed,ttt")
    p.add_argument("--bench", help="an asv --bench regex instead of --grid/--presets")
    p.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    p.add_argument("--machine", help="asv machine name (default: machine_name())")
    p.add_argument("--python", default=sys.executable, help="the existing environment")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--commit", default="HEAD")
    group.add_argument("--range", dest="range_spec", help="A..B: one result file per commit")
    p.add_argument(
        "--lock-timeout",
        type=float,
        help="seconds to wait for another run's lock on results/<machine> (default: wait; "
        "0: fail at once, naming the holder)",
    )
    p.add_argument("asv_args", nargs="*", help="after --: passed to asv run (e.g. --quick)")
    args = p.parse_args(argv)
    grid = args.grid or default_grid()
    presets = [s for s in (args.presets or "").split(",") if s.strip()] or None
    if not args.bench:
        bench_regex(grid, presets)  # bad presets fail here, before anything runs
    machine = args.machine or machine_name()
    events: list[dict] = []
    kw = dict(
        machine=machine,
        results_dir=args.results_dir,
        bench=args.bench,
        grid=grid,
        python=args.python,
        extra_args=args.asv_args,
        presets=presets,
        events=events,
        lock_timeout=args.lock_timeout,
    )
    # A SIGTERM (timeout, a job scheduler) ends the run like Ctrl-C: asv is stopped and
    # the presets that finished stay saved (run_commit says which ones are missing).
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if args.range_spec:
            paths = run_history(args.range_spec, **kw)
        else:
            paths = [run_commit(args.commit, **kw)]
    except KeyboardInterrupt:
        return 130
    except (integrity.LockBusy, merge.MergeConflict) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    for path in paths:
        mine = [e for e in events if path.name.startswith(str(e.get("commit"))[:8])]
        print_table(mine, f"{path.parent.name}/{path.name}")
    failed = failures(events)
    if failed:
        print(f"{failed} failures (records, classes or asv runs; see above): exit status 2")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
