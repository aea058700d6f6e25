"""How the asv suite is run: `make bench` (one commit) and `make bench-history` (a range).

    python -m runner.asv_run [--grid gpu|cpu] [--presets seed,ttt] [--results-dir results]
                             [--machine NAME] [--commit HEAD | --range A..B] [--bench REGEX]

Decisions (DESIGN.md traps 6, 9, 10):

- Environment: asv's ``existing`` environment, the python that runs this (or ``--python``),
  with ``--set-commit-hash`` so results are saved; nothing is reinstalled per commit.
- Code under test: asv does not install anything into an existing environment, so the
  benchmarks import ``kernels`` from PYTHONPATH, which this module points at the source
  tree of the commit: the checkout itself for HEAD, else a ``git worktree add --detach``
  of the commit (``.asv/worktrees/<sha8>``, removed afterwards). The worktree's own
  ``bench_suite`` and ``asv.conf.json`` are used too. Each setup_cache logs the folder it
  imported ``kernels`` from.
- Machine: pinned by name (:func:`machine_name`: the GPU model, or ``cpu-<arch>``), never
  the hostname. ``asv machine --yes --machine NAME`` records only the fields that differ
  from its defaults (so just the name), so the runner writes asv's machine file itself,
  with os/cpu/ram and the GPU model, into a per-run temporary file (no race between
  parallel shards, nothing left in ~/.asv-machine.json); ``asv run`` copies it into
  ``results/<machine>/machine.json``, the record that is committed with the results.
- Launch: ``--launch-method forkserver`` (20 s instead of 113 s of process start-up on
  the H100 for 12 benchmarks); the suite touches no GPU at import time.
- Config: a temporary copy of the source tree's asv.conf.json with absolute paths
  (repo, benchmark_dir, results_dir, html_dir, env_dir), so results land in
  ``--results-dir`` whatever tree the suite came from.
- Interruptions: asv writes a commit's result file only when its ``asv run`` ends (it
  loads the file first and merges). A GPU grid takes 8-9 minutes, so the runner calls
  ``asv run`` once per preset (:func:`preset_chunks`): Ctrl-C, a SIGTERM or a lost
  machine costs the preset that was running, not the presets before it, and the runner
  says which presets to run again. Each extra ``asv run`` costs its start-up and
  benchmark discovery, a few seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python runner/asv_run.py` as well as `-m`
    sys.path.insert(0, str(REPO_ROOT))

from harness import grid as common  # noqa: E402  (standard library only at import)

WORKTREES = REPO_ROOT / ".asv" / "worktrees"

# asv reads its machine file from ~/.asv-machine.json only; this runs asv with that path
# pointed at a per-run file (argv[1]), leaving the rest of asv untouched.
_ASV_MAIN = (
    "import sys; machine_file = sys.argv.pop(1); import asv.machine; "
    "asv.machine.MachineCollection.get_machine_file_path = staticmethod(lambda: machine_file); "
    "from asv.main import main; sys.exit(main())"
)


# --------------------------------------------------------------------------------------
# Hardware: machine names and grids
# --------------------------------------------------------------------------------------


def _nvidia_smi_gpus() -> list[tuple[str, int]]:
    """(name, memory MiB) per GPU that this process may use, from nvidia-smi (no CUDA init)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append((name.strip(), int(float(mem))))
        except ValueError:
            continue
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        if not ids or ids[0] == "-1":
            return []
        if all(d.isdigit() for d in ids):
            gpus = [gpus[int(d)] for d in ids if int(d) < len(gpus)]
    return gpus


