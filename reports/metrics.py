"""Units, their directions and noise rules: the one place the report side defines them.

bench_suite sets the unit of each metric on its benchmark methods (asv's ``unit``
attribute, stored in results/benchmarks.json); this module says, per unit, which
direction is better and how large a change must be before the gate calls it real
(reports/regress.py applies it; reports/README.md "Regression rule" says it in words).

Three things decide a step of one series:

- the **minimum effect** (``UnitRule.rel_threshold``, plus ``abs_floor`` in the unit):
  a change smaller than this is never news, however quiet the series (typed in here: it
  is a policy, "what size of change do we care about", not a measurement);
- the **A/A noise** of the row's unit and regime on the row's card, a floor under the minimum
  effect: what moves between two runs of one commit, which a within-run interval does not
  see. Read from ``aa_noise.py`` next to this file (JSON in a module), which
  ``python -m reports aa A B --write`` writes from a committed A/A pair per card (1.5x the
  largest same-commit difference, to 0.5%); a card with no pair takes the largest recorded;
- the **stored noise**: when both measurements carry it (asv's 99% CI of the median, else
  q25-q75 of the kept samples: reports/load.py's noise_lo/hi), the step must also leave both
  intervals apart.

Regimes (``regime``): ms and TFLOP/s rows are "host_bound" when the benchmark's own ms is
under ``HOST_BOUND_BELOW_MS`` or its host ms reaches ``HOST_BOUND_SHARE`` of it, else
"gpu_bound"; MiB, ratio and graph ms rows of ``BACKEND_CHOICE_MODES`` are "backend_choice"
(SDPA's backend, and cuDNN's plan, are picked per run); the rest "all", and "graph ms" (the
step replayed from a CUDA graph: no host in it) "gpu_bound"; graph ms borrows ms's gpu_bound
noise on a card whose pair has none.
A host-bound eager ms row with a graph ms sibling: its kernel is judged on graph ms, its host
on host ms (reports/regress.py).
TFLOP/s rows follow their ms row (reports/regress.py): FLOP model / ms, so the decision is
the ms row's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness import timing  # standard library at import time (torch inside its functions)

LOWER_IS_BETTER = "lower"
HIGHER_IS_BETTER = "higher"


@dataclass(frozen=True)
class UnitRule:
    """How to read one unit: which way is better and the smallest change that counts."""

    direction: str  # LOWER_IS_BETTER or HIGHER_IS_BETTER
    rel_threshold: float  # minimum effect: relative change that can count (0.05 = 5%)
    abs_floor: float  # absolute change (in the unit) below which nothing counts
    label: str  # axis / column label

    @property
    def worse_sign(self) -> int:
        """+1 when an increase is worse (lower is better), -1 when a decrease is worse."""
        return 1 if self.direction == LOWER_IS_BETTER else -1


# Below this many ms a step is host-bound on the lent H100 and its timing is noisy (A/A):
# the split between the ms regimes of aa_noise.py.
HOST_BOUND_BELOW_MS = 3.0
# A step whose host time per call (track_host_ms) reaches HOST_BOUND_SHARE of its ms is
# host-bound at any length (the measuring side's rule, harness/timing.py).
HOST_BOUND_SHARE = timing.HOST_BOUND_SHARE
# bwd_mode values whose implementation is picked per run (the fastest SDPA backend that
# passes parity): cuDNN and flash swapped between the A/A runs, moving memory and parity.
BACKEND_CHOICE_MODES = frozenset({"sdpa"})

UNIT_RULES: dict[str, UnitRule] = {
    # CUDA-event median. Minimum effect 5% (a step of 5% or more counts: the target
    # at >= 3 ms), so 1% do_bench jitter over 200 commits (steps up to 4.5%) never does.
    "ms": UnitRule(LOWER_IS_BETTER, 0.05, 0.002, "time (ms)"),
    # FLOP model / time: follows its ms row (regress.py); this rule only for a lone row.
    "TFLOP/s": UnitRule(HIGHER_IS_BETTER, 0.05, 0.5, "TFLOP/s"),
    # bytes / time of the Peak copy (reports/derived.py): follows its ms row too.
    "GB/s": UnitRule(HIGHER_IS_BETTER, 0.05, 1.0, "GB/s"),
    # torch.cuda.max_memory_allocated delta: 1% and 2 MiB (one large-block rounding).
    "MiB": UnitRule(LOWER_IS_BETTER, 0.01, 2.0, "peak memory (MiB)"),
    # bench_suite's host time per call (perf_counter). No A/A yet; the same step in fresh
    # allocations on the lent H100 spanned 1.57-1.86x (docs/probes.md), so it flags only on
    # doubling, and never under 0.05 ms. PROVISIONAL until an A/A pair carries host ms.
    "host ms": UnitRule(LOWER_IS_BETTER, 1.0, 0.05, "host time (ms)"),
    # GPU time of the step replayed from a CUDA graph (harness.timing.graph_timing): the
    # kernels without Python or launches; ms's minimum effect, gpu_bound noise.
    "graph ms": UnitRule(LOWER_IS_BETTER, 0.05, 0.002, "graph replay time (ms)"),
    # max error vs fp64 / same-dtype math error: 25% leaves room for a kernel with atomics.
    "ratio": UnitRule(LOWER_IS_BETTER, 0.25, 0.1, "parity (error / math error)"),
    # asv's own units, for any time_/peakmem_ benchmark in a suite (e.g. CPU smoke runs).
    "seconds": UnitRule(LOWER_IS_BETTER, 0.10, 0.0, "time (s)"),
    "bytes": UnitRule(LOWER_IS_BETTER, 0.05, 0.0, "memory (bytes)"),
}

# A unit we do not know: asv's own convention (higher value = worse), loose threshold.
UNKNOWN_UNIT_RULE = UnitRule(LOWER_IS_BETTER, 0.10, 0.0, "value")

# "% of peak" divides by each machine's own measured bf16 matmul (bench_peak.Peak, run with
# every GPU suite: reports/peaks.py card_peak). LEGACY fallback, for machines whose results
# predate the Peak benchmark (the h100-sxm-80gb history): the bf16 dense matmul ceiling
# measured once by hand on the lent H100 SXM 80GB (torch.matmul, bf16), ~790 TFLOP/s
# (docs/baselines.md). fp16 runs on the same tensor cores at the same rate. Reports label it
# "legacy" wherever they use it.
LEGACY_H100_BF16_PEAK_TFLOPS = 790.0
H100_BF16_MEASURED_PEAK_TFLOPS = LEGACY_H100_BF16_PEAK_TFLOPS  # the old name, same number
# Where the reports (text and HTML) say the legacy peak comes from.
PEAK_SOURCE = "docs/baselines.md"

# Machine names say the GPU (docs/design.md); the prefix picks the legacy peak. No entry and
# no Peak result: no "% of peak".
LEGACY_PEAK_TFLOPS_BY_MACHINE_PREFIX: dict[str, float] = {"h100": LEGACY_H100_BF16_PEAK_TFLOPS}
PEAK_TFLOPS_BY_MACHINE_PREFIX = LEGACY_PEAK_TFLOPS_BY_MACHINE_PREFIX

# The method names of the project's metrics (bench_suite contract) -> short names, in the
# order reports show them. host_ms: GPU runs only, in results from its commit on.
CONTRACT_METRICS = ("ms", "tflops", "peak_mib", "parity", "host_ms")

# Machines holding A/A repeats (same commit measured twice), e.g. "h100-sxm-80gb-aa1":
# kept in the CSV and used by `python -m reports aa`, left out of the latest/HTML report.
AA_MACHINE_PATTERN = re.compile(r"-aa\d*$")
# What runner/machine.py appends to a card's slug: -x<N> GPUs, -modal hosts, -aa twins.
CARD_SUFFIX = re.compile(r"(-x\d+|-modal|-aa\d*)+$")


def unit_rule(unit: str | None) -> UnitRule:
    """The rule for ``unit``; unknown or missing units get asv's lower-is-better default."""
    if unit is None or (isinstance(unit, float) and math.isnan(unit)):
        return UNKNOWN_UNIT_RULE
    return UNIT_RULES.get(str(unit), UNKNOWN_UNIT_RULE)


