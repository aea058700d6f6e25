"""The measuring machinery behind the asv suite in ``bench_suite/``, one concern a module.

- ``grid``: presets, the asv parameter axes, :class:`~harness.grid.Config` (standard
  library only: the runner imports it without torch).
- ``flops``: the one FLOP model every TFLOP/s number comes from (and the Peak ops' work).
- ``peak``: the card's own ceilings (matmul, HBM copy) for ``bench_suite/bench_peak.py``.
- ``impls``: seeded inputs, the three paths, each mode's implementation.
- ``parity``: the chunked fp64 references and the parity gate.
- ``refcache``: those references (fp32-rounded for fp16/bf16) and the math path's errors
  kept on disk across commits (keyed by problem, seed, device and reference code).
- ``timing``: CUDA-event and CPU timers, host time, peak memory.
- ``measure``: the per-preset loop of a ``setup_cache`` and its progress side channel.
- ``quick``: ``python -m harness.quick ...``, one shape without asv.

Every module imports only the standard library at import time; torch is imported inside
the functions. asv's forkserver imports the suite (and so this package) before it forks
the benchmark processes, and nothing may touch the GPU before a benchmark asks for it.
"""