def gpu_slug(name: str, memory_mib: int) -> str:
    """'NVIDIA H100 80GB HBM3', 81559 -> 'h100-sxm-80gb'; 'NVIDIA H100 PCIe' -> 'h100-pcie-80gb'.

    Model, form factor (H100/H200 without a hint are SXM: PCIe and NVL say so in their
    names), memory from the name's "<N>GB" or else the size rounded to GiB.
    """
    words = [w for w in re.split(r"[\s_-]+", name) if w and w not in ("NVIDIA", "Tesla")]
    model = next(
        (
            w
            for w in words
            if re.fullmatch(r"[A-Za-z]{1,4}\d+[A-Za-z]*", w)
            and not w.upper().startswith(("SXM", "HBM", "PCIE"))
            and not w.upper().endswith("GB")
        ),
        None,
    )
    model = (model or "-".join(words) or "gpu").lower()
    upper = name.upper()
    if "PCIE" in upper:
        form = "pcie"
    elif "NVL" in upper:
        form = "nvl"
    elif "SXM" in upper or "HBM3" in upper or model in ("h100", "h200", "b200", "gh200"):
        form = "sxm"
    else:
        form = ""
    m = re.search(r"(\d+)\s*GB", upper)
    mem = int(m.group(1)) if m else round(memory_mib / 1024)
    return "-".join(p for p in (model, form, f"{mem}gb") if p)


def machine_name(n_gpus: int | None = None) -> str:
    """Stable asv machine name: the GPU ('h100-sxm-80gb', '-x2' for 2 GPUs) or 'cpu-<arch>'."""
    gpus = _nvidia_smi_gpus()
    if not gpus:
        return f"cpu-{platform.machine() or 'unknown'}"
    name = gpu_slug(*gpus[0])
    return f"{name}-x{n_gpus}" if n_gpus and n_gpus > 1 else name


def _cuda_visible_by_torch(python: str = sys.executable) -> bool:
    """torch.cuda.is_available() in a child process: the parent never initialises CUDA."""
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return (
            subprocess.run([python, "-c", probe], capture_output=True, timeout=300).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def default_grid() -> str:
    """'gpu' when a CUDA GPU is usable here, else 'cpu' (nvidia-smi; torch in a child if absent)."""
    if _nvidia_smi_gpus():
        return "gpu"
    if shutil.which("nvidia-smi") is None and os.path.exists("/dev/nvidiactl"):
        return "gpu" if _cuda_visible_by_torch() else "cpu"
    return "cpu"


def bench_regex(grid: str, presets: Sequence[str] | None = None) -> str:
    """asv --bench regex selecting the classes of ``grid`` (or of the given presets of it)."""
    if grid not in common.GRIDS:
        raise ValueError(f"grid must be one of {sorted(common.GRIDS)}, got {grid!r}")
    chosen = list(common.GRIDS[grid]) if not presets else [p.strip().lower() for p in presets]
    bad = [p for p in chosen if p not in common.GRIDS[grid]]
    if bad:
        raise ValueError(f"presets {bad} are not in the {grid} grid {common.GRIDS[grid]}")
    classes = "|".join(common.PRESETS[p].class_name for p in chosen)
    families = "|".join(common.PATHS)
    return rf"^bench_({families})\.({classes})\.track_"


def preset_chunks(grid: str, presets: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(preset, --bench regex) per preset of ``grid`` (or of ``presets``): one asv run each."""
    bench_regex(grid, presets)  # the same checks of grid and presets, the same errors
    chosen = list(common.GRIDS[grid]) if not presets else [p.strip().lower() for p in presets]
    return [(p, bench_regex(grid, [p])) for p in chosen]


def machine_info(name: str, python: str = sys.executable) -> dict:
    """asv machine fields (as strings, as asv writes them) plus the GPU and software."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    try:
        ram = str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        ram = ""
    info = {
        "machine": name,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu,
        "num_cpu": str(os.cpu_count() or ""),
        "ram": ram,
    }
    gpus = _nvidia_smi_gpus()
    if gpus:
        info["gpu"] = gpus[0][0]
        info["gpu_count"] = str(len(gpus))
    probe = (
        "from importlib.metadata import version\n"
        "for p in ('torch', 'triton'):\n"
        "    try: print(p, version(p))\n"
        "    except Exception: print(p, '-')\n"
    )
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
        for line in out.stdout.splitlines():
            pkg, _, ver = line.partition(" ")
            info[pkg] = ver
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# --------------------------------------------------------------------------------------
# Running asv
# --------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path = REPO_ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def resolve_commit(commit: str, cwd: Path = REPO_ROOT) -> str:
    try:
        return _git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=cwd)
    except subprocess.CalledProcessError as exc:
        raise ValueError(
            f"not a commit in {cwd} (a git checkout is needed): {commit!r} ({exc.stderr.strip()})"
        ) from None


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
        html_dir=str(REPO_ROOT / conf.get("html_dir", "reports/asv_html")),
        env_dir=str(REPO_ROOT / conf.get("env_dir", ".asv/env")),
    )
    path = tmp / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=2))
    return path


