"""Run the asv suite on Modal's H100s, sharded: `make bench-modal COMMITS=HEAD SHARDS=8`.

    python -m modal run modal_runner.py --commits HEAD --shards 8 [--preset TTT,Long] [--bench RE]

The grid is split into shards of (file, class) units (runner/shards.py); the local
entrypoint fans out commits x shards with ``run_shard.starmap``, one H100 container per
shard. Each container runs `asv run` for its commit and units into
``/<commit>/<shard key>/`` on the Volume and commits the Volume as soon as it is done, so
a lost container loses only its shard; a re-run plans only the units no finished shard
holds. The entrypoint then downloads the finished shards, merges them into asv's normal
result files under results/<machine>-modal/ (runner/merge.py; a machine of its own, never
the local card's) and builds the report.

Importing this file needs no token and touches no network (tests rely on that);
README.md, "Running on Modal", has the setup, the cost and how results come back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import modal

PROJECT_ROOT = Path(__file__).resolve().parent
REMOTE_PROJECT = "/root/project"
VOLUME_NAME = "gradgrad-attention-shards"
VOLUME_MOUNT = "/shards"
# "H100!" pins the card: plain "H100" lets Modal upgrade a container to an H200 when that is
# free sooner, and an H200 has 43% more memory bandwidth (4.8 vs 3.35 TB/s), so one
# machine's history would mix two cards. We track H100 timings.
GPU = "H100!"
GRID = "gpu"  # the GPU grid (Seed, TTT, Long, Grid, Short classes) of harness/grid.py
# Modal results go to a machine of their own ("<card>-modal", runner.machine.
# modal_machine_name): a Modal host under the local card's name would replace the local
# rows of a commit (the loader keeps the newest per machine) and mix two hosts' histories.
# Whose measured durations balance the shards: Modal's own history, else the local
# single-H100 history (the same card), else the estimate table.
COST_MACHINE = "h100-sxm-80gb-modal"
LOCAL_COST_MACHINE = "h100-sxm-80gb"
# One shard is at most a few classes of the grid; the heaviest class (Long grad-grad) is
# expected in minutes, so 2 h only catches a hung container.
SHARD_TIMEOUT_S = 2 * 3600
LOCAL_SHARDS = PROJECT_ROOT / ".asv" / "modal_local"  # the Volume's stand-in under .local()
# Caches kept on the Volume between containers (issue 20), under /_cache (no commit folder
# has that name): Triton's compiled kernels and autotuning results, one folder per Triton
# version and card (Triton's own keys hold the source, version and target as well), and
# the parity references (harness/refcache.py adds a folder per reference-code hash).
VOLUME_CACHES = "_cache"
STAGING = PROJECT_ROOT / ".asv" / "modal_shards"  # shards downloaded from the Volume
# What the containers get of this checkout: an allow-list, never "everything but ...", so a
# file nobody thought of (.env, .netrc, a key, a cloud credentials file, .git/config with a
# token in a remote URL) stays here. Patterns are modal's own (dockerignore syntax,
# modal.FilePatternMatcher); a pattern naming a folder takes everything under it.
UPLOAD = (
    # The code a shard runs: runner/ drives asv, bench_suite/ is asv's benchmark_dir and
    # imports kernels/ and harness/ (HEAD is measured from this copy, with any uncommitted
    # changes, as `make bench` does); asv.conf.json is read by runner/asv_run.py.
    "kernels",
    "harness",
    "bench_suite",
    "runner",
    "asv.conf.json",
    "modal_runner.py",
    # git status must not count the container's own __pycache__/ as uncommitted changes.
    ".gitignore",
    # Enough of .git for git and asv: resolve HEAD and the commits asked for, say whether
    # kernels/ etc. are dirty (the index), and `git worktree add` any other commit from its
    # objects. Not config (remote URLs may carry a token; git needs no config file for a
    # plain repository), logs (a clone's reflog records the URL it came from), FETCH_HEAD
    # (URLs too), hooks (a post-checkout hook would run in the container), worktrees/.
    ".git/HEAD",
    ".git/objects",
    ".git/refs",
    ".git/packed-refs",
    ".git/index",
    ".git/sharedindex.*",  # the index's other half where split-index is on
    ".git/shallow",  # a shallow clone (CI): without it git finds parentless commits broken
)
# Never, even inside an uploaded folder: dotfiles (.env, .netrc, ...), keys, caches.
NEVER_UPLOAD = (
    "kernels/**/.*",
    "harness/**/.*",
    "bench_suite/**/.*",
    "runner/**/.*",
    "**/id_rsa*",
    "**/id_dsa*",
    "**/id_ecdsa*",
    "**/id_ed25519*",
    "**/*.pem",
    "**/*.key",
    "**/__pycache__",
    "**/*.pyc",
)
_upload = modal.FilePatternMatcher(*UPLOAD)
_never_upload = modal.FilePatternMatcher(*NEVER_UPLOAD)


def project_ignore(path: Path) -> bool:
    """``add_local_dir``'s ignore: True for a path (relative to the checkout) that stays here.

    Not results/: the shard costs are read here, by the local entrypoint, and results come
    back through the Volume. Not Makefile, pyproject.toml, README.md, docs/, reports/,
    tests/: no shard reads them (the project is not installed in the image).
    """
    return not _upload(path) or _never_upload(path)


image = (
    modal.Image.debian_slim(python_version="3.12")
    .apt_install("git")
    # The CUDA 13.0 build of torch 2.11 with its triton 3.6.0: the versions of the lent H100
    # that the committed results come from (docs/baselines.md).
    .pip_install(
        "torch==2.11.0",
        "triton==3.6.0",
        index_url="https://download.pytorch.org/whl/cu130",
        extra_index_url="https://pypi.org/simple",
    )
    .pip_install("asv==0.6.6", "numpy==2.4.6")
    .run_commands("git config --system --add safe.directory '*'")
    .env({"PYTHONUNBUFFERED": "1"})
    .add_local_dir(PROJECT_ROOT, REMOTE_PROJECT, ignore=project_ignore)
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
app = modal.App("gradgrad-attention-bench", image=image)


def _import_project() -> None:
    """Make runner/ importable: the project tree in a container, this checkout locally."""
    root = REMOTE_PROJECT if Path(REMOTE_PROJECT, "runner").is_dir() else str(PROJECT_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def cache_env(root: str | os.PathLike, triton_version: str, gpu_name: str) -> dict[str, str]:
    """The environment that puts a shard's caches under ``root/_cache`` (the Volume): Triton's
    in a folder per Triton version and card (runner/caches.py), the references under one
    root (they key themselves by card and code, harness/refcache.py)."""
    _import_project()
    from runner import caches

    base = Path(root) / VOLUME_CACHES
    return {
        caches.TRITON_CACHE_ENV: str(
            caches.triton_cache_dir(base / "triton", triton_version, gpu_name)
        ),
        "GRADGRAD_REF_CACHE": str(base / "refs"),
    }


def use_volume_caches(root: str | os.PathLike) -> dict[str, str]:
    """Point this container's caches (os.environ, inherited by asv) at the Volume."""
    from importlib import metadata

    try:
        triton_version = metadata.version("triton")
    except metadata.PackageNotFoundError:
        triton_version = "no-triton"
    env = cache_env(root, triton_version, _gpu_name())
    os.environ.update(env)
    return env


