"""A run's measured records, handed from the measuring process to asv's setup_caches.

Why (issue 20): asv runs every class's ``setup_cache`` in a process of its own, and a
whole GPU grid is 15 classes (preset x forward/backward/grad-grad). Measuring there paid
torch's import, CUDA's start and the first calls (compilation, autotuning, cuBLAS/cuDNN
set-up) 15 times: 53 s of process start and 267 s of first calls on a cold H200. The
runner (runner/asv_run.py) instead has ONE process measure every class of a preset
(harness/worker.py, the same :func:`harness.measure.measure_preset`), which writes each
class's records here; the class's ``setup_cache`` (its text unchanged: asv hashes it)
then finds them through :func:`recorded` and returns them without importing torch.

The card's ceilings (``bench_peak.Peak``, harness/peak.py) go the same way: the measuring
process measures them with the first preset of a GPU run, :func:`class_of` names the
class :data:`PEAK`, and its ``setup_cache`` (``peak.measure()``) returns the records; so
no process of its own imports torch and starts CUDA for ~1.5 s of GPU work.

Layout: ``$BENCH_SUITE_RECORDS/<path>-<preset>.pkl``, in the run's temporary folder (one
folder per commit measured; removed with it). A file is the pickle of ``{"format",
"preset", "path", "kernels_dir", "params", "results" | "failed"}``, written to a temporary
name and renamed: a reader sees the whole file or none.

- ``results``: what measure_preset returned (``{asv param tuple: Record}`` or
  ``{"unavailable": reason}``);
- ``failed``: measure_preset raised; the setup_cache raises :class:`RecordedFailure` with
  the same text, so asv records the class as failed, as when it measured in place.

A file that is absent, unreadable, of another format, measured from another source tree
(``kernels_dir``) or for other asv params is not used: the setup_cache measures in place,
as a plain ``asv run`` (no ``$BENCH_SUITE_RECORDS``) always does.

Standard library only: asv's processes import this (through harness.measure).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import uuid
import warnings
from pathlib import Path

RECORDS_ENV = "BENCH_SUITE_RECORDS"
FORMAT = 1
# (preset, path) of bench_peak.Peak, the one class outside the presets; its params: the ops
PEAK = ("card", "peak")


class RecordedFailure(RuntimeError):
    """The measuring process's measure_preset raised for this class; this is its text."""


def records_dir(env: dict | None = None) -> Path | None:
    env = os.environ if env is None else env
    value = env.get(RECORDS_ENV)
    return Path(value) if value else None


def records_file(root: str | os.PathLike, preset: str, path: str) -> Path:
    return Path(root) / f"{path}-{preset}.pkl"


def kernels_dir() -> str | None:
    """Where ``import kernels`` would load from, without importing it (it imports torch)."""
    try:
        spec = importlib.util.find_spec("kernels")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(os.path.abspath(spec.origin))


def _params(preset: str, path: str) -> list[list]:
    if (preset, path) == PEAK:
        from harness.flops import PEAK_OPS

        return [list(PEAK_OPS)]  # bench_peak.Peak.params
    from harness.grid import asv_params

    return asv_params(preset, path)


def write(root, preset: str, path: str, *, results: dict | None = None, failed: str | None = None):
    """Store one class's records (or its failure) atomically; returns the file."""
    if (results is None) == (failed is None):
        raise ValueError("give results or failed, not both")
    data = {
        "format": FORMAT,
        "preset": preset,
        "path": path,
        "kernels_dir": kernels_dir(),
        "params": _params(preset, path),
    }
    data["results" if results is not None else "failed"] = (
        results if results is not None else failed
    )
    file = records_file(root, preset, path)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.parent / f".{file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    return file


def class_of(benchmark_id: str) -> tuple[str, str] | None:
    """``"bench_forward.Seed.track_ms"`` (or ``"bench_suite.bench_forward.Seed..."``) ->
    ("seed", "forward"): the (preset, path) of one of the suite's preset classes;
    :data:`PEAK` for ``bench_peak.Peak``; else None."""
    from harness.grid import PATHS, PEAK_CLASS, PRESETS

    parts = benchmark_id.split(".")
    if parts and parts[0] == "bench_suite":
        parts = parts[1:]
    if len(parts) < 2 or not parts[0].startswith("bench_"):
        return None
    if ".".join(parts[:2]) == PEAK_CLASS:
        return PEAK
    path = parts[0].removeprefix("bench_")
    preset = next((p.name for p in PRESETS.values() if p.class_name == parts[1]), None)
    return (preset, path) if path in PATHS and preset is not None else None


def available(preset: str, path: str, root=None) -> bool:
    """Whether a records file for this class exists (not whether it is usable)."""
    root = records_dir() if root is None else Path(root)
    return root is not None and records_file(root, preset, path).is_file()


def recorded(preset: str, path: str, root=None) -> dict | None:
    """The class's records measured by this run's measuring process, or None (measure in
    place). Raises :class:`RecordedFailure` when that process's measure_preset raised."""
    root = records_dir() if root is None else Path(root)
    if root is None:
        return None
    file = records_file(root, preset, path)
    try:
        with open(file, "rb") as f:
            data = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 -- unreadable: measure in place instead
        why = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"records {file} unreadable ({why}); measuring", stacklevel=3)
        return None
    why = _mismatch(data, preset, path)
    if why:
        warnings.warn(f"records {file} not used: {why}; measuring", stacklevel=3)
        return None
    if "failed" in data:
        raise RecordedFailure(data["failed"])
    return data["results"]


def _mismatch(data, preset: str, path: str) -> str:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return "another format"
    if (data.get("preset"), data.get("path")) != (preset, path):
        return f"they are {data.get('path')}/{data.get('preset')}"
    here = kernels_dir()
    if data.get("kernels_dir") != here:
        return f"measured with kernels from {data.get('kernels_dir')}, this is {here}"
    if data.get("params") != _params(preset, path):
        return "measured for other asv params"
    if not isinstance(data.get("results"), dict) and not isinstance(data.get("failed"), str):
        return "neither results nor a failure"
    return ""
