"""Split the asv grid into shards, run one shard, and list what is still missing.

The same code drives Modal containers (modal_runner.py) and local GPUs
(runner/local_gpus.py).

Unit of work: one (file, class) pair of the suite, e.g. ``bench_gradgrad.TTT``.
Each class measures all of its params in one ``setup_cache`` process and its
``track_*`` methods only read that cache, so splitting a class over two shards
would measure it twice. A shard is a group of units, run by one ``asv run`` with
one ``--bench`` regex, into its own folder::

    <root>/<commit>/<shard key>/results/...   asv's results_dir for this shard
    <root>/<commit>/<shard key>/shard.json    written LAST: the shard is complete

A folder without ``shard.json`` is a shard that died mid-run: it is cleared and
run again. What is missing for a commit is worked out per unit from the
manifests, so a re-run with a different shard count still skips finished work.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_DIR = REPO_ROOT / "bench_suite"
MANIFEST = "shard.json"
SHARD_RESULTS = "results"

# --- estimated cost of one unit: the one place for it ----------------------------------------
# Used only to balance shards when no earlier run of this machine has measured durations
# (then measured_unit_costs() below wins). Relative numbers, not seconds.
# Family: eager math path at B2 H4 T2048 D128 fp16 on the H100 (docs/baselines.md): forward
# 0.39 ms, forward+backward 1.01 ms (2.6x), grad-grad 3.75 ms (9.6x).
COST_BY_FAMILY = {"bench_forward": 1.0, "bench_backward": 2.6, "bench_gradgrad": 9.6}
# Preset: per config, one unit of fixed cost (compile, autotune, reference, process) plus its
# attention work B*H*Tq*Tk*D*(visible fraction) in units of Seed's (B2 H4 T2048 D128 = 4.3e9),
# for the grids of harness/grid.py PRESETS:
#   Seed  1 config                                           1 + 1          ~ 2
#   TTT   3 configs (D 64/80/96, 1024 over 9216 keys)         3 + 6.3        ~ 9
#   Long  3 configs (T 8K/16K/32K causal, B1 H8 D128)         3 + 168        ~ 170
#   Grid  4 configs (T 4K x D 64/128 x none/causal, B4 H16)   4 + 72         ~ 76
#   Short 4 configs (T 2K x D 64/128 x none/causal, B4 H16)   (4 + 18) / 2   ~ 10
# Short runs 3 of the 7 GPU modes (sdpa, flash, fused; fused alone in gradgrad) and not the
# slow math one, hence about half; an estimate until measured: roughly 30 s of a cold H100
# run over the three files. So Long/gradgrad is the heaviest unit (~46% of the whole GPU
# grid): it alone bounds the wall time of any number of shards. CPU: the small CPU grid, run
# on its own. Measured on the H100 (results/h100-sxm-80gb, 2026-11-25) the table is off:
# compile and autotune dominate, Grid/backward is the heaviest unit (111 s) and
# Long/gradgrad takes 50 s; hence measured costs win wherever they exist.
COST_BY_PRESET = {
    "Seed": 2.0,
    "TTT": 9.0,
    "Long": 170.0,
    "Grid": 76.0,
    "Short": 10.0,
    "CPU": 1.0,
}
DEFAULT_FAMILY_COST = 3.0
DEFAULT_PRESET_COST = 5.0


def estimated_unit_cost(unit: str) -> float:
    family, _, preset = unit.partition(".")
    return COST_BY_FAMILY.get(family, DEFAULT_FAMILY_COST) * COST_BY_PRESET.get(
        preset.split(".")[0], DEFAULT_PRESET_COST
    )


# --- benchmark names and units -------------------------------------------------------------


def unit_of(name: str) -> str:
    """``bench_gradgrad.TTT.track_ms`` -> ``bench_gradgrad.TTT``; a free function is its own unit.

    The suite is flat (bench_suite/bench_<family>.py, one class per preset), so a name with
    three or more dotted parts is module.Class.method.
    """
    parts = name.split(".")
    return ".".join(parts[:-1]) if len(parts) >= 3 else name


def units_regex(units: Sequence[str], bench: str | None = None) -> str:
    """One asv ``--bench`` regex selecting exactly these units (and, if given, ``bench`` too).

    asv ORs repeated --bench options, so the user's filter is ANDed in with a lookahead;
    ``.*?`` lets a filter that starts with ``^`` still anchor at the start of the name.
    """
    if not units:
        raise ValueError("units_regex: no units given")
    alternation = "|".join(re.escape(u) for u in sorted(units))
    guard = f"(?=.*?(?:{bench}))" if bench else ""
    return rf"^{guard}(?:{alternation})(?:\.|\(|$)"


_LIST_BENCHMARKS = r"""
import io, json, sys
from asv_runner.discovery import list_benchmarks
out = io.StringIO()
list_benchmarks(sys.argv[1], out)  # what `asv run` itself discovers, params as asv shows them
print(json.dumps({b["name"]: b.get("params") or [] for b in json.loads(out.getvalue())}))
"""

# A benchmark name -> its params as asv writes them in benchmarks.json (lists of reprs).
Benchmarks = dict[str, list]


def list_benchmarks(
    bench_dir: str | os.PathLike = DEFAULT_BENCH_DIR,
    python: str = sys.executable,
    env: dict | None = None,
) -> Benchmarks:
    """Every asv benchmark in ``bench_dir`` with its params, found by asv's own discovery.

    Runs in a child process: the suite's modules must not clash with modules imported here,
    and whatever the suite imports stays out of this process. Nothing touches a GPU.
    """
    bench_dir = Path(bench_dir).resolve()
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"benchmark folder {bench_dir} does not exist")
    proc = subprocess.run(
        [python, "-c", _LIST_BENCHMARKS, str(bench_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=bench_dir.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark discovery in {bench_dir} failed:\n{proc.stderr[-3000:]}")
    benchmarks = json.loads(proc.stdout.strip().splitlines()[-1])
    if not benchmarks:
        raise RuntimeError(f"no asv benchmarks found in {bench_dir}")
    return dict(sorted(benchmarks.items()))


def asv_selects(regex: str, name: str, params: Sequence[Sequence[str]] = ()) -> bool:
    """asv's own rule (asv/benchmarks.py): a parameterized benchmark is selected when the
    regex matches one of its ``name(p1, p2, ...)`` strings, never its bare name."""
    if not params:
        return re.search(regex, name) is not None
    return any(
        re.search(regex, f"{name}({', '.join(combo)})") for combo in itertools.product(*params)
    )


def select_units(
    benchmarks: Benchmarks | Iterable[str], grid_regex: str | None = None, bench: str | None = None
) -> dict[str, list[str]]:
    """Units -> the benchmark names wanted from each, for a grid and an optional user filter.

    ``benchmarks``: list_benchmarks()' mapping (or bare names: then no params). A name is
    wanted when asv would select it with ``grid_regex`` (the grid's preset classes, from
    runner.asv_run.bench_regex) and with ``bench``.
    """
    if not isinstance(benchmarks, dict):
        benchmarks = {name: [] for name in benchmarks}
    wanted: dict[str, list[str]] = {}
    for name, params in sorted(benchmarks.items()):
        if name == "version":  # benchmarks.json's format marker
            continue
        if grid_regex and not asv_selects(grid_regex, name, params):
            continue
        if bench and not asv_selects(bench, name, params):
            continue
        wanted.setdefault(unit_of(name), []).append(name)
    return wanted


# --- planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    units: tuple[str, ...]
    cost: float = 0.0
    bench: str | None = None  # the user's filter, if any: part of what the shard measured

    @property
    def key(self) -> str:
        """Stable name from the units (and filter), so the same group maps to the same folder."""
        text = "\n".join(sorted(self.units)) + (f"\nbench={self.bench}" if self.bench else "")
        return f"shard-{hashlib.sha1(text.encode()).hexdigest()[:10]}"

    def describe(self) -> str:
        return ", ".join(self.units)


def plan_shards(
    units: Iterable[str],
    n_shards: int,
    costs: dict[str, float] | None = None,
    bench: str | None = None,
) -> list[Shard]:
    """Split units into at most ``n_shards`` groups of balanced estimated cost.

    Longest-processing-time first: take units heaviest first, each into the lightest
    shard so far (within 4/3 of the best split). Deterministic: ties go by name.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    units = sorted(set(units))
    if not units:
        return []
    costs = costs or {}
    cost = {u: float(costs.get(u, estimated_unit_cost(u))) for u in units}
    bins: list[list[str]] = [[] for _ in range(min(n_shards, len(units)))]
    loads = [0.0] * len(bins)
    for unit in sorted(units, key=lambda u: (-cost[u], u)):
        lightest = min(range(len(bins)), key=lambda i: (loads[i], i))
        bins[lightest].append(unit)
        loads[lightest] += cost[unit]
    shards = [Shard(tuple(sorted(b)), load, bench) for b, load in zip(bins, loads, strict=True)]
    return sorted(shards, key=lambda s: (-s.cost, s.units))