def _gpu_name() -> str:
    """The card's name from nvidia-smi (not torch: this process keeps no CUDA context)."""
    try:
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=60).stdout
        return out.splitlines()[0].strip() or GPU
    except (OSError, subprocess.SubprocessError, IndexError):
        return GPU


@app.function(
    gpu=GPU,
    timeout=SHARD_TIMEOUT_S,
    # One retry covers a container lost mid-run; a shard that fails for a reason in the
    # code would fail again, and each try costs the shard's GPU time.
    retries=modal.Retries(max_retries=1, initial_delay=10.0),
    volumes={VOLUME_MOUNT: volume},
)
def run_shard(
    commit: str,
    units: list[str],
    grid: str = GRID,
    bench: str | None = None,
    machine: str | None = None,
    out_root: str | None = None,
    run_commit=None,
) -> dict:
    """Run one shard of one commit; its folder on the Volume is committed when it is done.

    Under ``.local()`` (no container, so no Volume) the folder is ``out_root`` or
    .asv/modal_local/. ``run_commit`` (a callable with runner.asv_run.run_commit's
    signature) replaces the asv runner in tests.
    """
    _import_project()
    from runner import shards as sharding

    in_container = not modal.is_local()
    if out_root:
        root = Path(out_root)
    elif in_container:
        root = Path(VOLUME_MOUNT)
        volume.reload()  # see shards other containers finished since this one started
        use_volume_caches(root)  # committed with the shard's results (volume.commit below)
    else:
        root = LOCAL_SHARDS
    if machine is None:
        from runner.machine import machine_name, modal_machine_name

        machine = modal_machine_name(machine_name())  # 'h100-sxm-80gb-modal'
    result = sharding.run_shard(
        commit, units, root, machine=machine, grid=grid, bench=bench, run_commit=run_commit
    )
    if in_container and not out_root and not result.skipped:
        volume.commit()  # persist now: a later lost container must not take this shard along
    return {**result.manifest, "skipped": result.skipped}


