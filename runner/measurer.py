"""The measuring process of one commit's run, seen from the runner (harness/worker.py).

:class:`Measurer` starts ``python -m harness.worker RECORDS`` in the commit's source tree
on first use, sends it the classes an ``asv run`` is about to read (and, for the first
of a GPU run, the card's ceilings, ``bench_peak.Peak``), and waits for its answer; the
records land in the run's temporary folder (harness/records.py), where the classes'
setup_caches find them. It is restarted after a class failed (the worker exits:
a CUDA error may have poisoned its context) or died (a crash: its log's tail is printed).
A class it did not measure is measured in place by asv's own processes, as before.

A commit whose tree has no harness/worker.py (older than this) is measured the old way:
:func:`supported` says which. A worker that predates the card's ceilings ignores the
request for them; asv then measures ``Peak`` in a process of its own, as before.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

WORKER = ("harness", "worker.py")
CLASS_TIMEOUT_S = 1800.0  # per class, as asv's setup_cache timeout (bench_suite/base.py)
PEAK_TIMEOUT_S = 300.0  # the card's ceilings: bench_suite/bench_peak.py's timeout


def supported(src: str | Path) -> bool:
    """Whether the source tree has the measuring process and the records its suite reads."""
    src = Path(src)
    return src.joinpath(*WORKER).is_file() and (src / "harness" / "records.py").is_file()


class Measurer:
    def __init__(
        self,
        python: str,
        src: str | Path,
        env: dict,
        records: str | Path,
        log: str | Path,
        *,
        preexec_fn: Callable[[], None] | None = None,
        say: Callable[[str], None] = print,
    ):
        self.python, self.src, self.env = python, Path(src), env
        self.records, self.log = Path(records), Path(log)
        self.preexec_fn, self.say = preexec_fn, say
        self.proc: subprocess.Popen | None = None
        self._exiting: list[subprocess.Popen] = []  # told to exit (finish), not reaped yet
        self.started = 0  # processes started (the cost record's "measuring_processes")
        self.timeout_s = CLASS_TIMEOUT_S

    def _start(self) -> subprocess.Popen:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self.records.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "harness.worker", str(self.records)],
                cwd=self.src,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                preexec_fn=self.preexec_fn,
            )
        self.started += 1
        return self.proc

    def measure(self, classes: Sequence[tuple[str, str]], peak: bool = False) -> tuple[list, list]:
        """Measure ``classes`` [(preset, path)], then with ``peak`` the card's ceilings
        (records.PEAK; a tree older than that ignores it); (measured, failed), each [(preset,
        path)]. A class in neither was not measured (the process died, or an older worker):
        asv measures it in place."""
        if not classes and not peak:
            return [], []
        proc = self._start()
        t0 = time.time()
        request = {"classes": [list(c) for c in classes], **({"peak": True} if peak else {})}
        limit = self.timeout_s * len(classes) + (PEAK_TIMEOUT_S if peak else 0.0)
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            line = self._answer(proc, limit)
        except (BrokenPipeError, OSError):
            line = ""
        if line is None:  # hung: asv's setup_cache timeout would have ended it too
            proc.kill()
            proc.wait()
            self.proc = None
            self.say(
                f"the measuring process took over {limit:.0f} s; "
                "killed. asv measures what it left in its own processes."
            )
            return [], []
        if not line:
            code = proc.wait()
            self.proc = None
            self.say(
                f"the measuring process died (exit {code}) after {time.time() - t0:.0f} s; "
                f"asv measures what it left in its own processes. Its log ({self.log}) ends:\n"
                + self._log_tail()
            )
            return [], []
        answer = json.loads(line)
        done = [tuple(c) for c in answer.get("done", [])]
        failed = [tuple(c) for c in answer.get("failed", [])]
        if failed:  # it exits after a failure; the next request starts a fresh one
            proc.wait()
            self.proc = None
        return done, failed

    @staticmethod
    def _answer(proc: subprocess.Popen, timeout: float) -> str | None:
        """Its answer line ("" at EOF), or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 60.0))
            if ready:
                return proc.stdout.readline()

    def finish(self) -> None:
        """No more requests: the process gets EOF and exits, not waited for, so that its
        exit (torch's and CUDA's teardown: 0.3-0.7 s on the dev VM) overlaps the last
        ``asv run``, which only reads records; :meth:`close` reaps it. A later
        :meth:`measure` starts a fresh process."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            self._exiting.append(proc)

    def close(self, timeout: float = 30.0) -> None:
        self.finish()
        procs, self._exiting = self._exiting, []
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def _log_tail(self, limit: int = 3000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-limit:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
