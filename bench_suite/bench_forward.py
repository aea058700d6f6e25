"""Forward: o = attention(q, k, v), inputs requiring grad as in training.

One class per preset (harness.grid.PRESETS), each with its own setup_cache: see base.py.
"""

from bench_suite.base import PresetBenchmark
from harness import measure as common  # setup_cache's source is hashed by asv: see base.py
from harness.grid import asv_params

PATH = "forward"


class Seed(PresetBenchmark):
    path, preset = PATH, "seed"
    params = asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class TTT(PresetBenchmark):
    path, preset = PATH, "ttt"
    params = asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class Long(PresetBenchmark):
    path, preset = PATH, "long"
    params = asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class Grid(PresetBenchmark):
    path, preset = PATH, "grid"
    params = asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class Short(PresetBenchmark):
    path, preset = PATH, "short"
    params = asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class CPU(PresetBenchmark):
    path, preset = PATH, "cpu"
    params = asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)