class _ProgressTail:
    """Prints the suite's progress lines (common.PROGRESS_ENV file) while asv runs."""

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
        run_env[common.PROGRESS_ENV] = str(progress)
    return run_env


def _dirty(src: Path) -> bool:
    return bool(_git("status", "--porcelain", "--", "kernels", "bench_suite", cwd=src))


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
) -> Path:
    """Run the suite for one commit into ``results_dir/<machine>/``; return the result JSON.

    ``bench``: an asv --bench regex, run in one ``asv run``. Without it, one ``asv run``
    per preset of ``grid`` (:func:`default_grid` by default), or of ``presets``
    (:func:`preset_chunks`): an interruption loses only the preset that was running.
    ``worktree``: a checkout of ``commit`` to measure;
    without one, HEAD is measured in this checkout and any other commit in a temporary
    worktree. ``env``: the environment for asv (default os.environ); the source tree goes
    first on the benchmarks' import path (ASV_PYTHONPATH: asv makes it their PYTHONPATH).
    asv's own output streams through; so do the suite's progress lines.
    """
    sha = resolve_commit(commit)
    if worktree is None and sha != resolve_commit("HEAD"):
        with _temporary_worktree(sha) as wt:
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
            )
    src = Path(worktree).resolve() if worktree is not None else REPO_ROOT
    if worktree is None and _dirty(src):
        print(
            f"note: kernels/ or bench_suite/ has uncommitted changes; they are measured "
            f"and recorded as {sha[:8]}",
            flush=True,
        )
    results_dir = Path(results_dir).resolve()
    chunks = [("--bench", bench)] if bench else preset_chunks(grid or default_grid(), presets)
    python = shutil.which(python) or python
    started = time.time()
    finished: list[str] = []
    broken: list[tuple[str, int]] = []
    some_failed = False
    with tempfile.TemporaryDirectory(prefix="asv-run-") as tmp_name:
        tmp = Path(tmp_name)
        conf = _write_run_conf(src, results_dir, tmp)
        machine_file = tmp / "asv-machine.json"
        machine_file.write_text(
            json.dumps({"version": 1, machine: machine_info(machine, python)}, indent=2)
        )
        progress = tmp / "progress.jsonl"
        base_cmd = [
            python,
            "-c",
            _ASV_MAIN,
            str(machine_file),
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
        ]
        with _ProgressTail(progress) as tail:
            for i, (label, regex) in enumerate(chunks, 1):
                part = f" [{i}/{len(chunks)} {label}]" if len(chunks) > 1 else ""
                print(
                    f"asv run {sha[:8]} on {machine}{part}: --bench '{regex}', kernels from {src}",
                    flush=True,
                )
                cmd = [*base_cmd, "--bench", regex, *extra_args]
                try:
                    proc = subprocess.run(cmd, cwd=src, env=_source_env(src, env, progress))
                except KeyboardInterrupt:  # Ctrl-C, or SIGTERM via main()'s handler
                    _report_interrupted(sha, machine, grid, results_dir, chunks, finished, label)
                    raise
                if proc.returncode in (0, 2):  # 2: results saved, some benchmarks failed
                    finished.append(label)
                    some_failed |= proc.returncode == 2
                else:
                    broken.append((label, proc.returncode))
        wall_s = time.time() - started
    if broken:
        saved = f"; {', '.join(finished)} saved" if finished else ""
        what = ", ".join(f"{label} (exit {code})" for label, code in broken)
        raise RuntimeError(f"asv run failed for {sha[:8]}: {what}{saved}")
    result = _result_file(results_dir / machine, sha, started)
    if some_failed:
        print(
            f"note: some benchmarks of {sha[:8]} FAILED (a parity failure or an error); "
            f"they are recorded as failed in {result}",
            flush=True,
        )
    print_overhead(tail.events, wall_s)
    return result


