"""One process that measures every class of a run: ``python -m harness.worker RECORDS_DIR``.

runner/asv_run.py starts it once per commit measured (in the commit's source tree, with
the run's environment) and, before each ``asv run``, asks it for the classes that run
will read: one JSON line on stdin, ``{"classes": [[preset, path], ...], "peak": true}``.
For each class it calls :func:`harness.measure.measure_preset` (the very code a
``setup_cache`` runs, progress events included) and stores the result or the failure with
:func:`harness.records.write`; with ``"peak"`` (the run's first preset on a GPU), then the
card's ceilings, :func:`harness.peak.measure` (``bench_peak.Peak``'s ``setup_cache``),
stored as ``records.PEAK``. Then it answers one JSON line, ``{"done": [[preset, path],
...], "failed": [...]}`` (``records.PEAK`` among them), on its original stdout.
Everything else it or a library prints goes to stderr (the runner sends that to a log
file), so the answers cannot be garbled. EOF on stdin: exit 0.

So torch is imported, CUDA started, and each kernel compiled and tuned once per commit,
not once per class, and the backward's forward calls find the forward's kernels (and
tunings) in memory. Measuring a class here is measuring it in a setup_cache: same
function, same order of configs and modes, one ``free_memory`` between configs, as in
a fresh process apart from what is cached (compiled kernels, autotune choices, cuBLAS
handles), which is what the first call (``first_call_s``, not timed) pays for.

After a class fails (measure_preset raised: a harness bug, a CUDA error that may have
poisoned this process's context) it answers and exits with status 3: the runner starts a
fresh one for the next request, and a class it never measured is measured in place by
asv's own processes (harness/records.py), as before.
"""

from __future__ import annotations

import json
import os
import sys

FAILED_EXIT = 3


def serve(root: str, requests, answer) -> int:
    from harness import records
    from harness.measure import measure_preset

    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        classes = [tuple(c) for c in request["classes"]]
        if request.get("peak"):
            classes.append(records.PEAK)  # after the preset's classes, as asv ran it
        done, failed = [], []
        for preset, path in classes:
            try:
                if (preset, path) == records.PEAK:
                    results = _measure_peak()
                else:
                    results = measure_preset(preset, path)
            except Exception as exc:  # noqa: BLE001 -- the class's failure, as in asv
                records.write(root, preset, path, failed=f"{type(exc).__name__}: {exc}")
                failed.append([preset, path])
                break
            records.write(root, preset, path, results=results)
            done.append([preset, path])
        answer.write(json.dumps({"done": done, "failed": failed}) + "\n")
        answer.flush()
        if failed:
            return FAILED_EXIT
    return 0


def _measure_peak() -> dict:
    from harness import peak

    return peak.measure()  # this process has no records folder: it measures


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m harness.worker RECORDS_DIR", file=sys.stderr)
        return 2
    # answers on the original stdout; anything else printed to fd 1 goes to stderr
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with answer:
        return serve(argv[0], sys.stdin, answer)


if __name__ == "__main__":
    sys.exit(main())