# --- where finished shards live ----------------------------------------------------------


class LocalStore:
    """Shard folders on this disk (the `.local()` path and the tests)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def manifests(self, commit: str) -> dict[str, dict]:
        from runner import shards as sharding

        return {p.name: m for p, m in sharding.completed_shards(self.root, commit).items()}

    def fetch(self, commit: str, keys: Iterable[str]) -> list[Path]:
        return [self.root / commit / key for key in keys]


class VolumeStore:
    """Shard folders on the Modal Volume, downloaded to ``staging`` for merging."""

    def __init__(self, vol: modal.Volume, staging: str | os.PathLike = STAGING):
        self.volume = vol
        self.staging = Path(staging)

    def _files(self, path: str) -> list[str]:
        """Files under ``path`` on the Volume, as paths from the Volume's root."""
        try:
            entries = self.volume.listdir(path, recursive=True)
        except (modal.exception.NotFoundError, FileNotFoundError):  # nothing there yet
            return []
        prefix = path.strip("/") + "/"
        files = []
        for entry in entries:
            if entry.type != modal.volume.FileEntryType.FILE:
                continue
            rel = entry.path.lstrip("/")
            files.append(rel if rel.startswith(prefix) else prefix + rel)
        return files

    def manifests(self, commit: str) -> dict[str, dict]:
        import json

        from runner.shards import MANIFEST

        found = {}
        for path in self._files(commit):
            parts = path.split("/")
            if len(parts) == 3 and parts[2] == MANIFEST:
                manifest = json.loads(b"".join(self.volume.read_file(path)))
                if manifest.get("units"):
                    found[parts[1]] = manifest
        return found

    def fetch(self, commit: str, keys: Iterable[str]) -> list[Path]:
        folders = []
        for key in keys:
            folder = self.staging / commit / key
            shutil.rmtree(folder, ignore_errors=True)  # no file of an older download stays
            for path in self._files(f"{commit}/{key}"):
                dest = self.staging / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as f:
                    self.volume.read_file_into_fileobj(path, f)
            folders.append(folder)
        return folders


