"""The suite's progress events (harness/measure.py writes them as JSON lines to the file
named by ``harness.grid.PROGRESS_ENV``): followed live while asv runs, then the run's
overhead line and its table, built from the suite's own ``record`` events (the runner
reads no asv result file for them).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from harness import grid as grids


class ProgressTail:
    """Prints the suite's progress lines (grids.PROGRESS_ENV file) while asv runs."""

    def __init__(self, path: Path):
        self.path, self.events = path, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        pos, buf = 0, ""
        while True:
            stopping = self._stop.is_set()
            if self.path.exists():
                with open(self.path) as f:
                    f.seek(pos)
                    buf += f.read()
                    pos = f.tell()
                *lines, buf = buf.split("\n")
                for line in lines:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    self.events.append(event)
                    print(f"    [{event.get('tag')}] {event.get('msg')}", flush=True)
            if stopping:
                return
            self._stop.wait(0.5)


def print_overhead(events: list[dict], wall_s: float) -> None:
    """Where the wall time went: measuring vs start-up, imports, compilation, asv's forks."""
    done = [e for e in events if e.get("event") == "class_done"]
    if not done:
        print(f"asv wall time {wall_s:.1f} s", flush=True)
        return
    measure = sum(e["measure_s"] for e in done)
    reference = sum(e["reference_s"] for e in done)
    first = sum(e["first_call_s"] for e in done)
    startup = sum(e.get("startup_s") or 0.0 for e in done)
    outside = wall_s - measure - reference
    cache: dict[str, int] = {}  # what the reference cache did (harness/refcache.py)
    for e in done:
        for k, n in (e.get("ref_cache") or {}).items():
            cache[k] = cache.get(k, 0) + n
    cached = f" ({', '.join(f'{n} {k}' for k, n in sorted(cache.items()))})" if cache else ""
    info = next((e for e in reversed(events) if e.get("event") == "run_info"), {})
    procs = info.get("measuring_processes")
    where = (
        f" in {procs} measuring process{'es' if procs != 1 else ''} and {info.get('asv_runs')} "
        "asv runs"
        if procs
        else ""
    )
    print(
        f"asv wall time {wall_s:.1f} s over {len(done)} classes{where}: timing + memory + parity "
        f"{measure:.1f} s, fp64/math references {reference:.1f} s{cached}; outside measuring "
        f"{outside:.1f} s ({100 * outside / max(wall_s, 1e-9):.0f}%): first calls "
        f"(compile/autotune) {first:.1f} s, process start + imports {startup:.1f} s, "
        f"asv, its per-benchmark processes and the rest {outside - first - startup:.1f} s",
        flush=True,
    )


def _class_of(tag: str) -> tuple[str, str]:
    """A progress tag "<path>/<preset>" -> (path, the preset's asv class name)."""
    path, _, preset = tag.partition("/")
    known = grids.PRESETS.get(preset)
    return path, known.class_name if known is not None else preset


def failures(events: list[dict]) -> int:
    """Failed values among the events: failed records, failed classes, asv runs that said so."""
    n = sum(1 for e in events if (e.get("record") or {}).get("status") == "fail")
    n += sum(1 for e in events if e.get("event") == "class_failed")
    return n or sum(1 for e in events if e.get("event") == "asv_failed")


def _fmt(value, spec: str, width: int) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return format(value, spec).rjust(width) if ok else "-".rjust(width)


def print_table(events: list[dict], title: str = "") -> None:
    """Per family and config: each mode's ms, speedup over math, MiB, TFLOP/s, parity and
    host ms (GPU runs: a host ms near the ms says the row is host time, not kernels), from
    the suite's ``record`` events; a class whose setup_cache failed is one FAILED line."""
    table: dict = {}
    broken: dict = {}
    for e in events:
        if e.get("event") == "record" and e.get("config"):
            family, klass = _class_of(e.get("tag", ""))
            cfg = tuple(e["config"].get(k) for k in grids.PARAM_NAMES[:-1])
            table.setdefault((family, klass, cfg), {})[e["mode"]] = e["record"]
        elif e.get("event") in ("class_failed", "unavailable"):
            broken[_class_of(e.get("tag", ""))] = e.get("msg", "")
    if title:
        print(f"\n{title}")
    order = {f: i for i, f in enumerate(grids.PATHS)}
    for (family, klass), msg in sorted(broken.items()):
        print(f"{family} {klass}: {msg}")
    for (family, klass, cfg), modes in sorted(
        table.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1], kv[0][2])
    ):
        B, H, T, D, dtype, mask = cfg
        print(f"{family} {klass} B{B} H{H} T{T} D{D} {dtype} {mask}")
        print(
            f"    {'mode':<10}{'ms':>10}{'vs math':>9}{'MiB':>10}{'TFLOP/s':>9}{'parity':>8}"
            f"{'host ms':>9}"
        )
        math = modes.get("math") or {}
        math_ms = math.get("ms") if math.get("status") == "ok" else None
        for mode in [m for m in grids.ALL_MODES if m in modes]:
            rec = modes[mode]
            if rec.get("status") != "ok":
                state = "skipped" if rec.get("status") == "skip" else "failed"
                par = rec.get("parity")
                note = f"  (parity {par:.3g})" if isinstance(par, float) else ""
                print(f"    {mode:<10}{state:>10}{note}")
                continue
            ms = rec.get("ms")
            speedup = math_ms / ms if math_ms and ms else None
            print(
                f"    {mode:<10}{_fmt(ms, '.4g', 10)}{_fmt(speedup, '.2f', 8)}x"
                f"{_fmt(rec.get('peak_mib'), '.1f', 10)}{_fmt(rec.get('tflops'), '.3g', 9)}"
                f"{_fmt(rec.get('parity'), '.2f', 8)}{_fmt(rec.get('host_ms'), '.4g', 9)}"
            )
