"""The noise of every timing row, in asv's own stats columns (issue 15 item 1).

Every benchmark of the suite is a ``track_*`` method that looks a number up, so asv
leaves its stats columns empty. The suite's ``record`` progress events carry a summary of
each timing's samples (harness.timing.summarize: median, q25, q75, n, min, max and a 99%
interval of the median from two order statistics); after each ``asv run`` the runner
writes them into the private result file, before it is merged into results/:

    stats_ci_99_a, stats_ci_99_b  the 99% interval of the median
    stats_q_25, stats_q_75        the quartiles
    stats_repeat                  n, the number of samples
    stats_number                  1 (each sample is one call)

for the rows of ``track_ms`` (``ms_summary``), ``track_host_ms`` (``host_ms_summary``)
and ``track_graph_ms`` (``graph_ms_summary``). asv's lists are flattened row-major over
the product of the row's params (harness.grid.PARAM_NAMES), the order of asv's own.

``asv compare`` prints half the IQR as ``±`` and calls two values "not significant" when
their 99% intervals overlap (asv._stats.is_different without samples); it reads
ci_99_a/b and q_25/q_75 of any value whose stats are not empty and whose repeat is not 1,
so a value gets all four or none. Fewer than 8 samples have no distribution-free 99%
interval of the median: such a value gets its samples' range widened by its width on
each side (a stand-in wider than the range, never narrower; asv itself falls back to a
model there), and one sample gets no stats at all.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable
from pathlib import Path

from harness import grid as grids

# track method -> the record's summary of its samples
SUMMARY_OF = {
    "track_ms": "ms_summary",
    "track_host_ms": "host_ms_summary",
    "track_graph_ms": "graph_ms_summary",
}
STATS = ("ci_99_a", "ci_99_b", "q_25", "q_75", "number", "repeat")


def read_events(path: str | os.PathLike) -> list[dict]:
    """Every event of a progress file (harness.grid.PROGRESS_ENV), read to its end."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def summaries(events: Iterable[dict]) -> dict[tuple[str, tuple], dict]:
    """(asv benchmark name, combo of param values) -> the sample summary, from ``record``
    events; a later event for the same value replaces an earlier one (a re-run)."""
    out: dict[tuple[str, tuple], dict] = {}
    for e in events:
        if e.get("event") != "record" or not isinstance(e.get("config"), dict):
            continue
        family, _, preset = str(e.get("tag", "")).partition("/")
        known = grids.PRESETS.get(preset)
        rec = e.get("record") or {}
        if known is None or rec.get("status") != "ok":
            continue
        try:
            combo = tuple(e["config"][k] for k in grids.PARAM_NAMES[:-1]) + (e["mode"],)
        except KeyError:
            continue
        for method, key in SUMMARY_OF.items():
            summary = rec.get(key)
            if isinstance(summary, dict):
                out[(f"bench_{family}.{known.class_name}.{method}", combo)] = summary
    return out


def asv_stats(summary: dict | None) -> dict | None:
    """asv's stats of one value from a sample summary; None without at least 2 samples."""
    if not summary:
        return None
    try:
        n = int(summary["n"])
        q25, q75 = float(summary["q25"]), float(summary["q75"])
    except (KeyError, TypeError, ValueError):
        return None
    if n < 2:
        return None
    lo, hi = summary.get("ci99_lo"), summary.get("ci99_hi")
    if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
        try:
            smin, smax = float(summary["min"]), float(summary["max"])
        except (KeyError, TypeError, ValueError):
            return None
        width = smax - smin
        lo, hi = smin - width, smax + width
    return {
        "ci_99_a": float(lo),
        "ci_99_b": float(hi),
        "q_25": q25,
        "q_75": q75,
        "number": 1,
        "repeat": n,
    }


def _param_value(text):
    """asv stores each param value as its repr: "'float16'" -> 'float16', '2' -> 2."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _combos(params: list[list]) -> list[tuple]:
    combos: list[tuple] = [()]
    for axis in params:  # row-major: the last axis varies fastest (itertools.product)
        combos = [c + (_param_value(v),) for c in combos for v in axis]
    return combos


def fill_result(data: dict, found: dict[tuple[str, tuple], dict]) -> int:
    """Write the stats of ``found`` (:func:`summaries`) into an asv v2 result dict in place;
    the number of values that got stats."""
    columns = data.get("result_columns") or []
    index = {name: columns.index(f"stats_{name}") for name in STATS if f"stats_{name}" in columns}
    p_col = columns.index("params") if "params" in columns else None
    if len(index) != len(STATS) or p_col is None:
        return 0
    filled = 0
    for name, row in (data.get("results") or {}).items():
        if name.rpartition(".")[2] not in SUMMARY_OF or not isinstance(row, list):
            continue
        params = row[p_col] if p_col < len(row) else None
        if not isinstance(params, list):
            continue
        values = [asv_stats(found.get((name, combo))) for combo in _combos(params)]
        if not any(values):
            continue
        row.extend([None] * (len(columns) - len(row)))
        for stat, col in index.items():
            row[col] = [None if v is None else v[stat] for v in values]
        while row and row[-1] is None:  # as asv saves a row
            row.pop()
        filled += sum(v is not None for v in values)
    return filled


def fill_results_dir(results_dir: str | os.PathLike, events: Iterable[dict]) -> int:
    """:func:`fill_result` for every result file under an asv results folder (a private
    one: runner.asv_run merges it into results/ afterwards); rewritten in asv's format."""
    found = summaries(events)
    if not found:
        return 0
    from runner import integrity

    filled = 0
    for path in sorted(Path(results_dir).glob("*/*.json")):
        if path.name == "machine.json":
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("version") != 2:
            continue
        n = fill_result(data, found)
        if n:
            integrity.write_json(path, data)
            filled += n
    return filled
