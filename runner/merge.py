"""Merge shard outputs into asv's normal result files under results/<machine>/.

Every shard is an ``asv run --bench <its units>`` of one commit into its own results_dir,
so shards of one commit, machine and environment write the same file name
``<machine>/<commit8>-<env>.json`` with disjoint benchmark keys. Merging is the union of
their ``results``; a key that two shards both hold with different rows is an error (the
same benchmark measured twice: which one is right is not ours to pick). The merged file
keeps asv's format version 2, so ``asv show`` / ``asv compare`` and reports/ read it as
if one ``asv run`` had written it.

A result file already in results/ for the same commit is merged too, the shards' rows
replacing its rows for the same benchmark: what ``asv run`` itself does when it re-runs a
benchmark of a commit it has results for.

Writers (docs/design.md trap 12): each results/<machine> folder written to is locked
(runner/integrity.py: flock, waiting with a message naming the holder) while its files are
read, merged and written; every conflict is found before the first file is written; each
file is replaced atomically through a unique temporary file; results/benchmarks.json is
only ever merged (other commits' benchmarks stay), under a lock of its own.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner import integrity
from runner.machine import PROVENANCE_KEYS
from runner.shards import unit_of

ASV_RESULTS_VERSION = 2
# Fields that describe the run and must agree between shards of one result file.
SAME_IN_EVERY_SHARD = ("commit_hash", "env_name", "python", "result_columns")


class MergeConflict(ValueError):
    """Shards disagree: the same benchmark with different rows, or different run metadata."""


@dataclass
class MergeReport:
    written: list[Path] = field(default_factory=list)
    benchmarks: dict[Path, list[str]] = field(default_factory=dict)
    replaced: dict[Path, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for path in self.written:
            replaced = self.replaced.get(path, [])
            note = f", {len(replaced)} replaced earlier rows" if replaced else ""
            lines.append(f"{path}: {len(self.benchmarks[path])} benchmarks{note}")
        return "\n".join(lines)


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    if data.get("version") != ASV_RESULTS_VERSION:
        raise MergeConflict(f"{path}: asv results version {data.get('version')}, expected 2")
    return data


def _write(path: Path, data: dict) -> None:
    """Write like asv (util.write_json compact), atomically: a crash leaves the old file."""
    integrity.write_json(path, data)


def _load_benchmarks(sources: Iterable[str | os.PathLike]) -> dict:
    """The entries of asv benchmarks.json files (later files win); an empty or unreadable
    one is an error."""
    new: dict = {}
    for path in (Path(s) for s in sources):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise MergeConflict(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or not data:
            raise MergeConflict(f"{path}: not an asv benchmarks.json (empty or not an object)")
        new.update(data)
    return new


def merge_benchmarks_json(
    results_dir: str | os.PathLike, sources: Iterable[str | os.PathLike], **lock_kw
) -> Path | None:
    """Merge asv benchmarks.json files into ``results_dir/benchmarks.json``: the sources'
    entries over the existing ones, none dropped (other commits' suites defined them).
    Under results/.benchmarks.json.lock, replaced atomically; an unreadable source is an
    error before anything is written."""
    return _merge_benchmarks(results_dir, _load_benchmarks(sources), **lock_kw)


def _merge_benchmarks(results_dir: str | os.PathLike, new: dict, **lock_kw) -> Path | None:
    if not new:
        return None
    results_dir = Path(results_dir)
    target = results_dir / "benchmarks.json"
    with integrity.FolderLock(results_dir, name=integrity.BENCHMARKS_LOCK, **lock_kw):
        integrity.remove_stale_tmp(results_dir, target.name)
        benchmarks = json.loads(target.read_text()) if target.is_file() else {}
        benchmarks.update(new)
        # asv writes it indented (util.write_json with api_version): keep diffs readable
        integrity.atomic_write_text(target, json.dumps(dict(sorted(benchmarks.items())), indent=4))
    return target


def provenance_diff(a: dict | None, b: dict | None) -> list[str]:
    """'torch 2.11.0 -> 2.13.0' per provenance field (runner.machine.PROVENANCE_KEYS) that
    differs between two result files' params; fields either side lacks are not compared."""
    a, b = a or {}, b or {}
    return [
        f"{k} {a[k]} -> {b[k]}"
        for k in PROVENANCE_KEYS
        if a.get(k) is not None and b.get(k) is not None and a[k] != b[k]
    ]


def merge_result_dicts(parts: list[tuple[str, dict]]) -> dict:
    """Merge asv result dicts of one commit/machine/env; ``parts`` are (source, data) pairs."""
    if not parts:
        raise ValueError("nothing to merge")
    first_source, first = parts[0]
    merged = {k: v for k, v in first.items() if k not in ("results", "durations")}
    merged["results"] = {}
    merged["durations"] = {}
    merged["requirements"] = dict(first.get("requirements") or {})
    merged["env_vars"] = dict(first.get("env_vars") or {})
    owner: dict[str, str] = {}
    conflicts = []
    for source, data in parts:
        for key in SAME_IN_EVERY_SHARD:
            if data.get(key) != first.get(key):
                raise MergeConflict(
                    f"{key} differs between shards: {first.get(key)!r} in {first_source}, "
                    f"{data.get(key)!r} in {source}"
                )
        machine = (data.get("params") or {}).get("machine")
        if machine != (first.get("params") or {}).get("machine"):
            raise MergeConflict(f"machine {machine!r} in {source} differs from {first_source}")
        for name, row in data["results"].items():
            if name in merged["results"] and merged["results"][name] != row:
                conflicts.append(f"{name} ({owner[name]} and {source})")
            merged["results"][name] = row
            owner.setdefault(name, source)
        # <build> and <setup_cache ...> seconds: each shard built and cached on its own; the
        # slowest is what the run as a whole waited for.
        for key, seconds in (data.get("durations") or {}).items():
            merged["durations"][key] = max(seconds, merged["durations"].get(key, seconds))
        merged["requirements"].update(data.get("requirements") or {})
        merged["env_vars"].update(data.get("env_vars") or {})
        merged["date"] = merged.get("date") or data.get("date")
    if conflicts:
        raise MergeConflict(
            f"{len(conflicts)} benchmarks were measured by more than one shard with different "
            f"results: {conflicts[:5]}"
        )
    merged["results"] = dict(sorted(merged["results"].items()))
    merged["version"] = ASV_RESULTS_VERSION
    return merged


def merge_shards(
    shard_results_dirs: Iterable[str | os.PathLike] | Mapping[str | os.PathLike, Collection[str]],
    results_dir: str | os.PathLike = "results",
    *,
    replace_machine_files: bool = False,
    **lock_kw,
) -> MergeReport:
    """Merge the asv results_dirs of finished shards into ``results_dir``.

    Given a mapping shard results_dir -> units, only the rows of those units are taken from
    that shard (runner.shards.assign_units picks one shard per unit when two measured it).
    Writes results/<machine>/<commit8>-<env>.json (merged with any file already there),
    results/<machine>/machine.json if absent, and results/benchmarks.json (the shards'
    entries over any existing ones; none is dropped). ``replace_machine_files``: the
    shards' machine.json replaces the one there (what ``asv run`` does; the runner's own
    merge). ``lock_kw``: runner.integrity.FolderLock's timeout/report_every/say.
    """
    groups: dict[str, list[Path]] = {}
    machine_files: dict[str, Path] = {}
    bench_files: list[Path] = []
    take: dict[Path, set[str] | None] = {}
    if isinstance(shard_results_dirs, Mapping):
        take = {Path(d): set(units) for d, units in shard_results_dirs.items()}
    else:
        take = {Path(d): None for d in shard_results_dirs}
    for shard in take:
        for path in sorted(shard.glob("*/*.json")):
            rel = str(path.relative_to(shard))
            if path.name == "machine.json":
                machine_files.setdefault(path.parent.name, path)
            else:
                groups.setdefault(rel, []).append(path)
        if (shard / "benchmarks.json").is_file():
            bench_files.append(shard / "benchmarks.json")
    if not groups:
        raise FileNotFoundError("no asv result files in the shard outputs given")

    report = MergeReport()
    results_dir = Path(results_dir)
    say = lock_kw.get("say") or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folders = {results_dir / Path(rel).parent.name for rel in groups}
    folders |= {results_dir / m for m in machine_files}
    with integrity.folder_locks(folders, **lock_kw):
        for folder in folders:
            integrity.remove_stale_tmp(folder)
        # Everything is read and checked first: a conflict writes nothing.
        new_benchmarks = _load_benchmarks(bench_files)
        writes: list[tuple[Path, dict | str]] = []
        for rel, paths in sorted(groups.items()):
            parts = []
            for path in paths:
                data = _load(path)
                units = take[path.parent.parent]
                if units is not None:
                    data["results"] = {
                        n: row for n, row in data["results"].items() if unit_of(n) in units
                    }
                parts.append((str(path), data))
            merged = merge_result_dicts(parts)
            for source, data in parts[1:]:
                diff = provenance_diff(parts[0][1].get("params"), data.get("params"))
                if diff:
                    say(
                        f"WARNING: shards of {rel} were measured with different toolchains "
                        f"({', '.join(diff)}: {parts[0][0]} vs {source}); the file's params "
                        f"keep the first one's"
                    )
            target = results_dir / rel
            if target.is_file():
                old = _load(target)
                diff = provenance_diff(old.get("params"), merged.get("params"))
                if diff and set(old["results"]) - set(merged["results"]):
                    say(
                        f"WARNING: {target} keeps rows measured with another toolchain than "
                        f"the rows merged into it ({', '.join(diff)}); its params now say "
                        f"the new run's. Re-run the whole commit to keep one toolchain."
                    )
                if old.get("result_columns") != merged.get("result_columns"):
                    raise MergeConflict(f"{target} has other result_columns than the shards")
                shared = sorted(set(old["results"]) & set(merged["results"]))
                old["results"].update(merged["results"])
                merged["results"] = dict(sorted(old["results"].items()))
                for key, seconds in (old.get("durations") or {}).items():
                    merged["durations"].setdefault(key, seconds)
                report.replaced[target] = shared
            writes.append((target, merged))
            report.benchmarks[target] = list(merged["results"])

        for machine, path in machine_files.items():
            target = results_dir / machine / "machine.json"
            text = path.read_text()
            if target.is_file():
                have = json.loads(target.read_text()).get("machine")
                if have != machine:
                    raise MergeConflict(f"{target} names machine {have!r}, shards say {machine!r}")
                if not replace_machine_files:
                    continue
            writes.append((target, text))

        for target, data in writes:
            if isinstance(data, str):
                integrity.atomic_write_text(target, data)
            else:
                _write(target, data)
                report.written.append(target)
        _merge_benchmarks(results_dir, new_benchmarks, **lock_kw)
    return report


def coverage(
    result_file: str | os.PathLike, expected: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(missing, unexpected) benchmark names of a merged file against the expected set."""
    have = set(json.loads(Path(result_file).read_text())["results"])
    expected = set(expected)
    return sorted(expected - have), sorted(have - expected)