def direction(unit: str | None) -> str:
    return unit_rule(unit).direction


def peak_tflops(machine: str) -> float | None:
    """The LEGACY typed-in peak for a machine name (None when its GPU has none). The reports
    use reports.peaks.card_peak: the machine's own Peak result first, this only without one."""
    for prefix, peak in LEGACY_PEAK_TFLOPS_BY_MACHINE_PREFIX.items():
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


# --------------------------------------------------------------------------------------------
# A/A-derived noise defaults (aa_noise.py, written by `python -m reports aa --write`).

# A Python module holding the JSON (reports/ holds code only): `aa --write` regenerates it.
AA_DEFAULTS_PATH = Path(__file__).with_name("aa_noise.py")
HOST_BOUND, GPU_BOUND, BACKEND_CHOICE, ALL = "host_bound", "gpu_bound", "backend_choice", "all"
# Units whose regime is set by the benchmark's own ms; units with a backend-choice regime.
MS_REGIME_UNITS = frozenset({"ms", "TFLOP/s"})
# SDPA's replayed time is a regime of its own: cuDNN picks a plan in each process, and four
# runs of one commit on the H200 (493bf30) put its Long forward T32768 at 3.37-3.38 or 3.67
# graph ms (+8.5%) where our kernels' replays moved by at most 4.2%.
CHOICE_REGIME_UNITS = frozenset({"MiB", "ratio", "graph ms"})
# A unit without A/A data borrowing another's (unit, regime) noise: the graph replay holds no
# host time, so it is as quiet as a GPU-bound eager timing.
AA_BORROW = {
    ("graph ms", GPU_BOUND): ("ms", GPU_BOUND),
    ("graph ms", BACKEND_CHOICE): ("ms", GPU_BOUND),
}