def _report_interrupted(sha, machine, grid, results_dir, chunks, finished, running) -> None:
    """What an interrupted run kept, and the command that measures the rest."""
    rest = [label for label, _ in chunks if label not in finished]
    kept = ", ".join(finished) if finished else "nothing"
    print(
        f"\ninterrupted while measuring {running} of {sha[:8]}: kept {kept} "
        f"(in {results_dir / machine}); lost the part that was running.",
        flush=True,
    )
    if rest and all(label != "--bench" for label in rest):
        print(
            f"measure the rest with: python -m runner.asv_run --commit {sha[:8]} "
            f"--grid {grid or default_grid()} --presets {','.join(rest)} --machine {machine}",
            flush=True,
        )


def _result_file(folder: Path, sha: str, since: float) -> Path:
    files = [p for p in folder.glob(f"{sha[:8]}-*.json") if p.stat().st_mtime >= since - 1]
    if not files:
        raise RuntimeError(f"asv run wrote no result for {sha[:8]} under {folder}")
    return max(files, key=lambda p: p.stat().st_mtime)


class _temporary_worktree:
    """``git worktree add --detach`` of a commit at .asv/worktrees/<sha8>-<random>, removed
    on exit (a folder of its own: parallel runs of one commit never share one)."""

    def __init__(self, sha: str):
        self.sha = sha

    def __enter__(self) -> Path:
        WORKTREES.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{self.sha[:8]}-", dir=WORKTREES))
        _git("worktree", "add", "--detach", "--force", str(self.path), self.sha)
        return self.path

    def __exit__(self, *exc):
        self._remove()

    def _remove(self):
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(self.path)],
            cwd=REPO_ROOT,
            capture_output=True,
        )
        shutil.rmtree(self.path, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO_ROOT, capture_output=True)


def commits_in(range_spec: str) -> list[str]:
    """Commits of ``A..B`` (git's meaning: in B, not in A), oldest first; one for a single rev."""
    if ".." not in range_spec:
        return [resolve_commit(range_spec)]
    out = _git("rev-list", "--reverse", range_spec)
    commits = out.split()
    if not commits:
        raise ValueError(f"{range_spec!r} holds no commits")
    return commits


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
) -> list[Path]:
    """One result file per commit of ``range_spec``, each measured from its own worktree.

    The environment (torch, triton) stays the same for all; commits without an asv suite
    are reported and skipped.
    """
    paths = []
    commits = commits_in(range_spec)
    for i, sha in enumerate(commits, 1):
        print(
            f"=== {i}/{len(commits)}: {sha[:8]} {_git('log', '-1', '--format=%s', sha)}", flush=True
        )
        with _temporary_worktree(sha) as wt:
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
                )
            )
    return paths


# --------------------------------------------------------------------------------------
# Reading results back: the short table and the overhead line
# --------------------------------------------------------------------------------------


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
    print(
        f"asv wall time {wall_s:.1f} s over {len(done)} classes: timing + memory + parity "
        f"{measure:.1f} s, fp64/math references {reference:.1f} s; outside measuring "
        f"{outside:.1f} s ({100 * outside / max(wall_s, 1e-9):.0f}%): first calls "
        f"(compile/autotune) {first:.1f} s, process start + imports {startup:.1f} s, "
        f"asv, its per-benchmark processes and the rest {outside - first - startup:.1f} s",
        flush=True,
    )


def _unquote(value: str):
    try:
        return json.loads(value.replace("'", '"'))
    except ValueError:
        return value


def load_rows(result_json: str | os.PathLike) -> list[dict]:
    """Tidy rows from one asv result file: family, preset, config, mode, metric, value.

    value: a float, "skipped" (asv NaN) or "failed" (asv null).
    """
    data = json.loads(Path(result_json).read_text())
    columns = data["result_columns"]
    rows = []
    for name, entry in data["results"].items():
        m = re.fullmatch(r"bench_(\w+)\.(\w+)\.track_(\w+)", name)
        if not m:
            continue
        family, klass, metric = m.groups()
        fields = dict(zip(columns, entry))
        params = [[_unquote(v) for v in axis] for axis in fields.get("params") or []]
        combos = list(_product(params)) if params else [()]
        values = fields["result"]
        if not isinstance(values, list):  # asv writes one null when every combination failed
            values = [values] * len(combos)
        for combo, value in zip(combos, values):
            if value is None:
                value = "failed"
            elif isinstance(value, float) and math.isnan(value):
                value = "skipped"
            row = dict(zip(common.PARAM_NAMES, combo))
            row.update(family=family, preset=klass, metric=metric, value=value)
            rows.append(row)
    return rows


