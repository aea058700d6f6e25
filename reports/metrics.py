"""Units, their directions and noise thresholds: the one place the report side defines them.

bench_suite sets the unit of each metric on its benchmark methods (asv's ``unit``
attribute, stored in results/benchmarks.json); this module says, per unit, which
direction is better and how large a change must be before the detector calls it real.

Thresholds (``rel_threshold``, ``abs_floor``): a change counts only when
``|new - old| > rel_threshold * |old|`` AND ``|new - old| > abs_floor`` AND the two
measurements' noise intervals (asv's 99% CI of the median, else the q25-q75 range,
else the samples' q25-q75) do not overlap. GPU ``track_`` metrics carry no asv
statistics (asv stores stats only for ``time_`` benchmarks), so for them the
relative threshold is the whole noise model and must come from an A/A test:
``python -m reports aa <dirA> <dirB>`` prints the largest same-commit difference
per unit and the threshold it implies (1.5x that difference, rounded up to 0.5%).

Values come from the A/A pair committed in results/h100-sxm-80gb (run 1) and
results/h100-sxm-80gb-aa (run 2, sharded): commit c4ea364, seed and ttt presets, one
H100 80GB HBM3, 2026-11-25, 68 series per metric. What it showed:

- timings of 3 ms and more moved at most 0.3% between the runs; timings under 3 ms
  moved up to 39% of run 1's value (0.078 then 0.047 ms): at those sizes a step is
  bound by the host's Python and launch path (the retired gpu_overhead_probe.py,
  docs/probes.md: 1.10 ms of host time per fused training step at the seed shape
  against 0.16 ms of GPU backward), and the host is noisy. So ms
  and TFLOP/s have two regimes, split on the benchmark's own ms (``HOST_BOUND_BELOW_MS``).
- peak MiB and parity were bit-identical for every math and Triton row; only ``sdpa``
  moved (MiB 25%, parity 16%), because the suite keeps the fastest SDPA backend that
  passes parity and cuDNN and flash swapped places between the runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LOWER_IS_BETTER = "lower"
HIGHER_IS_BETTER = "higher"


@dataclass(frozen=True)
class UnitRule:
    """How to read one unit: which way is better and what change is beyond noise."""

    direction: str  # LOWER_IS_BETTER or HIGHER_IS_BETTER
    rel_threshold: float  # relative change that counts (0.05 = 5%)
    abs_floor: float  # absolute change (in the unit) below which nothing counts
    label: str  # axis / column label
    # threshold for a benchmark whose own ms is under HOST_BOUND_BELOW_MS (None: same)
    host_bound_rel_threshold: float | None = None
    # threshold for the rows of BACKEND_CHOICE_MODES (None: same)
    backend_choice_rel_threshold: float | None = None

    @property
    def worse_sign(self) -> int:
        """+1 when an increase is worse (lower is better), -1 when a decrease is worse."""
        return 1 if self.direction == LOWER_IS_BETTER else -1


# Below this many ms a step is host-bound on the lent H100 and its timing is noisy (A/A).
HOST_BOUND_BELOW_MS = 3.0
# bwd_mode values whose implementation is picked per run (the fastest SDPA backend that
# passes parity): cuDNN and flash swapped between the A/A runs, moving memory and parity.
BACKEND_CHOICE_MODES = frozenset({"sdpa"})

UNIT_RULES: dict[str, UnitRule] = {
    # CUDA-event median. A/A: <= 0.3% at >= 3 ms (implied 0.5%; 5% leaves room for other
    # days and cards: the baselines of docs/baselines.md saw 65.26 vs 65.24 ms an hour
    # apart), 39% under 3 ms (TFLOP/s: 65%; implied 97.5%, so 100%: short host-bound steps
    # flag only on doubling).
    "ms": UnitRule(LOWER_IS_BETTER, 0.05, 0.002, "time (ms)", host_bound_rel_threshold=1.0),
    # FLOP model / time: exactly as noisy as "ms", in the other direction.
    "TFLOP/s": UnitRule(HIGHER_IS_BETTER, 0.05, 0.5, "TFLOP/s", host_bound_rel_threshold=1.0),
    # torch.cuda.max_memory_allocated delta. A/A: identical for math and Triton rows, so 1%
    # and 2 MiB (one large-block rounding); SDPA's backend swap moved it 25% (implied 37.5%).
    "MiB": UnitRule(
        LOWER_IS_BETTER, 0.01, 2.0, "peak memory (MiB)", backend_choice_rel_threshold=0.40
    ),
    # bench_suite's host time per call (perf_counter, first 20 timed calls). No A/A yet; the
    # same step in fresh allocations in one process on the lent H100 gave host times
    # spanning 1.57-1.86x (gpu_tuning_stability.py --placement, 2026-11-25, docs/probes.md), so
    # it flags only on doubling, and never under 0.05 ms.
    "host ms": UnitRule(LOWER_IS_BETTER, 1.0, 0.05, "host time (ms)"),
    # bench_suite's GPU time of the step replayed from a CUDA graph (harness.timing.
    # graph_timing): the kernels without Python or launches, so ms's GPU-bound rule (5%,
    # 0.002 ms) and no host-bound regime. PROVISIONAL: no A/A pair yet; replace with what
    # `python -m reports aa` implies once one is committed.
    "graph ms": UnitRule(LOWER_IS_BETTER, 0.05, 0.002, "graph replay time (ms)"),
    # max error vs fp64 / same-dtype math error. A/A: identical but SDPA (16%, implied 24%);
    # 25% for the rest leaves room for a kernel with atomics (ours have none).
    "ratio": UnitRule(
        LOWER_IS_BETTER, 0.25, 0.1, "parity (error / math error)", backend_choice_rel_threshold=0.30
    ),
    # asv's own units, for any time_/peakmem_ benchmark in a suite (e.g. CPU smoke runs).
    "seconds": UnitRule(LOWER_IS_BETTER, 0.10, 0.0, "time (s)"),
    "bytes": UnitRule(LOWER_IS_BETTER, 0.05, 0.0, "memory (bytes)"),
}

# A unit we do not know: asv's own convention (higher value = worse), loose threshold.
UNKNOWN_UNIT_RULE = UnitRule(LOWER_IS_BETTER, 0.10, 0.0, "value")

# Measured bf16 dense matmul ceiling on the lent H100 SXM 80GB (torch.matmul, bf16):
# ~790 TFLOP/s. Source: docs/baselines.md, "Measured bf16 matmul ceiling on the lent H100".
# fp16 runs on the same tensor cores at the same rate, so it is used for both.
H100_BF16_MEASURED_PEAK_TFLOPS = 790.0
# Where the reports (text and HTML) say the peak comes from.
PEAK_SOURCE = "docs/baselines.md"

# Machine names say the GPU (docs/design.md); the prefix picks the peak. No entry, no
# "% of peak".
PEAK_TFLOPS_BY_MACHINE_PREFIX: dict[str, float] = {"h100": H100_BF16_MEASURED_PEAK_TFLOPS}

# The method names of the project's metrics (bench_suite contract) -> short names, in the
# order reports show them. host_ms: GPU runs only, in results from its commit on.
CONTRACT_METRICS = ("ms", "tflops", "peak_mib", "parity", "host_ms")

# Machines holding A/A repeats (same commit measured twice), e.g. "h100-sxm-80gb-aa1":
# kept in the CSV and used by `python -m reports aa`, left out of the latest/HTML report.
AA_MACHINE_PATTERN = re.compile(r"-aa\d*$")


def unit_rule(unit: str | None) -> UnitRule:
    """The rule for ``unit``; unknown or missing units get asv's lower-is-better default."""
    if unit is None or (isinstance(unit, float) and math.isnan(unit)):
        return UNKNOWN_UNIT_RULE
    return UNIT_RULES.get(str(unit), UNKNOWN_UNIT_RULE)


def direction(unit: str | None) -> str:
    return unit_rule(unit).direction


def peak_tflops(machine: str) -> float | None:
    """The measured peak for a machine name, or None when its GPU has no measured peak."""
    for prefix, peak in PEAK_TFLOPS_BY_MACHINE_PREFIX.items():
        if machine.lower().startswith(prefix):
            return peak
    return None


def is_aa_machine(machine: str) -> bool:
    return bool(AA_MACHINE_PATTERN.search(machine))


def implied_threshold(max_rel_diff: float) -> float:
    """Threshold implied by the largest A/A relative difference: 1.5x it, rounded up to 0.5%.

    1.5x leaves headroom for runs on other days than the A/A pair; never below 0.5%.
    """
    steps = math.ceil(max(1.5 * max_rel_diff, 1e-12) / 0.005)
    return max(steps, 1) * 0.005