def regime(unit, own_ms: float, bwd_mode, host_share: float = 0.0) -> str:
    """The noise regime of one row (see the module docstring). ``host_share``: the row's
    step's host ms over its ms (0 when unknown)."""
    if unit in MS_REGIME_UNITS:
        host = own_ms < HOST_BOUND_BELOW_MS or host_share >= HOST_BOUND_SHARE
        return HOST_BOUND if host else GPU_BOUND
    if unit in CHOICE_REGIME_UNITS and bwd_mode in BACKEND_CHOICE_MODES:
        return BACKEND_CHOICE
    if unit == "graph ms":
        return GPU_BOUND
    return ALL


@lru_cache(maxsize=4)
def _read_aa_defaults(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        return {}
    text = p.read_text(encoding="utf-8")
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def aa_defaults_text(derived: dict, path: Path | str) -> str:
    """The file ``aa --write`` writes: plain JSON, or for a .py path a module holding it."""
    body = json.dumps(derived, indent=1, sort_keys=True)
    if not str(path).endswith(".py"):
        return body + "\n"
    return (
        '"""A/A noise per card and unit|regime, read by reports/metrics.py aa_noise. GENERATED\n'
        "by `python -m reports aa A B --write` (one card per A/A pair; the sources are in\n"
        "the JSON): do not edit by hand.\n"
        '"""\n\n# ruff: noqa: E501\nimport json\n\nAA_NOISE = json.loads(\n    r"""\n'
        + body
        + '\n"""\n)\n'
    )


def aa_defaults(path: Path | str | None = None) -> dict:
    """The recorded A/A derivations: {"cards": {card: {"source": ..., "noise": {...}}}}.

    One derivation per card (``card_of``): a host-bound row's noise is the host's and the
    card's, so the H100 pair's bands do not hold on the H200 (issue 15). A file in the older
    one-pair layout ({"source", "noise"}) reads as one card, that of its ``source.a``.
    """
    raw = _read_aa_defaults(str(path or AA_DEFAULTS_PATH))
    if "cards" in raw or not raw:
        return raw
    card = card_of(Path(str(raw.get("source", {}).get("a", "unknown"))).name)
    return {**{k: v for k, v in raw.items() if k != "noise"}, "cards": {card: raw}}


def card_of(machine) -> str | None:
    """The card of an asv machine name: 'h200-sxm-140gb' for h200-sxm-140gb, its A/A twin
    (-aa), its multi-GPU form (-x2) and its Modal hosts (-modal)."""
    if machine is None or (isinstance(machine, float) and math.isnan(machine)):
        return None
    return CARD_SUFFIX.sub("", str(machine)) or None


def merge_aa_defaults(existing: dict, derived: dict, card: str) -> dict:
    """``existing`` (aa_defaults layout) with ``card``'s derivation replaced by ``derived``."""
    cards = dict(existing.get("cards", {}))
    cards[card] = {"source": derived.get("source", {}), "noise": derived["noise"]}
    about = derived.get("about", existing.get("about", ""))
    hb = derived.get("host_bound_below_ms", HOST_BOUND_BELOW_MS)
    return {"about": about, "host_bound_below_ms": hb, "cards": cards}


def aa_noise(unit, reg: str, machine=None) -> float | None:
    """The A/A noise threshold (relative) of a unit in a regime on ``machine``'s card; for a
    card with no A/A pair (or no machine), the largest over the recorded cards. None when no
    card records it."""
    cards = aa_defaults().get("cards", {})
    card = card_of(machine)
    tables = [cards[card]["noise"]] if card in cards else [c["noise"] for c in cards.values()]
    found = []
    for noise in tables:
        key = (str(unit), reg)
        key = key if f"{key[0]}|{key[1]}" in noise else AA_BORROW.get(key, key)
        entry = noise.get(f"{key[0]}|{key[1]}")
        if entry is not None:
            found.append(float(entry["threshold"]))
    return max(found) if found else None
