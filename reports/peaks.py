"""Each card's own ceilings, from its own Peak results (issue 17 item 1).

Every GPU run measures the card it ran on (``bench_peak.Peak``: bf16 and fp16 dense matmul,
HBM copy; harness/peak.py); reports/derived.py turns those ms into TFLOP/s and GB/s. Here:

- :func:`card_peak`: a machine's ceilings, from the newest commit whose Peak run has a
  value (each ceiling on its own: a run where the copy ran out of memory keeps the matmul);
  "% of peak" in every report divides a row's TFLOP/s by its own machine's bf16 matmul
  (fp16 rows too: same tensor cores, same rate);
- a machine without any Peak result (the ``h100-sxm-80gb`` history, measured before the
  Peak benchmark) falls back to the one number measured by hand on the lent H100,
  ``metrics.LEGACY_PEAK_TFLOPS_BY_MACHINE_PREFIX`` (790 TFLOP/s, docs/baselines.md), labelled
  "legacy" wherever it is shown; no memory ceiling was measured then, so none is assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness import flops
from reports import derived, metrics


@dataclass(frozen=True)
class CardPeak:
    """A machine's measured ceilings and where they come from."""

    machine: str
    tflops: float | None  # bf16 dense matmul, TFLOP/s: the "% of peak" denominator
    gbps: float | None = None  # device-to-device copy, GB/s: the roofline's memory roof
    fp16_tflops: float | None = None
    commit: str | None = None  # the commit whose Peak run measured the bf16 matmul
    copy_commit: str | None = None
    legacy: bool = False  # True: the typed-in H100 number, no Peak result for this machine

    @property
    def source(self) -> str:
        """Where the numbers come from, for a report's legend."""
        if self.legacy:
            return (
                f"legacy: no Peak result for this machine; {self.tflops:.0f} TFLOP/s measured "
                f"once by hand on the lent H100 ({metrics.PEAK_SOURCE})"
            )
        where = f"bench_peak.Peak at {self.commit[:8]}" if self.commit else "bench_peak.Peak"
        if self.copy_commit and self.copy_commit != self.commit:
            where += f" (copy at {self.copy_commit[:8]})"
        return f"measured on this machine by {where}"

    def describe(self) -> str:
        """The ceilings in one line (their source: :attr:`source`)."""
        parts = []
        if self.tflops:
            parts.append(f"bf16 matmul {self.tflops:.0f} TFLOP/s")
        if self.fp16_tflops:
            parts.append(f"fp16 matmul {self.fp16_tflops:.0f} TFLOP/s")
        if self.gbps:
            parts.append(f"HBM copy {self.gbps:.0f} GB/s")
        return ", ".join(parts)


def _newest(rows: pd.DataFrame, metric: str, op: str) -> tuple[float | None, str | None]:
    hit = rows[(rows["metric"] == metric) & (rows["op"].astype(str) == op)]
    hit = hit[hit["value"].notna() & (hit["value"] > 0)]
    if hit.empty:
        return None, None
    r = hit.loc[hit["commit_order"].idxmax()]
    return float(r["value"]), str(r["commit"])


def measured_peak(df: pd.DataFrame, machine: str) -> CardPeak | None:
    """``machine``'s ceilings from its newest Peak results, None when it has none."""
    if df.empty or "op" not in df.columns or "family" not in df.columns:
        return None
    rows = df[(df["machine"] == machine) & (df["family"] == derived.PEAK_FAMILY)]
    if rows.empty:
        return None
    tflops, commit = _newest(rows, derived.TFLOPS, flops.PEAK_MATMUL_OP)
    fp16 = next((op for op, m in flops.PEAK_OPS.items() if m.dtype == "float16"), None)
    fp16_tflops, _ = _newest(rows, derived.TFLOPS, fp16) if fp16 else (None, None)
    gbps, copy_commit = _newest(rows, derived.GBPS, flops.PEAK_COPY_OP)
    if tflops is None and gbps is None:
        return None
    return CardPeak(machine, tflops, gbps, fp16_tflops, commit, copy_commit)


def legacy_peak(machine: str) -> CardPeak | None:
    """The typed-in fallback for a machine whose history predates the Peak benchmark."""
    tflops = metrics.peak_tflops(machine)
    return CardPeak(machine, tflops, legacy=True) if tflops else None


def card_peak(df: pd.DataFrame, machine: str) -> CardPeak | None:
    """``machine``'s own measured ceilings, else the legacy H100 number, else None.

    A machine with a Peak result that lacks the bf16 matmul (it failed or ran out of
    memory) keeps its measured copy and takes the legacy matmul, when there is one."""
    measured = measured_peak(df, machine)
    if measured is not None and measured.tflops:
        return measured
    legacy = legacy_peak(machine)
    if measured is None:
        return legacy
    if legacy is None:
        return measured
    return CardPeak(machine, legacy.tflops, measured.gbps, None, None, measured.copy_commit, True)


def pct_of_peak(tflops: float, peak: CardPeak | None) -> float:
    """``tflops`` as a percentage of the card's bf16 matmul ceiling (NaN without one)."""
    if peak is None or not peak.tflops or tflops is None:
        return math.nan
    return 100.0 * float(tflops) / peak.tflops
