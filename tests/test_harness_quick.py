"""The quick CLI, ``python -m harness.quick``: one shape without asv, on CPU here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from harness import grid

REPO = Path(__file__).resolve().parents[1]


# --- the quick CLI --------------------------------------------------------------------


def run_quick(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.quick", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_quick_cli_on_cpu():
    out = run_quick(
        "--b",
        "1",
        "--h",
        "2",
        "--t",
        "32",
        "--d",
        "16",
        "--dtype",
        "fp32",
        "--iters",
        "3",
        "--device",
        "cpu",
    )
    assert "CPU (wall-clock" in out
    assert "triton: skipped on CPU" in out
    for path in grid.PATHS:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"math {path}:"))
        assert float(line.split()[2]) > 0 and line.split()[3] == "ms"


def test_quick_cli_interpreter_is_not_a_speed():
    out = run_quick(
        "--b",
        "1",
        "--h",
        "1",
        "--t",
        "16",
        "--tk",
        "24",
        "--window",
        "8",
        "--d",
        "16",
        "--dtype",
        "bf16",
        "--iters",
        "1",
        "--device",
        "cpu",
        "--interpret",
        "--mode",
        "fwd",
    )
    line = next(ln for ln in out.splitlines() if ln.startswith("triton forward:"))
    assert "interpreter, not a speed" in line and "vs math" not in line


def test_quick_cli_rejects_bad_input():
    proc = subprocess.run(
        [sys.executable, "-m", "harness.quick", "--t", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--t must be >= 1" in proc.stderr


def test_quick_cli_defaults_answer_in_seconds_on_cpu():
    """No flags on a CPU: a small shape, every line in seconds, the fused mode named."""
    t0 = time.perf_counter()
    out = run_quick("--device", "cpu")
    elapsed = time.perf_counter() - t0
    assert "bwd_mode fused" in out.splitlines()[0]
    assert "CPU defaults for --b, --h, --t, --d, --dtype, --iters" in out
    assert [ln.split(":")[0] for ln in out.splitlines() if ln.startswith("math ")] == [
        f"math {path}" for path in grid.PATHS
    ]
    # the seed's shape took 7.7 s per math forward call here (500 s for 50 iterations x 3)
    assert elapsed < 60, f"defaults on CPU took {elapsed:.0f} s"


def test_quick_cli_shape_flags_override_the_cpu_defaults():
    out = run_quick("--device", "cpu", "--t", "40", "--d", "16", "--mode", "fwd")
    first = out.splitlines()[0]
    assert first.startswith("B1 H2 T40 D16 float32") and "--t" not in out.splitlines()[1]
