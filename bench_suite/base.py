"""The asv classes' shared body: setup looks a combination up, track_* return its numbers.

The measuring is harness.measure's (one ``setup_cache`` process per preset and path);
here is only what asv calls per combination, in cheap forks. asv hashes the source of
``setup`` and each ``track_*`` method (and of each class's ``setup_cache``) into the
benchmark's version, and ``asv publish`` / ``asv compare`` set results of another
version aside: change their text only with a reason to break the history. That is also
why the bench_*.py files import harness.measure as ``common``: their setup_cache reads
``common.measure_preset(self.preset, self.path)``, the text the committed results were
hashed with (when the machinery lived in bench_suite/common.py).

No TFLOP/s track (issue 15 item 3): asv reads every track as lower-is-better, so ``asv
compare`` and ``asv publish`` showed a TFLOP/s gain as a regression. The reports derive
TFLOP/s from ``track_ms`` and ``track_graph_ms`` with harness/flops.py (reports/derived.py);
``python -m runner.integrity migrate`` dropped the stored ``track_tflops`` rows.

Imports only the standard library, asv_runner and harness.grid (asv imports this module
in every process, and nothing may touch the GPU before a benchmark asks for it).
"""

import abc

from harness.grid import PARAM_NAMES

try:  # raised from a benchmark body, asv records "skipped" (n/a) instead of a failure
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # asv not installed (the quick CLI, plain imports)

    class SkipNotImplemented(NotImplementedError):
        pass


class PresetBenchmark(abc.ABC):
    """Base of every asv class: one preset of one path.

    A subclass sets ``path``, ``preset``, ``params = asv_params(preset, path)`` and its
    own one-line ``setup_cache`` (asv keys the cache by the function's module and line,
    so a shared one in this module would be shared by all classes). Abstract, so
    asv's discovery does not take this base for a benchmark.
    """

    param_names = PARAM_NAMES
    timeout = 1800  # setup_cache measures the whole preset in one process

    @property
    @abc.abstractmethod
    def path(self) -> str:  # "forward", "backward" or "gradgrad"
        ...

    def setup(self, cache, *params):
        if "unavailable" in cache:
            raise NotImplementedError(cache["unavailable"])
        record = cache.get(tuple(params))
        if record is None:
            raise NotImplementedError(f"{params} is not in this preset")
        if record.status == "skip":
            raise NotImplementedError(record.reason)
        self.record = record

    def _value(self, metric: str):
        rec = self.record
        if rec.status == "fail" and not (metric == "parity" and rec.parity is not None):
            raise RuntimeError(f"{self.path}: {rec.reason}")
        value = getattr(rec, metric)
        if value is None:
            raise SkipNotImplemented(f"no {metric} on this device")
        return value

    def track_ms(self, cache, *params):
        return self._value("ms")

    track_ms.unit = "ms"

    def track_peak_mib(self, cache, *params):
        return self._value("peak_mib")

    track_peak_mib.unit = "MiB"

    def track_parity(self, cache, *params):
        return self._value("parity")

    track_parity.unit = "ratio"

    def track_host_ms(self, cache, *params):
        return self._value("host_ms")

    track_host_ms.unit = "host ms"  # its own unit: its own noise rule (reports/metrics.py)

    def track_graph_ms(self, cache, *params):
        # New in issue 15: a method of its own, so the other metrics' asv versions stay.
        rec = self.record
        if rec.status == "ok" and getattr(rec, "graph_ms", None) is None:
            raise SkipNotImplemented(getattr(rec, "graph_reason", "") or "no graph replay")
        return self._value("graph_ms")

    track_graph_ms.unit = "graph ms"  # CUDA-graph replay: the kernels' time, its own rule