# --- the fan-out, testable without the network --------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def orchestrate(
    commits: str,
    n_shards: int,
    *,
    store,
    run_many: Callable[[list], list],
    presets: Sequence[str] | None = None,
    bench: str | None = None,
    results_dir: str | os.PathLike = "results",
    grid: str = GRID,
    grid_regex: str | None = None,
    bench_dir: str | os.PathLike | None = None,
    build_report: bool = True,
    repo: str | os.PathLike = PROJECT_ROOT,
) -> int:
    """Plan the missing shards of every commit, run them, merge what is complete.

    ``run_many`` takes [(commit, units)] and returns one manifest dict or exception per
    call; ``store`` says which shards are finished and brings them here. Returns 0 when
    every commit is complete and merged, 1 otherwise (the finished shards stay put).
    """
    _import_project()
    from runner import git, merge
    from runner import shards as sharding

    hashes = git.resolve_commits(commits, repo)
    if grid_regex is None:
        from runner.asv_run import bench_regex

        grid_regex = bench_regex(grid, list(presets) if presets else None)
    names = sharding.list_benchmarks(bench_dir or sharding.DEFAULT_BENCH_DIR)
    wanted = sharding.select_units(names, grid_regex, bench)
    if not wanted:
        raise SystemExit(f"no benchmarks of grid {grid!r} match presets={presets} bench={bench!r}")

    calls = []
    for commit in hashes:
        missing = sharding.missing_units(wanted, store.manifests(commit), bench)
        measured = sharding.measured_unit_costs(results_dir, COST_MACHINE)
        own = bool(missing) and all(u in measured for u in missing)
        costs = sharding.costs_for(
            missing, results_dir, COST_MACHINE if own else LOCAL_COST_MACHINE
        )
        for shard in sharding.plan_shards(missing, n_shards, costs, bench):
            calls.append((commit, list(shard.units)))
        log(
            f"{commit[:8]}: {len(wanted) - len(missing)}/{len(wanted)} units already done, "
            f"{len(missing)} to run"
        )
    if calls:
        log(f"running {len(calls)} shards ({len(hashes)} commits x <= {n_shards} shards)")
        for outcome in run_many(calls):
            if isinstance(outcome, BaseException):
                log(f"a shard failed: {type(outcome).__name__}: {outcome}")
            else:
                state = (
                    "was already done"
                    if outcome.get("skipped")
                    else (f"done in {outcome['wall_s']:.0f} s on {outcome['host']}")
                )
                log(
                    f"{outcome['commit'][:8]} {outcome['shard']} ({', '.join(outcome['units'])})"
                    f" {state}"
                )

    incomplete = 0
    for commit in hashes:
        manifests = store.manifests(commit)
        missing = sharding.missing_units(wanted, manifests, bench)
        if missing:
            incomplete += 1
            log(
                f"{commit[:8]} is incomplete, not merged: {', '.join(missing)} missing. "
                f"The same command runs only those."
            )
            continue
        taken = sharding.units_by_shard(sharding.assign_units(manifests, wanted, bench))
        keys = sorted(taken)
        folders = store.fetch(commit, keys)
        report = merge.merge_shards(
            {f / sharding.SHARD_RESULTS: taken[k] for f, k in zip(folders, keys, strict=True)},
            results_dir,
        )
        print(report.summary())
        absent = {u for k in keys for u in manifests[k].get("absent_units", [])}
        expected = {n for u, ns in wanted.items() if u not in absent for n in ns}
        for path in report.written:
            if path.name.startswith(commit[:8]):
                lacking, _ = merge.coverage(path, expected)
                if lacking:
                    incomplete += 1
                    log(f"{path} lacks {len(lacking)} benchmarks after the merge: {lacking[:5]}")
    if build_report and not incomplete and (PROJECT_ROOT / "reports" / "__main__.py").is_file():
        log("building the report: python -m reports")
        subprocess.run([sys.executable, "-m", "reports"], cwd=PROJECT_ROOT, check=False)
    return 1 if incomplete else 0


@app.local_entrypoint()
def main(
    commits: str = "HEAD",
    shards: int = 8,
    preset: str = "",
    bench: str = "",
    results_dir: str = "results",
) -> None:
    """`modal run modal_runner.py --commits A..B --shards 8 --preset TTT,Long --bench RE`."""
    presets = [p for p in preset.replace(",", " ").split() if p] or None

    def run_many(calls):
        kwargs = {"bench": bench or None}
        # Unordered: each shard is reported as it ends; failures come back as exceptions.
        return run_shard.starmap(calls, kwargs=kwargs, order_outputs=False, return_exceptions=True)

    rc = orchestrate(
        commits,
        shards,
        store=VolumeStore(volume),
        run_many=run_many,
        presets=presets,
        bench=bench or None,
        results_dir=results_dir,
    )
    if rc:
        raise SystemExit(rc)