def _unit_costs_of_file(data: dict, benchmarks: dict) -> tuple[float, dict[str, float]]:
    """(when the file's newest benchmark started, seconds per unit) of one asv result file.

    Per unit: the ``duration`` of each of its benchmarks plus its ``setup_cache`` duration
    (where this suite does its measuring), matched through results/benchmarks.json. A unit
    whose setup_cache the file does not know under today's key (asv keys it by file and
    line, so an edit of the suite renames it) is left out: without its setup_cache its
    cost would be a fraction of a second.
    """
    columns = data["result_columns"]
    duration_col, started_col = columns.index("duration"), columns.index("started_at")
    durations = data.get("durations", {})
    costs: dict[str, float] = {}
    cache_keys: dict[str, str] = {}  # unit -> its setup_cache under today's benchmarks.json
    newest = 0.0
    for name, row in data.get("results", {}).items():
        unit = unit_of(name)
        seconds = row[duration_col] if len(row) > duration_col else None
        started = row[started_col] if len(row) > started_col else None
        if isinstance(started, (int, float)):
            newest = max(newest, float(started))
        costs[unit] = costs.get(unit, 0.0) + (seconds if isinstance(seconds, (int, float)) else 0.0)
        meta = benchmarks.get(name)
        if isinstance(meta, dict) and meta.get("setup_cache_key"):
            cache_keys[unit] = f"<setup_cache {meta['setup_cache_key']}>"
    for unit, key in cache_keys.items():
        seconds = durations.get(key)
        if isinstance(seconds, (int, float)):
            costs[unit] += seconds
        else:
            del costs[unit]
    return newest, costs


