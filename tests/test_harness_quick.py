"""The quick CLI, ``python -m harness.quick``: one shape without asv, on CPU here."""

from __future__ import annotations

import subprocess
import sys
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
