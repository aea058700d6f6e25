"""What keeps results/ whole: atomic writes, a lock per results folder, the process tree.

Standard library only (Linux: flock, /proc, prctl).

- :func:`atomic_write_text`: a unique temporary file next to the target, fsync'd, then
  ``os.replace``: a reader (or a crash, or SIGKILL) sees the old file or the new one,
  never a partial or empty one, and two writers never share a temporary file.
- :class:`FolderLock`: ``flock`` on ``results/.<machine>.lock`` (gitignored), holding pid, host,
  command and start time so that a waiting writer can say who it waits for. The kernel
  drops the lock when its holder dies, SIGKILL included: no stale locks. Re-entrant
  within one process (the runner holds results/<machine> and merges into it).
- Processes: asv puts each of its children (the forkserver, whose forks are the benchmark
  processes) in a process group of its own, so no group signal reaches them all. The
  runner marks asv's environment with a per-run token (:data:`RUN_TOKEN_ENV`) that every
  descendant inherits, and :func:`terminate_marked` finds them in /proc and ends them,
  SIGTERM then SIGKILL, wherever they were re-parented.
- :data:`ENV_NAME`: the asv environment name the runner records, without host paths.
- ``python -m runner.integrity migrate``: result files renamed to :data:`ENV_NAME`, and the
  rows of retired benchmarks (:data:`RETIRED_METHODS`) dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# asv names an existing environment after its interpreter's path ("existing-py" + the path
# with "/" -> "_"), which puts host paths (a home directory) into committed file names. The
# runner makes asv use this label as the environment's python instead: the file names are
# <commit8>-existing-py3.json and "python" is "3" in every result file of every machine.
PYTHON_LABEL = "3"
ENV_NAME = f"existing-py{PYTHON_LABEL}"

# results/.<machine>.lock: one writer per machine folder (beside it: taking the lock
# creates no folder); results/.benchmarks.json.lock: held only while merging that file.
BENCHMARKS_LOCK = ".benchmarks.json.lock"
TMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` through a unique temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp makes it 0600; keep the file's mode (or 0644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Compact JSON like asv's util.write_json, atomically."""
    return atomic_write_text(path, json.dumps(data, separators=(",", ":")))


