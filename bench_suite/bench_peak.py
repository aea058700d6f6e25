"""The card's own ceilings (issue 17 item 1): dense bf16 and fp16 matmul and an HBM copy.

One class, ``Peak``, one parameter ``op`` (harness.flops.PEAK_OPS: its name carries its
size), one metric ``track_ms`` in ms: lower is better, as every other ms row, so ``asv
compare`` and ``asv publish`` read it the right way round. The reports divide each op's
FLOPs and bytes (harness.flops.PeakOp) by it for TFLOP/s and GB/s, and rate every attention
row against its own machine's bf16 matmul (reports/peaks.py).

The runner (runner/asv_run.py ``bench_regex``) adds it to every GPU run, once per commit
(its first ``asv run``, or one unit of a sharded run), measured by the run's measuring
process as the presets are (harness/worker.py). Not in the CPU grid; without CUDA: skips.
"""

from harness import flops, peak


class Peak:
    param_names = ["op"]
    params = [list(flops.PEAK_OPS)]
    timeout = 300  # ~1.5 s of GPU time; the rest is process start and CUDA init

    def setup_cache(self):
        return peak.measure()

    def setup(self, cache, op):
        if "unavailable" in cache:
            raise NotImplementedError(cache["unavailable"])
        record = cache.get(op)
        if record is None:
            raise NotImplementedError(f"{op} was not measured")
        if "skip" in record:
            raise NotImplementedError(record["skip"])
        self.record = record

    def track_ms(self, cache, op):
        return self.record["ms"]

    track_ms.unit = "ms"
