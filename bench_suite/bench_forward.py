"""Forward: o = attention(q, k, v), inputs requiring grad as in training.

One class per preset (common.PRESETS); each measures all its combinations in its
setup_cache process (common.measure_preset) and its track_* methods look the numbers up.
Each class needs its own setup_cache line: asv keys the cache by source line.
"""

from bench_suite import common

PATH = "forward"


class Seed(common.PresetBenchmark):
    path, preset = PATH, "seed"
    params = common.asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class TTT(common.PresetBenchmark):
    path, preset = PATH, "ttt"
    params = common.asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class Long(common.PresetBenchmark):
    path, preset = PATH, "long"
    params = common.asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class Grid(common.PresetBenchmark):
    path, preset = PATH, "grid"
    params = common.asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class Short(common.PresetBenchmark):
    path, preset = PATH, "short"
    params = common.asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)


class CPU(common.PresetBenchmark):
    path, preset = PATH, "cpu"
    params = common.asv_params(preset, PATH)

    def setup_cache(self):
        return common.measure_preset(self.preset, self.path)