def _product(axes):
    import itertools

    return itertools.product(*axes)


def _fmt(value, spec: str, width: int) -> str:
    return format(value, spec).rjust(width) if isinstance(value, float) else "-".rjust(width)


def print_table(result_json: str | os.PathLike) -> None:
    """Per family and config: each mode's ms, speedup over math, MiB, TFLOP/s, parity and
    host ms (GPU runs: a host ms near the ms says the row is host time, not kernels)."""
    rows = load_rows(result_json)
    table: dict = {}
    for r in rows:
        key = (r["family"], r["preset"], tuple(r[k] for k in common.PARAM_NAMES[:-1]))
        table.setdefault(key, {}).setdefault(r["bwd_mode"], {})[r["metric"]] = r["value"]
    order = {f: i for i, f in enumerate(common.PATHS)}
    print(f"\n{Path(result_json).parent.name}/{Path(result_json).name}")
    for (family, preset, cfg), modes in sorted(
        table.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1], kv[0][2])
    ):
        B, H, T, D, dtype, mask = cfg
        print(f"{family} {preset} B{B} H{H} T{T} D{D} {dtype} {mask}")
        print(
            f"    {'mode':<10}{'ms':>10}{'vs math':>9}{'MiB':>10}{'TFLOP/s':>9}{'parity':>8}"
            f"{'host ms':>9}"
        )
        math_ms = modes.get("math", {}).get("ms")
        for mode in [m for m in common.ALL_MODES if m in modes]:
            v = modes[mode]
            ms = v.get("ms")
            if not isinstance(ms, float):  # "skipped" or "failed"
                par = v.get("parity")
                note = f"  (parity {par:.3g})" if isinstance(par, float) else ""
                print(f"    {mode:<10}{str(ms):>10}{note}")
                continue
            speedup = math_ms / ms if isinstance(math_ms, float) else None
            print(
                f"    {mode:<10}{_fmt(ms, '.4g', 10)}{_fmt(speedup, '.2f', 8)}x"
                f"{_fmt(v.get('peak_mib'), '.1f', 10)}{_fmt(v.get('tflops'), '.3g', 9)}"
                f"{_fmt(v.get('parity'), '.2f', 8)}{_fmt(v.get('host_ms'), '.4g', 9)}"
            )


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
    p.add_argument("--grid", choices=sorted(common.GRIDS), help="default: by hardware")
    p.add_argument("--presets", help="comma-separated presets of the grid, e.g. seed,ttt")
    p.add_argument("--bench", help="an asv --bench regex instead of --grid/--presets")
    p.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    p.add_argument("--machine", help="asv machine name (default: machine_name())")
    p.add_argument("--python", default=sys.executable, help="the existing environment")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--commit", default="HEAD")
    group.add_argument("--range", dest="range_spec", help="A..B: one result file per commit")
    p.add_argument("--table", metavar="RESULT_JSON", help="only print the table of a result file")
    p.add_argument("asv_args", nargs="*", help="after --: passed to asv run (e.g. --quick)")
    args = p.parse_args(argv)
    if args.table:
        print_table(args.table)
        return 0
    grid = args.grid or default_grid()
    presets = [s for s in (args.presets or "").split(",") if s.strip()] or None
    if not args.bench:
        bench_regex(grid, presets)  # bad presets fail here, before anything runs
    machine = args.machine or machine_name()
    kw = dict(
        machine=machine,
        results_dir=args.results_dir,
        bench=args.bench,
        grid=grid,
        python=args.python,
        extra_args=args.asv_args,
        presets=presets,
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
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = 0
    for path in paths:
        print_table(path)
        failed += sum(r["value"] == "failed" for r in load_rows(path))
    if failed:
        print(f"{failed} benchmark values FAILED (see the tables above): exit status 2")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
