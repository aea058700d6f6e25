"""Bounds and checks for hostile input: what the loader reads, and which values it believes.

Result files come from anyone's machine (a Modal shard, a copied folder). One bad file must
cost a warning, never the report: ``read_capped`` reads regular files of bounded size only
(a FIFO would hang, /dev/zero fill memory), ``read_json`` turns every parse failure (nesting
100,000 deep included) into a reason, ``check_value`` says which result values are
measurements (a string "1.5", a negative time or 1e308 is not).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from reports import metrics

# JSON files of a results folder that are not result files.
SKIP_FILES = {"machine.json", "benchmarks.json"}
# Hostile input bounds. The committed result files are under 40 KB, benchmarks.json ~150 KB:
# a file beyond the cap is skipped unread.
MAX_FILE_BYTES = 64 * 1024 * 1024
# Parameter combinations of one benchmark (the product of its axes' lengths), checked before
# expanding: a 2 KB file whose seven axes hold 40 values each names 40**7 of them.
MAX_COMBINATIONS = 100_000
# Rows of the whole table: past this, further files are skipped (a 200-commit x 500-series
# history is 100,000 rows).
MAX_ROWS = 5_000_000
# A measurement above this (in any unit: ms, MiB, TFLOP/s, bytes, ...) is not a measurement.
MAX_ABS_VALUE = 1e15
# Units whose values are never negative (times, memory, rates, error ratios).
NON_NEGATIVE_UNITS = frozenset(metrics.UNIT_RULES)
# Timestamps (JS ms since 1970) outside [0, year 9999) are not dates: read as unknown.
MAX_TIMESTAMP_MS = 253_402_300_799_000.0
# Column names the table uses itself: a benchmark parameter may not take one of them.
RESERVED_COLUMNS = frozenset(
    {
        "machine", "commit", "commit_short", "commit_date", "commit_order", "subject",
        "env_name", "benchmark", "family", "preset", "metric", "unit", "direction", "params",
        "config", "value", "invalid", "n_samples", "samples", "noise_lo", "noise_hi",
        "noise_source", "started_at", "result_file", "Tq", "Tk", "ci_99_a", "ci_99_b", "q_25",
        "q_75",
    }
)  # fmt: skip


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value(v, unit: str | None) -> tuple[float, str]:
    """One result value -> (value, why it is invalid or ""). None/NaN is a failure, not
    invalid: asv's mark of a skipped or failed combination."""
    if v is None:
        return math.nan, ""
    if not is_number(v):
        text = repr(v)
        return math.nan, f"not a number: {text[:40]}{'...' if len(text) > 40 else ''}"
    try:
        x = float(v)
    except OverflowError:  # an integer literal beyond float range
        return math.nan, "out of range"
    if math.isnan(x):
        return math.nan, ""
    if not math.isfinite(x) or abs(x) > MAX_ABS_VALUE:
        return math.nan, f"out of range: {x:g}"
    if x < 0 and unit in NON_NEGATIVE_UNITS:
        return math.nan, f"negative {unit}: {x:g}"
    return x, ""


def clean_stat(arr: np.ndarray) -> np.ndarray:
    """Statistics (CI, quartiles) outside the plausible range are dropped (NaN)."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (np.abs(arr) > MAX_ABS_VALUE)
    arr[bad] = math.nan
    return arr


def timestamp_ms(v) -> float:
    if is_number(v) and 0 <= v < MAX_TIMESTAMP_MS:
        return float(v)
    return math.nan


class UnreadableFile(OSError):
    """Not a regular file, or over the size cap: the message says which."""


def read_capped(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default MAX_FILE_BYTES).

    Opened non-blocking, so a FIFO named ``*.json`` does not hang; checked with fstat on the
    open descriptor, so a symlink to /dev/zero or a device is refused before it is read; read
    at most ``limit`` + 1 bytes, so a file that grows meanwhile cannot exhaust memory."""
    limit = MAX_FILE_BYTES if limit is None else limit
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(f"not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > limit:
            raise UnreadableFile(f"{st.st_size} bytes, over the {limit}-byte cap")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnreadableFile(f"over the {limit}-byte cap")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_json(path: Path, what: str):
    """(parsed JSON, "") or (None, why ``path`` is not ``what``)."""
    try:
        raw = read_capped(path)
    except UnreadableFile as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        return json.loads(raw.decode("utf-8")), ""
    except RecursionError:
        return None, f"not {what}: nested too deep"
    except MemoryError:
        return None, f"not {what}: too large to parse"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON, truncated or unreadable ({exc})"


def as_float_array(values, n: int) -> np.ndarray | None:
    """A list of n numbers/None/NaN -> float array (None -> NaN); None when absent/malformed.

    Only JSON numbers count: a string ("1.5"), a bool or a nested list reads as NaN."""
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != n:
        return None
    out = np.full(n, math.nan)
    for i, v in enumerate(values):
        if is_number(v):
            out[i] = v
    return out


def find_result_files(path: Path) -> list[Path]:
    """``*.json`` under ``path`` (symlinked folders are not followed); what is not a regular
    file is dropped later, when it is opened (``read_capped``), with a warning."""
    if not path.is_dir():
        return [path]
    files = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        files += [Path(folder) / n for n in names if n.endswith(".json") and n not in SKIP_FILES]
    return sorted(files)


def find_benchmarks_json(path: Path) -> Path | None:
    """results/benchmarks.json next to the machine folders: look in path and two levels up."""
    here = path if path.is_dir() else path.parent
    for candidate in (here, here.parent, here.parent.parent):
        p = candidate / "benchmarks.json"
        if p.exists() or p.is_symlink():
            return p
    return None


def param_names(info: dict, n_axes: int) -> tuple[str, ...]:
    """benchmarks.json's param_names when they fit (distinct strings, none a column name of
    the table), else p0, p1, ..."""
    names = info.get("param_names")
    if (
        isinstance(names, list)
        and len(names) == n_axes
        and all(isinstance(x, str) and x and x not in RESERVED_COLUMNS for x in names)
        and len(set(names)) == n_axes
    ):
        return tuple(names)
    return tuple(f"p{i}" for i in range(n_axes))