def measured_unit_costs(results_dir: str | os.PathLike, machine: str) -> dict[str, float]:
    """Seconds per unit on ``machine``, each from the newest result file that measured it.

    {} when the machine has no results. Newest by the time the file's benchmarks started
    (file times mean nothing in a fresh clone). Runs of a few presets (``--presets``, an
    interrupted run) then add to the picture instead of hiding the presets they skipped.
    """
    results_dir = Path(results_dir)
    files = [p for p in (results_dir / machine).glob("*.json") if p.name != "machine.json"]
    bench_json = results_dir / "benchmarks.json"
    if not files or not bench_json.is_file():
        return {}
    try:
        benchmarks = json.loads(bench_json.read_text())
    except (ValueError, OSError):
        return {}
    per_file = []
    for path in files:
        try:
            per_file.append(_unit_costs_of_file(json.loads(path.read_text()), benchmarks))
        except (ValueError, KeyError, OSError, TypeError):
            continue
    merged: dict[str, float] = {}
    for _, costs in sorted(per_file, key=lambda item: item[0]):
        merged.update(costs)
    return merged


def base_machine(machine: str) -> str:
    """``h100-sxm-80gb-x2`` -> ``h100-sxm-80gb``: the one-GPU machine of a multi-GPU name."""
    return re.sub(r"-x\d+$", "", machine)


