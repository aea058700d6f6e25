"""What is measured: the asv parameter axes, the presets, one attention problem (Config).

The asv classes in ``bench_suite/`` take their ``params`` from :func:`asv_params`, in
the order of :data:`PARAM_NAMES`; the committed results are keyed by those names and
values, so they change only with a new benchmark. A preset is a Cartesian product of
axes because asv params are one. The runner (runner/asv_run.py) selects classes by
:data:`GRIDS` and reads the progress file named by :data:`PROGRESS_ENV`.

Standard library only (Config.torch_dtype imports torch when a measurement asks for it):
the runner imports this module in a process that never imports torch, and asv imports
it before it forks the benchmarks.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation of Config.torch_dtype
    import torch

PARAM_NAMES = ["B", "H", "T", "D", "dtype", "mask", "bwd_mode"]
PATHS = ("forward", "backward", "gradgrad")
KERNEL_MODES = ("recompute", "save_p", "dv_only", "fused")
# "sdpa": PyTorch's fastest fused backend that passes parity, per combination (cuDNN on
# the H100 where it takes the problem; fastest by graph ms where eager timing is the host's,
# harness/measure.py _fastest): what a user gets at best. "flash": SDPA pinned to
# its FlashAttention-2 backend, the fixed yardstick the fused-backward targets are set
# against (issue 6); it refuses explicit masks (the TTT window), which skips.
BASELINE_MODES = ("math", "sdpa", "flash", "compiled")
ALL_MODES = BASELINE_MODES + KERNEL_MODES
GPU_MODES = ("math", "sdpa", "flash") + KERNEL_MODES
DTYPES = ("float16", "bfloat16", "float32")

# Modes left out of the grad-grad path, with the reason (measured on the lent H100,
# docs/baselines.md): asking for them costs a process and says nothing new.
NO_DOUBLE_BACKWARD = {
    "sdpa": "SDPA flash/efficient/cuDNN: derivative of *_attention_backward is not implemented",
    "flash": "SDPA flash: derivative of _scaled_dot_product_flash_attention_backward missing",
    "compiled": "torch.compile'd math: double backward through compiled autograd is refused",
}

# The environment variable naming the progress file: harness.measure appends JSON lines
# to it while a setup_cache runs, runner/asv_run.py sets it and prints them (asv shows a
# setup_cache's own output only after it ends, and only with --show-stderr).
PROGRESS_ENV = "BENCH_SUITE_PROGRESS"


def check_path(path: str) -> None:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A grid of configurations: the Cartesian product of the axes (asv params are a product)."""

    name: str
    class_name: str  # the asv class in every bench_*.py file
    device: str  # "cuda" or "cpu"
    B: tuple[int, ...]
    H: tuple[int, ...]
    T: tuple[str, ...]  # "2048" (square) or "1024/9216" (Tq/Tk)
    D: tuple[int, ...]
    dtype: tuple[str, ...]
    mask: tuple[str, ...]  # "none", "causal", "window<N>"
    modes: tuple[str, ...]

    def modes_for(self, path: str) -> tuple[str, ...]:
        check_path(path)
        if path == "gradgrad":
            return tuple(m for m in self.modes if m not in NO_DOUBLE_BACKWARD)
        return self.modes

    def configs(self) -> list[Config]:
        return [
            Config(*values)
            for values in itertools.product(self.B, self.H, self.T, self.D, self.dtype, self.mask)
        ]


