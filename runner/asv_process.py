"""How the runner starts and stops asv: the patched asv entry point, and the process
controls around it (runner/asv_run.py uses them once per ``asv run``).

- :data:`ASV_MAIN`: the ``python -c`` program that runs asv with the runner's patches;
- :func:`run_asv`: asv in the runner's process group, killed if the runner dies;
- :func:`stop_run`: on Ctrl-C/SIGTERM, every process of the run ended (they carry the
  run's token: runner/integrity.py), the runner deaf to signals until they are gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from pathlib import Path

from runner import integrity

# asv, with five patches of asv itself, for this process only (argv[1:6] are popped):
# - its machine file is read from a per-run file (argv[1]), not ~/.asv-machine.json;
# - its temporary folders (forkserver sockets, result files) go into a per-run folder
#   (argv[2]) that the runner removes whatever happened to asv;
# - the existing environment is named after argv[3] (integrity.PYTHON_LABEL), not after the
#   interpreter's path: result file names and fields carry no host paths (trap 12);
# - (argv[4], the path of runner/asv_inproc.py, or "") the classes the measuring process
#   measured (harness/records.py) run their setup_cache and track_* in asv's process;
# - (argv[5], a file in the commit's run folder, or "") benchmark discovery (a process
#   that imports the suite, ~0.45 s on the dev VM) runs in the first ``asv run`` of a
#   commit, which leaves the list there; the commit's later runs (one per preset) read it.
#   The list is all of the suite's benchmarks (--bench filters it afterwards), so it is
#   the same for every run of one source tree and environment: the file is used only
#   for the same benchmark folder, environments and commits;
# and its child processes (forkserver, discovery) are killed when asv dies (PDEATHSIG).
ASV_MAIN = """\
import ctypes, signal, subprocess, sys, tempfile
machine_file, tempfile.tempdir, label = sys.argv.pop(1), sys.argv.pop(1), sys.argv.pop(1)
inproc, discovered = sys.argv.pop(1), sys.argv.pop(1)
import asv.environment as E
import asv.machine
asv.machine.MachineCollection.get_machine_file_path = staticmethod(lambda: machine_file)
_init = E.ExistingEnvironment.__init__
def _named_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self._python = label
E.ExistingEnvironment.__init__ = _named_init
E.ExistingEnvironment.name = property(
    lambda self: E.get_env_name(self.tool_name, self._python, {}, self._tagged_env_vars))
_libc = ctypes.CDLL(None)
_popen_init = subprocess.Popen.__init__
def _popen(self, *args, preexec_fn=None, **kwargs):
    def preexec():
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if preexec_fn is not None:
            preexec_fn()
    _popen_init(self, *args, preexec_fn=preexec, **kwargs)
subprocess.Popen.__init__ = _popen
if inproc:  # classes measured by the runner's measuring process: read in this process
    import importlib.util, os
    spec = importlib.util.spec_from_file_location("_gradgrad_asv_inproc", inproc)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install(os.environ["BENCH_SUITE_RECORDS"])
if discovered:  # one discovery per commit, reused by its later asv runs
    import json, os
    from asv.benchmarks import Benchmarks
    from asv.console import log
    _discover = Benchmarks._disc_benchmarks.__func__
    def _disc_once(cls, conf, repo, environments, commit_hashes, check):
        key = [os.path.abspath(conf.benchmark_dir), [e.name for e in environments],
               list(commit_hashes)]
        if not check and os.path.isfile(discovered):
            with open(discovered) as f:
                saved = json.load(f)
            if saved.get("key") == key:
                log.info("Discovering benchmarks: this commit's first asv run found them")
                return saved["benchmarks"]
        found = _discover(cls, conf, repo, environments, commit_hashes, check)
        with open(discovered + ".tmp", "w") as f:
            json.dump({"key": key, "benchmarks": found}, f)
        os.replace(discovered + ".tmp", discovered)
        return found
    Benchmarks._disc_benchmarks = classmethod(_disc_once)
from asv.main import main
sys.exit(main())
"""


def run_asv(cmd: list[str], cwd: Path, env: dict) -> int:
    """asv in this process group (a signal to the group reaches it), killed if this process
    dies (PDEATHSIG); its exit status. On KeyboardInterrupt subprocess.run kills asv
    (SIGKILL): its forkserver dies with it (PDEATHSIG), :func:`stop_run` ends the rest."""
    return subprocess.run(cmd, cwd=cwd, env=env, preexec_fn=die_with_parent).returncode


def die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_run(token: str) -> None:
    """End asv, its forkserver and the benchmark processes of this run (all of them carry
    ``token``), with this process deaf to further Ctrl-C/SIGTERM until they are gone."""
    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        ended, killed = integrity.terminate_marked(token, grace=10.0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    forced = f", {killed} of them with SIGKILL" if killed else ""
    print(
        f"stopped the run's processes: asv, and {ended} of its forkserver and benchmark "
        f"processes still running{forced}; its temporary folders are removed",
        flush=True,
    )
