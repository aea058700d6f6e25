"""asv's benchmark processes, in asv's own process, for the classes already measured.

Loaded by the runner's asv wrapper (runner/asv_run.py ``_ASV_MAIN``) inside asv's main
process, by file path (it must not put this checkout's packages on asv's import path: the
suite and harness come from the measured commit's tree), when the run's records folder is
set (``$BENCH_SUITE_RECORDS``, harness/records.py). :func:`install` replaces
``asv.runner.get_spawner`` with :class:`RecordsSpawner`.

Why: asv starts a process per class for ``setup_cache`` and forks one per benchmark *and
parameter combination*: 1422 forks for the GPU grid (237 combinations x 6 metrics), about
40 ms each on the H200 host (61.7 s of the cold grid, 16.9 s of a warm TTT run, issue 20).
For a class the runner's measuring process (harness/worker.py) has measured, the
setup_cache only reads the records and every ``track_*`` is a dictionary lookup: process
isolation buys nothing there. So :class:`RecordsSpawner` runs both in this process, with
asv_runner's own functions (``_setup_cache``, ``_run``: the same code a forked child
runs, the same cache.pickle, the same result file), and hands every other class (no
records: an older commit, a class the measuring process never reached, a benchmark
without setup_cache) to the spawner asv would have used (forkserver), started on first
use. asv's discovery, result handling and saving are untouched; benchmark names,
versions and values are the same. Each lookup builds its Benchmark afresh, as a child
would, but without reading and hashing its methods' source again
(:func:`memoize_source_hashing`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback

_RECORDS_ENV = "BENCH_SUITE_RECORDS"  # harness.records.RECORDS_ENV (not imported from here)


def install(records_root: str) -> None:
    """Make asv use :class:`RecordsSpawner` (records in ``records_root``)."""
    import asv.runner

    real = asv.runner.get_spawner

    def get_spawner(env, benchmark_dir, launch_method):
        return RecordsSpawner(env, benchmark_dir, launch_method, real, records_root)

    asv.runner.get_spawner = get_spawner


class RecordsSpawner:
    """asv's Spawner interface (create_setup_cache, run, preimport, interrupt, close)."""

    def __init__(self, env, benchmark_dir, launch_method, real_get_spawner, records_root):
        from asv_runner._aux import update_sys_path

        self._args = (env, benchmark_dir, launch_method)
        self._get_real = real_get_spawner
        self._real = None
        self.benchmark_dir = os.path.abspath(benchmark_dir)
        self.records_root = records_root
        self.in_process: set[str] = set()  # setup_cache folders made here
        self.counts = {"in_process": 0, "spawned": 0}
        # what a benchmark process has: the commit's tree first (asv gives them
        # ASV_PYTHONPATH as PYTHONPATH), the suite importable by its folder's name
        src = [p for p in os.environ.get("ASV_PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:0] = [p for p in src if p not in sys.path]
        update_sys_path(self.benchmark_dir)

    # -- which classes are served here ---------------------------------------------------

    def _recorded(self, benchmark_id: str) -> bool:
        """Whether the measuring process left usable records for this benchmark's class
        (a recorded failure counts: the setup_cache raises it here as it would there)."""
        try:
            from harness import records
        except ImportError:  # a commit without harness/records.py: asv's way
            return False
        found = records.class_of(benchmark_id)
        if found is None:
            return False
        try:
            return records.recorded(*found, root=self.records_root) is not None
        except records.RecordedFailure:
            return True
        except Exception:  # noqa: BLE001 -- anything odd: asv's way
            return False

    def _spawner(self):
        if self._real is None:
            self._real = self._get_real(*self._args)
            ok, out = self._real.preimport()
            if not ok:
                print(out, file=sys.stderr, flush=True)
        return self._real

    # -- asv's Spawner interface ---------------------------------------------------------

    def preimport(self):
        return True, ""  # the suite is imported on first use; a failure fails that class

    def create_setup_cache(self, benchmark_id, timeout, params_str):
        if not self._recorded(benchmark_id):
            self.counts["spawned"] += 1
            return self._spawner().create_setup_cache(benchmark_id, timeout, params_str)
        from asv_runner.setup_cache import _setup_cache

        self.counts["in_process"] += 1
        cache_dir = tempfile.mkdtemp()
        ok, out = _call_in(cache_dir, _setup_cache, (self.benchmark_dir, benchmark_id, params_str))
        if ok:
            self.in_process.add(cache_dir)
            return cache_dir, None
        _rmtree(cache_dir)
        return None, (out + "\nasv: setup_cache failed (exit status 1)").strip()

    def run(self, name, params_str, profile_path, result_file_name, timeout, cwd):
        if cwd is None or cwd not in self.in_process:
            return self._spawner().run(
                name, params_str, profile_path, result_file_name, timeout, cwd
            )
        from asv_runner.run import _run

        memoize_source_hashing()

        args = (self.benchmark_dir, name, params_str, profile_path, result_file_name)
        ok, out = _call_in(cwd, _run, args)
        return out, 0 if ok else 1

    def interrupt(self):
        if self._real is not None:
            self._real.interrupt()

    def close(self):
        if self._real is not None:
            self._real.close()
        print(
            f"asv: {self.counts['in_process']} classes read from the measured records in "
            f"asv's process, {self.counts['spawned']} set up in processes of their own",
            flush=True,
        )


def memoize_source_hashing() -> None:
    """asv_runner's ``_run`` builds a Benchmark per lookup, as a forked child does, and its
    constructor reads and hashes the source of the benchmark's methods every time (inspect
    and tokenize: ~1 ms, most of a lookup's cost on the dev VM; 1188 lookups in a GPU
    grid) for a version and code ``_run`` never reads. The functions and their files do not
    change within this process, so those three pure helpers are memoized by function (by
    text for the fingerprint); the Benchmark, its class instance and everything ``_run``
    uses stay fresh per lookup."""
    from asv_runner.benchmarks import _base

    if getattr(_base.get_source_code, "memoized", False):
        return
    _base.get_source_code = _memo(
        _base.get_source_code, lambda items: tuple(_function(f) for f in items), listed=True
    )
    _base.get_setup_cache_key = _memo(_base.get_setup_cache_key, _function)
    _base.code_fingerprint = _memo(_base.code_fingerprint, lambda code: code)


def _function(f):
    return getattr(f, "__func__", f)  # a bound method of this lookup's instance: its function


def _memo(fn, key_of, listed=False):
    cache: dict = {}

    def memoized(arg):
        arg = list(arg) if listed else arg
        key = key_of(arg)
        if key not in cache:
            cache[key] = fn(arg)
        return cache[key]

    memoized.memoized = True
    return memoized


def _call_in(cwd: str, fn, args) -> tuple[bool, str]:
    """fn(args) with ``cwd`` as the working folder (asv_runner reads and writes
    cache.pickle there); (True, "") or (False, the traceback), as a forked child exits 0
    or prints its traceback and exits 1."""
    old = os.getcwd()
    try:
        os.chdir(cwd)
        fn(args)
        return True, ""
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 -- a child would print it and exit 1
        return False, traceback.format_exc()
    finally:
        os.chdir(old)


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