def costs_for(
    units: Iterable[str], results_dir: str | os.PathLike, machine: str
) -> dict[str, float]:
    """Measured seconds when earlier runs measured every unit, else the estimate table.

    The machine's own results first, then its one-GPU machine's (a first run on
    ``<machine>-x<N>`` balances its shards by the one-GPU run's costs). Never a mix of
    measured seconds and estimated units: they are on different scales.
    """
    units = list(units)
    for name in dict.fromkeys((machine, base_machine(machine))):
        measured = measured_unit_costs(results_dir, name)
        if units and all(u in measured for u in units):
            return {u: max(measured[u], 1e-3) for u in units}
    return {u: estimated_unit_cost(u) for u in units}


# --- the shard folders ----------------------------------------------------------------------


def shard_dir(root: str | os.PathLike, commit: str, shard: Shard) -> Path:
    return Path(root) / commit / shard.key


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of a completed shard folder, or None if the shard is not complete."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("units") else None


def completed_shards(root: str | os.PathLike, commit: str) -> dict[Path, dict]:
    """Completed shard folders of a commit -> their manifests."""
    commit_dir = Path(root) / commit
    if not commit_dir.is_dir():
        return {}
    done = {}
    for folder in sorted(p for p in commit_dir.iterdir() if p.is_dir()):
        manifest = read_manifest(folder)
        if manifest is not None:
            done[folder] = manifest
    return done


def serves(manifest: dict, bench: str | None) -> bool:
    """A shard run without a filter serves any run; a filtered one only a run with its filter."""
    return manifest.get("bench") in (None, bench)


def assign_units(manifests: dict, wanted: Iterable[str], bench: str | None = None) -> dict:
    """Wanted unit -> the key of the completed shard its results are taken from.

    Among the shards that serve this run, the newest holding the unit wins, so a unit that
    two shards measured (an earlier filtered run, then a full one) is merged only once.
    """
    usable = sorted(
        ((k, m) for k, m in manifests.items() if serves(m, bench)),
        key=lambda km: (km[1].get("finished_unix", 0.0), str(km[0])),
        reverse=True,
    )
    assigned = {}
    for unit in sorted(set(wanted)):
        for key, manifest in usable:
            if unit in manifest["units"]:
                assigned[unit] = key
                break
    return assigned


def units_by_shard(assigned: dict) -> dict:
    """Invert assign_units: shard key -> the set of units to take from it."""
    grouped: dict = {}
    for unit, key in assigned.items():
        grouped.setdefault(key, set()).add(unit)
    return grouped


def missing_units(wanted: Iterable[str], manifests: dict, bench: str | None = None) -> list[str]:
    """The wanted units that no completed shard serving this run has: what must still run."""
    return sorted(set(wanted) - set(assign_units(manifests, wanted, bench)))


# --- running one shard ----------------------------------------------------------------------


class ShardIncomplete(RuntimeError):
    """asv finished but the shard's results lack benchmarks it should have produced."""


# runner.asv_run.run_commit's signature (tests pass a fake one).
RunCommit = Callable[..., object]
PROGRESS = "progress.jsonl"  # the suite's progress events of the shard (its table)


def default_run_commit() -> RunCommit:
    from runner.asv_run import run_commit  # lazy: asv is only needed where a shard runs

    return run_commit


@dataclass
class ShardResult:
    folder: Path
    manifest: dict
    skipped: bool = False