def remove_stale_tmp(folder: Path, name: str = "*") -> None:
    """Temporary files of ``name`` (a glob) that a killed writer left in ``folder``; call
    with the lock that covers those files held."""
    for p in Path(folder).glob(f".{name}.*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            p.unlink()


# --------------------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------------------


class LockBusy(RuntimeError):
    """The folder is locked by another writer (the message names it)."""


_held: dict[Path, list] = {}  # lock file -> [fd, depth]: re-entrant within this process


def _describe(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (its details are not written yet)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {since} "
        f"({time.time() - info.get('since', time.time()):.0f} s): {info.get('command')}"
    )


class FolderLock:
    """An exclusive lock on one results folder: ``.<folder name>.lock`` beside it, or
    ``<folder>/<name>`` given a name.

    ``timeout``: seconds to wait for it (None: forever, 0: fail at once); while waiting, a
    line naming the holder is printed at once and every ``report_every`` seconds.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        name: str | None = None,
        timeout: float | None = None,
        report_every: float = 30.0,
        say: Callable[[str], None] | None = None,
    ):
        self.folder = Path(folder).resolve()
        if name is None:
            self.file = self.folder.parent / f".{self.folder.name}.lock"
        else:
            self.file = self.folder / name
        self.timeout, self.report_every = timeout, report_every
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def __enter__(self) -> FolderLock:
        held = _held.get(self.file)
        if held is not None:
            held[1] += 1
            return self
        self.file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        started = time.monotonic()
        next_report = started
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - started
                    if self.timeout is not None and waited >= self.timeout:
                        raise LockBusy(
                            f"{self.folder} is locked by {_describe(self.file)}; "
                            f"it allows one writer at a time (gave up after {waited:.0f} s)"
                        ) from None
                    if time.monotonic() >= next_report:
                        self.say(
                            f"waiting for the lock on {self.folder} ({waited:.0f} s so far): "
                            f"held by {_describe(self.file)}"
                        )
                        next_report += self.report_every
                    time.sleep(0.05)
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": " ".join(sys.argv) or sys.executable,
                "since": time.time(),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        _held[self.file] = [fd, 1]
        return self

    def __exit__(self, *exc) -> None:
        held = _held[self.file]
        held[1] -= 1
        if held[1] == 0:
            del _held[self.file]
            with contextlib.suppress(OSError):
                os.ftruncate(held[0], 0)
            os.close(held[0])  # closing the descriptor releases the flock


@contextlib.contextmanager
def folder_locks(folders: Iterable[str | os.PathLike], **kw):
    """Locks on several folders, always taken in the same (sorted) order: no deadlock."""
    with contextlib.ExitStack() as stack:
        for folder in sorted({Path(f).resolve() for f in folders}):
            stack.enter_context(FolderLock(folder, **kw))
        yield


# --------------------------------------------------------------------------------------
# The process tree
# --------------------------------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process, not to init (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


RUN_TOKEN_ENV = "GRADGRAD_RUN_TOKEN"


def marked(token: str) -> list[int]:
    """Live processes whose environment holds ``RUN_TOKEN_ENV=token`` (from /proc): asv,
    its forkserver and the benchmark processes of one run, whoever their parent is now."""
    needle = f"{RUN_TOKEN_ENV}={token}".encode()
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry))
    return pids


def _reap(pids: Iterable[int]) -> None:
    """Collect those of ``pids`` that are exited children of this process (re-parented
    orphans included: :func:`become_subreaper`), so they leave no zombies."""
    for p in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(p, os.WNOHANG)


def terminate_marked(token: str, grace: float = 10.0) -> tuple[int, int]:
    """SIGTERM every process of the run ``token``, SIGKILL what is left after ``grace``
    seconds; returns (processes ended, of them by SIGKILL)."""
    seen: set[int] = set()
    killed = 0
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        pids = marked(token)
        if not pids:
            break
        seen.update(pids)
        if sig == signal.SIGKILL:
            killed = len(pids)
        for p in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(seen)
            if not marked(token):
                break
            time.sleep(0.05)
    _reap(seen)
    return len(seen), killed


# --------------------------------------------------------------------------------------
# Environment names without host paths
# --------------------------------------------------------------------------------------


def migrate_env_names(results_dir: str | os.PathLike = "results") -> list[tuple[Path, Path]]:
    """Rename result files of asv's path-named existing environments
    (``<commit8>-existing-py_opt_torch_.venv_bin_python3.json``) to :data:`ENV_NAME` and set
    their ``env_name``, ``python`` and ``params.python``; returns (old, new) pairs. A file
    already there under the new name is merged (the same benchmark with different rows is
    an error, raised before anything is written). Takes each machine folder's lock."""
    results_dir = Path(results_dir)
    moves: list[tuple[Path, Path]] = []
    for folder in sorted(p for p in results_dir.iterdir() if (p / "machine.json").is_file()):
        with FolderLock(folder):
            plan: dict[Path, list[tuple[Path, dict]]] = {}
            for path in sorted(folder.glob("*-existing-py*.json")):
                data = json.loads(path.read_text())
                if data.get("env_name") == ENV_NAME or not str(data.get("env_name", "")).startswith(
                    "existing-py"
                ):
                    continue
                data["env_name"] = ENV_NAME
                data["python"] = PYTHON_LABEL
                data.setdefault("params", {})["python"] = PYTHON_LABEL
                new = folder / f"{path.name.split('-', 1)[0]}-{ENV_NAME}.json"
                plan.setdefault(new, []).append((path, data))
            merged_files: dict[Path, dict] = {}
            for new, parts in plan.items():
                if new.is_file():
                    parts = [(new, json.loads(new.read_text())), *parts]
                merged = parts[0][1]
                for source, data in parts[1:]:
                    for name, row in data["results"].items():
                        if merged["results"].get(name, row) != row:
                            raise ValueError(f"{name} differs between {parts[0][0]} and {source}")
                        merged["results"][name] = row
                merged_files[new] = merged
            for new, merged in merged_files.items():
                write_json(new, merged)
                for old, _ in plan[new]:
                    if old != new:
                        old.unlink()
                        moves.append((old, new))
    return moves


# --------------------------------------------------------------------------------------
# Benchmarks the suite no longer has
# --------------------------------------------------------------------------------------

# track methods dropped from the suite, whose stored rows ``migrate`` removes from results/ so
# that ``asv compare`` and ``asv publish`` stop showing them. track_tflops (issue 15 item 3):
# asv reads every track as lower-is-better, so a TFLOP/s gain showed as a regression; the
# reports derive TFLOP/s from the times now (reports/derived.py).
RETIRED_METHODS = ("track_tflops",)


def _retired(name: str, methods: tuple[str, ...]) -> bool:
    return name.rpartition(".")[2] in methods


def drop_retired_benchmarks(
    results_dir: str | os.PathLike = "results", methods: tuple[str, ...] = RETIRED_METHODS
) -> list[tuple[Path, int]]:
    """Remove the rows of ``methods`` from every result file under ``results_dir`` and their
    entries from its benchmarks.json; returns (file, rows removed) per file changed.
    Idempotent; each machine folder's lock and benchmarks.json's lock are held while writing,
    and every file is replaced atomically."""
    results_dir = Path(results_dir)
    changed: list[tuple[Path, int]] = []
    for folder in sorted(p for p in results_dir.iterdir() if (p / "machine.json").is_file()):
        with FolderLock(folder):
            for path in sorted(folder.glob("*.json")):
                if path.name == "machine.json":
                    continue
                data = json.loads(path.read_text())
                results = data.get("results") if isinstance(data, dict) else None
                if not isinstance(results, dict):
                    continue
                gone = [name for name in results if _retired(name, methods)]
                if gone:
                    for name in gone:
                        del results[name]
                    write_json(path, data)
                    changed.append((path, len(gone)))
    meta = results_dir / "benchmarks.json"
    if meta.is_file():
        with FolderLock(results_dir, name=BENCHMARKS_LOCK):
            data = json.loads(meta.read_text())
            gone = [name for name in data if _retired(name, methods)]
            if gone:
                for name in gone:
                    del data[name]
                # indented as asv and runner.merge write it, in its own order: a diff of
                # deletions only
                atomic_write_text(meta, json.dumps(data, indent=4))
                changed.append((meta, len(gone)))
    return changed


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m runner.integrity")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser(
        "migrate",
        help=f"rename path-named result files to {ENV_NAME}; drop the rows of retired "
        f"benchmarks ({', '.join(RETIRED_METHODS)})",
    )
    m.add_argument("results_dir", nargs="?", default="results")
    args = p.parse_args(argv)
    for old, new in migrate_env_names(args.results_dir):
        print(f"{old} -> {new.name}")
    for path, n in drop_retired_benchmarks(args.results_dir):
        print(f"{path}: dropped {n} retired benchmark(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
