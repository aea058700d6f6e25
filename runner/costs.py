"""What a run cost: one JSON line per ``run_commit`` in ``results/<machine>/runs.jsonl``.

Built from the suite's progress events (harness/measure.py; runner/progress.py collects
them), so it costs nothing to measure. A record holds the commit, the presets, the wall
time and where it went (measuring; fp64/math references; first calls: compilation and
autotuning; process start + imports; and the rest: asv, its forks, discovery), the state
of the caches, the date and the host. The rest, ``process_asv_s``, holds the process
start (``startup_s``), the asv processes (``asv_s``), the classes' own time outside
references, first calls and measuring (``class_other_s``), the card's ceilings
(``peak_s``, GPU runs) and what the runner does between them.

Warm or cold (``state``), from the caches *before the run*: the first class of a run
reports how many entries the Triton cache (compiled kernels and autotuning results) and
the reference cache (harness/refcache.py, for this reference code) held when it started,
before anything of the run was compiled or computed (harness.measure.cache_state):

- ``warm``: both held entries; ``cold``: neither did; ``partial``: one of them did;
- ``unknown``: the suite measured says nothing (a commit older than the cache, or a run
  whose classes all failed before starting).

A warm run may still compile a kernel the cache lacks; ``ref_cache`` (hits, misses, ...
of the references, summed over classes) says how warm the references were.

The file is appended to (O_APPEND, one write per line) under the runner's lock on
``results/<machine>`` (runner/integrity.py FolderLock, re-entrant: run_commit holds it);
runner/merge.py and reports/ read only ``*.json`` files, so the ``.jsonl`` is theirs to
ignore. Showing the trend is the reports' job (not done here).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from harness import records
from runner import integrity

RUNS_FILE = "runs.jsonl"
PEAK_TAG = "peak"  # harness.peak.TAG: its progress events' tag


def _presets(events: list[dict]) -> list[str]:
    """The presets measured, in order of first appearance (from the tags "<path>/<preset>")."""
    seen: dict[str, None] = {}
    for e in events:
        tag = e.get("tag") or ""
        if e.get("event") in ("class_start", "class_done", "unavailable", "class_failed"):
            seen.setdefault(tag.partition("/")[2] or tag, None)
    return list(seen)


def cache_state(events: list[dict]) -> tuple[str, dict]:
    """("warm" | "cold" | "partial" | "unknown", the first class's cache counts)."""
    first = next((e for e in events if e.get("event") == "class_start" and e.get("caches")), None)
    if first is None:
        return "unknown", {}
    caches = first["caches"]
    refs, triton = caches.get("refs"), caches.get("triton")
    full = [bool(refs), bool(triton)]
    state = "warm" if all(full) else "cold" if not any(full) else "partial"
    return state, {"refs": refs, "triton": triton}


def _sum(done: Iterable[dict], field: str) -> float:
    return sum(e.get(field) or 0.0 for e in done)


def build_record(
    events: list[dict],
    *,
    commit: str,
    machine: str,
    wall_s: float,
    failed: bool = False,
    interrupted: bool = False,
) -> dict:
    """The cost record of one run from its progress events (see the module docstring)."""
    done = [e for e in events if e.get("event") == "class_done"]
    measure, reference = _sum(done, "measure_s"), _sum(done, "reference_s")
    first, startup = _sum(done, "first_call_s"), _sum(done, "startup_s")
    other = _sum(done, "total_s") - measure - reference - first
    peaks = [e for e in events if e.get("event") == "peak_done"]
    ref_cache: dict[str, int] = {}
    for e in done:
        for k, n in (e.get("ref_cache") or {}).items():
            ref_cache[k] = ref_cache.get(k, 0) + int(n)
    state, before = cache_state(events)
    info = next((e for e in reversed(events) if e.get("event") == "run_info"), {})
    return {
        "commit": commit,
        "machine": machine,
        "presets": _presets(events),
        "classes": len(done),
        "state": state,
        "caches_before": before,
        "ref_cache": ref_cache,
        "wall_s": round(wall_s, 3),
        "measure_s": round(measure, 3),
        # parts of measure_s: the parity checks, the CUDA-graph captures and replays
        "measure_parity_s": round(_sum(done, "parity_s"), 3),
        "measure_graph_s": round(_sum(done, "graph_s"), 3),
        # gc.collect and empty_cache between measurements, in measuring and the rest alike
        "free_memory_s": round(_sum(done, "free_s"), 3),
        "reference_s": round(reference, 3),
        "first_call_s": round(first, 3),
        "startup_s": round(startup, 3),
        # asv, its processes and forks, discovery, imports outside setup_cache, the rest
        "process_asv_s": round(wall_s - measure - reference - first, 3),
        # parts of it: the asv processes' wall time (the runner's clock; None before it
        # was recorded), each class's time outside references, first calls and measuring
        # (inputs, freeing memory, graph capture set-up), the card's ceilings (peak_done)
        "asv_s": info.get("asv_s"),
        "class_other_s": round(other, 3),
        "peak_s": round(_sum(peaks, "total_s"), 3),
        # how many asv runs and measuring processes (harness/worker.py) the run took;
        # None: the classes measured in their setup_caches (an older commit's tree)
        "asv_runs": info.get("asv_runs"),
        "measuring_processes": info.get("measuring_processes"),
        "failed": failed,
        # stopped (Ctrl-C, SIGTERM, a time limit): the presets it finished were merged
        "interrupted": interrupted,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
    }


def append_record(folder: str | os.PathLike, record: dict) -> Path:
    """Append ``record`` as one line to ``folder/runs.jsonl`` under the folder's lock."""
    folder = Path(folder)
    path = folder / RUNS_FILE
    line = (json.dumps(record) + "\n").encode()
    with integrity.FolderLock(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write: a reader never sees half a line of a live writer
        finally:
            os.close(fd)
    return path


def record_run(
    folder: str | os.PathLike,
    events: list[dict],
    *,
    commit: str,
    wall_s: float,
    interrupted: bool = False,
) -> str:
    """Build the run's record, append it to ``folder/runs.jsonl`` (``folder`` is
    results/<machine>) and return the same JSON line for the runner to print last. A
    failure to write is said on stderr, never raised: the run's results are already saved.
    An interrupted run is recorded too (``interrupted``), with what it spent until then."""
    folder = Path(folder)
    failed = any(e.get("event") in ("class_failed", "asv_failed") for e in events)
    record = build_record(
        events,
        commit=commit,
        machine=folder.name,
        wall_s=wall_s,
        failed=failed,
        interrupted=interrupted,
    )
    try:
        append_record(folder, record)
    except (OSError, integrity.LockBusy) as exc:
        print(f"warning: run cost not appended to {folder / RUNS_FILE}: {exc}", file=sys.stderr)
    return json.dumps(record)


def setup_cache_durations(private: Path, events: list[dict]) -> None:
    """asv's setup_cache durations of the classes the measuring process measured (asv only
    read their records: milliseconds) set to what measuring them took (``class_done``
    total_s; ``peak_done`` for the card's ceilings, records.PEAK), in the result files of
    one ``asv run``'s private folder, so runner/shards.py balances shards by real costs."""
    took: dict[str, float] = {}
    for e in events:
        if e.get("event") in ("class_done", "peak_done") and isinstance(
            e.get("total_s"), (int, float)
        ):
            took[e.get("tag", "")] = float(e["total_s"])
    bench_json = private / "benchmarks.json"
    if not took or not bench_json.is_file():
        return
    benchmarks = json.loads(bench_json.read_text())
    keys: dict[str, float] = {}
    for name, meta in benchmarks.items():
        found = records.class_of(name) if isinstance(meta, dict) else None
        if found is not None and meta.get("setup_cache_key"):
            preset, path = found
            tag = PEAK_TAG if found == records.PEAK else f"{path}/{preset}"
            if tag in took:
                keys[f"<setup_cache {meta['setup_cache_key']}>"] = took[tag]
    for file in private.glob("*/*.json"):
        if file.name == "machine.json":
            continue
        data = json.loads(file.read_text())
        durations = data.get("durations")
        if not isinstance(durations, dict):
            continue
        changed = False
        for key, seconds in keys.items():
            if key in durations and durations[key] < seconds:
                durations[key] = round(seconds, 3)
                changed = True
        if changed:
            file.write_text(json.dumps(data))