def run_shard(
    commit: str,
    units: Sequence[str],
    root: str | os.PathLike,
    *,
    machine: str,
    grid: str | None = None,
    bench: str | None = None,
    run_commit: RunCommit | None = None,
    **run_kwargs,
) -> ShardResult:
    """Run one shard of one commit into ``<root>/<commit>/<shard key>/`` unless it is done.

    ``run_commit`` has runner.asv_run.run_commit's signature; ``run_kwargs`` go through to
    it (python, env, worktree, extra_args). The suite's progress events go to
    ``progress.jsonl`` in the folder (:func:`shard_events`). The manifest is written only
    after the result file holds every benchmark the commit's benchmarks.json lists for these
    units, so a folder with a manifest is a finished shard and anything else is redone.
    """
    shard = Shard(tuple(sorted(set(units))), bench=bench)
    folder = shard_dir(root, commit, shard)
    manifest = read_manifest(folder)
    if manifest is not None:
        return ShardResult(folder, manifest, skipped=True)
    if folder.exists():  # a shard that died mid-run: start it clean
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    run_commit = run_commit or default_run_commit()
    regex = units_regex(shard.units, bench)
    started = time.time()
    events: list[dict] = []
    run_commit(
        commit,
        machine=machine,
        results_dir=str(folder / SHARD_RESULTS),
        bench=regex,
        grid=grid,
        events=events,
        **run_kwargs,
    )
    wall_s = time.time() - started
    (folder / PROGRESS).write_text("".join(json.dumps(e) + "\n" for e in events))
    produced, absent = check_shard_output(
        folder / SHARD_RESULTS, machine, commit, shard.units, bench
    )
    manifest = {
        "commit": commit,
        "shard": shard.key,
        "units": list(shard.units),
        "absent_units": absent,
        "bench": bench,
        "bench_regex": regex,
        "grid": grid,
        "machine": machine,
        "result_files": produced,
        "wall_s": round(wall_s, 3),
        "host": platform.node(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished_unix": time.time(),
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)
    return ShardResult(folder, manifest)


def result_files(results_dir: str | os.PathLike) -> list[Path]:
    """asv per-commit result files under an asv results_dir (not machine/benchmarks.json)."""
    results_dir = Path(results_dir)
    return sorted(p for p in results_dir.glob("*/*.json") if p.name != "machine.json")


def check_shard_output(
    results_dir: Path, machine: str, commit: str, units: Sequence[str], bench: str | None
) -> tuple[list[str], list[str]]:
    """Check a shard's asv output; return (result files, units this commit does not have).

    A unit the commit's suite lacks (an older commit of a history run) is recorded as
    absent, not an error; a benchmark of a present unit missing from the results is.
    """
    bench_json = results_dir / "benchmarks.json"
    known = json.loads(bench_json.read_text()) if bench_json.is_file() else {}
    names = {n: b.get("params") or [] for n, b in known.items() if isinstance(b, dict)}
    selected = select_units(names, None, bench)
    expected = {n for u in units for n in selected.get(u, [])}
    absent = sorted(set(units) - {unit_of(n) for n in names})
    files = [p for p in result_files(results_dir) if p.parent.name == machine]
    got: set[str] = set()
    for path in files:
        data = json.loads(path.read_text())
        if not str(data.get("commit_hash", "")).startswith(commit[:8]):
            raise ShardIncomplete(f"{path} is for commit {data.get('commit_hash')}, not {commit}")
        got |= set(data.get("results", {}))
    if not known:
        raise ShardIncomplete(f"asv wrote no benchmarks.json under {results_dir}")
    missing = sorted(expected - got)
    if missing:
        raise ShardIncomplete(
            f"shard of {commit[:8]} ({', '.join(units)}) on machine {machine!r}: "
            f"{len(missing)} benchmarks missing from the results, e.g. {missing[:5]}"
        )
    return [str(p.relative_to(results_dir)) for p in files], absent


def shard_events(folder: str | os.PathLike, units: Collection[str] | None = None) -> list[dict]:
    """The progress events a finished shard recorded, only those of ``units`` if given.

    An event's tag is "<path>/<preset>"; its unit is ``bench_<path>.<preset class>``.
    """
    path = Path(folder) / PROGRESS
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    events = [json.loads(line) for line in lines if line.strip()]
    if units is None:
        return events
    from harness import grid

    def unit(tag: str) -> str:
        family, _, preset = tag.partition("/")
        known = grid.PRESETS.get(preset)
        return f"bench_{family}.{known.class_name if known else preset}"

    return [e for e in events if unit(str(e.get("tag", ""))) in units]
