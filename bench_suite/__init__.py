"""The asv benchmark suite: forward, backward and grad-grad attention, per preset.

- ``common.py``: presets/grids, input factory, FLOP model, parity gate, timers
  (one source of truth each). Imports only the standard library at import time:
  asv imports every module here in each of its processes, and nothing may touch
  the GPU before a benchmark asks for it.
- ``bench_forward.py``, ``bench_backward.py``, ``bench_gradgrad.py``: one asv
  class per preset (``Seed``, ``TTT``, ``Long``, ``Grid``, ``Short``, ``CPU``), metrics
  ``track_ms``, ``track_tflops``, ``track_peak_mib``, ``track_parity``, ``track_host_ms``
  (GPU only).
- ``quick.py``: ``python -m bench_suite.quick ...`` for a quick look without asv.
"""