PRESETS: dict[str, Preset] = {
    # The seed's headline shape (docs/baselines.md: math fwd 0.392 ms, cuDNN 0.036 ms on
    # the H100).
    "seed": Preset(
        "seed", "Seed", "cuda", B=(2,), H=(4,), T=("2048",), D=(128,),
        dtype=("float16",), mask=("none",), modes=GPU_MODES,
    ),
    # TTT-E2E inner step: a 1024-query chunk over 9216 keys, window 8192, head dims of
    # the 125M..3B models (arXiv 2512.23675).
    "ttt": Preset(
        "ttt", "TTT", "cuda", B=(1,), H=(12,), T=("1024/9216",), D=(64, 80, 96),
        dtype=("bfloat16",), mask=("window8192",), modes=GPU_MODES,
    ),
    # Long context: math grad-grad needs > 80 GB from T = 16384 and fwd+bwd from 32768
    # (docs/baselines.md); those combinations skip on out-of-memory, the kernels are what
    # is left.
    "long": Preset(
        "long", "Long", "cuda", B=(1,), H=(8,), T=("8192", "16384", "32768"), D=(128,),
        dtype=("bfloat16",), mask=("causal",), modes=GPU_MODES,
    ),
    # A modest general grid; B4 H16 T4096 D64 causal is a baseline shape (docs/baselines.md:
    # math grad-grad 128 ms, 47 GB), the largest here. T=2048 was dropped: with it the
    # preset took over 180 s of a cold H100 run (fp64 parity references and compiles);
    # Short measures the T=2048 shapes of this grid, for the fused mode and its
    # yardsticks only.
    "grid": Preset(
        "grid", "Grid", "cuda", B=(4,), H=(16,), T=("4096",), D=(64, 128),
        dtype=("bfloat16",), mask=("none", "causal"), modes=GPU_MODES,
    ),
    # Issue 6's target, fused forward+backward >= 1.0x SDPA flash for T >= 2048, D 64/128,
    # causal and not, bf16, at its smallest T (Grid covers T=4096, Long causal D128 from
    # 8192; the Seed preset is fp16 B2 H4 D128 unmasked and does not cover it). Only the
    # fused mode and its two SDPA yardsticks, so the preset stays cheap; grad-grad keeps
    # only fused (SDPA has no double backward: NO_DOUBLE_BACKWARD).
    "short": Preset(
        "short", "Short", "cuda", B=(4,), H=(16,), T=("2048",), D=(64, 128),
        dtype=("bfloat16",), mask=("none", "causal"), modes=("sdpa", "flash", "fused"),
    ),
    # Runs anywhere in well under a minute; Triton is excluded from timing on CPU (the
    # interpreter is no speed), so the baselines are eager and torch.compile'd math.
    "cpu": Preset(
        "cpu", "CPU", "cpu", B=(1,), H=(2,), T=("128", "256"), D=(64,),
        dtype=("float32",), mask=("none", "causal"), modes=("math", "compiled"),
    ),
}  # fmt: skip

# Which presets `make bench` runs on which hardware (runner/asv_run.py selects classes).
GRIDS: dict[str, tuple[str, ...]] = {
    "gpu": ("seed", "ttt", "long", "grid", "short"),
    "cpu": ("cpu",),
}

# The card's own ceilings (bench_suite/bench_peak.py): measured once in every run of these
# grids, whatever its presets (runner/asv_run.py bench_regex), and recorded with its results.
PEAK_CLASS = "bench_peak.Peak"
PEAK_GRIDS = ("gpu",)


def preset_configs(preset: str) -> list[Config]:
    """The configurations of a preset (without the bwd_mode axis)."""
    return get_preset(preset).configs()


def get_preset(preset: str) -> Preset:
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}") from None


def asv_params(preset: str, path: str) -> list[list]:
    """asv ``params`` for one preset and path, in the order of :data:`PARAM_NAMES`."""
    p = get_preset(preset)
    axes = (p.B, p.H, p.T, p.D, p.dtype, p.mask, p.modes_for(path))
    return [list(axis) for axis in axes]


def parse_t(t: str) -> tuple[int, int]:
    """``"2048"`` -> (2048, 2048); ``"1024/9216"`` -> (1024, 9216)."""
    parts = str(t).split("/")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"T must look like '2048' or '1024/9216', got {t!r}")
    tq, tk = int(parts[0]), int(parts[-1])
    if tq < 1 or tk < 1:
        raise ValueError(f"T must be positive, got {t!r}")
    return tq, tk


def parse_mask(mask: str) -> tuple[bool, int | None]:
    """``"none"``: (False, None); ``"causal"``: (True, None); ``"window8192"``: (True, 8192)."""
    if mask == "none":
        return False, None
    if mask == "causal":
        return True, None
    if mask.startswith("window") and mask[len("window") :].isdigit():
        window = int(mask[len("window") :])
        if window >= 1:
            return True, window  # a window only ever looks back: always causal
    raise ValueError(f"mask must be 'none', 'causal' or 'window<N>' (N >= 1), got {mask!r}")


def mask_name(causal: bool, window: int | None) -> str:
    if window is not None:
        return f"window{window}"
    return "causal" if causal else "none"


def t_name(tq: int, tk: int) -> str:
    return str(tq) if tq == tk else f"{tq}/{tk}"


@dataclasses.dataclass(frozen=True)
class Config:
    """One attention problem; field order and values are those of the asv params."""

    B: int
    H: int
    T: str
    D: int
    dtype: str
    mask: str

    def __post_init__(self):
        tq, tk = parse_t(self.T)
        causal, _ = parse_mask(self.mask)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if causal and tq > tk:
            raise ValueError(f"masked attention needs Tq <= Tk, got T={self.T!r}")

    @property
    def tq(self) -> int:
        return parse_t(self.T)[0]

    @property
    def tk(self) -> int:
        return parse_t(self.T)[1]

    @property
    def causal(self) -> bool:
        return parse_mask(self.mask)[0]

    @property
    def window(self) -> int | None:
        return parse_mask(self.mask)[1]

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch  # the one torch import here, when a measurement asks for the dtype

        return getattr(torch, self.dtype)

    def label(self) -> str:
        return f"B{self.B} H{self.H} T{self.T} D{self.D} {self.dtype} {self.mask}"
