"""The asv benchmark suite: forward, backward and grad-grad attention, per preset.

Only what asv discovers lives here; the machinery is the ``harness`` package.

- ``bench_forward.py``, ``bench_backward.py``, ``bench_gradgrad.py``: one asv
  class per preset (``Seed``, ``TTT``, ``Long``, ``Grid``, ``Short``, ``CPU``), metrics
  ``track_ms``, ``track_peak_mib``, ``track_parity``, ``track_host_ms``
  and ``track_graph_ms`` (GPU only; the step replayed from a CUDA graph, skipped with
  the reason where it cannot be captured). No TFLOP/s: the reports derive it from the
  times (asv would read a rate's gain as a regression).
- ``bench_peak.py``: ``Peak``, the card's own ceilings (dense bf16/fp16 matmul, HBM
  copy; ``track_ms`` per ``op``), run once with every GPU run (harness/peak.py).
- ``base.py``: their shared body (``PresetBenchmark``): setup and the track_* lookups.

asv imports every module here in each of its processes: nothing may touch the GPU at
import time, so these import only the standard library, asv_runner and ``harness``
(which imports torch inside its functions).
"""
