"""Smoke tests of the tools in scripts/, and the layering rule they rely on.

The tools reach the kernels through public names only (``AUTOTUNED``, ``LAUNCHERS``,
the launchers, kernels.tuning), so a kernel refactor that renames private pieces keeps
them working; the tests below run them in subprocesses (each tool picks its own
TRITON_INTERPRET), on CPU.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
KERNELS = ROOT / "kernels"


def _run(args, *, interpret, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_at_most_three_tools():
    assert len([p for p in SCRIPTS.iterdir() if p.suffix == ".py"]) <= 3


def _private_uses(path, modules):
    """Names starting with '_' that ``path`` imports from, or reads off, ``modules``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = ("." * node.level) + node.module
            if module.lstrip(".").split(".")[-1] in modules or module in modules:
                found += [a.name for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if not node.attr.startswith("__"):
                found.append(node.attr)
    return found


KERNEL_MODULES = {"attention", "forward", "fused_backward", "fused_gradgrad", "contract", "tuning"}


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_tools_use_public_names_only(path):
    text = path.read_text()
    assert "kernels._" not in text, f"{path.name} imports a private kernels module"
    assert _private_uses(path, KERNEL_MODULES | {"kernels"}) == []


@pytest.mark.parametrize("path", sorted(KERNELS.glob("*.py")), ids=lambda p: p.name)
def test_no_private_imports_between_kernel_modules(path):
    """No ``from .fused_backward import _configs``: shared pieces live in contract / tuning."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and node.module in KERNEL_MODULES:
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports {private} from .{node.module}"


def test_no_module_over_600_lines():
    for path in [*KERNELS.glob("*.py"), *SCRIPTS.glob("*.py")]:
        assert len(path.read_text().splitlines()) <= 600, path


@pytest.mark.parametrize("tool", ["gpu_host_profile.py", "sm90_resources.py"])
def test_help(tool):
    result = _run([f"scripts/{tool}", "--help"], interpret=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_host_profile_parses_its_arguments():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import gpu_host_profile
    finally:
        sys.path.remove(str(SCRIPTS))
    args = gpu_host_profile.parse_args(["--shape", "1,2,64,32", "--modes", "1,0", "--steps", "4"])
    assert args.shape == (1, 2, 64, 32)
    assert args.modes == ["1", "0"]
    assert args.steps == 4
    with pytest.raises(SystemExit):
        gpu_host_profile.parse_args(["--shape", "1,2,64"])
    with pytest.raises(SystemExit):
        gpu_host_profile.parse_args(["--modes", "fast"])


def test_host_profile_runs_on_cpu(tmp_path):
    """The whole tool on a tiny problem under the interpreter: rows and a profile written."""
    result = _run(
        [
            "scripts/gpu_host_profile.py",
            "--device",
            "cpu",
            "--shape",
            "1,1,16,16",
            "--steps",
            "1",
            "--reps",
            "1",
            "--profile-steps",
            "1",
            "--modes",
            "1",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
        interpret=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "host_profile.txt").read_text()
    assert '"step us, cache=1, single-thread"' in text
    assert '"backward launcher us"' in text
    assert "direct launches" in result.stdout


def _has_sm90_toolchain():
    try:
        import triton
    except ImportError:
        return False
    nvidia = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return (nvidia / "ptxas").exists() and (nvidia / "cuobjdump").exists()


@pytest.mark.skipif(not _has_sm90_toolchain(), reason="no ptxas/cuobjdump in this triton wheel")
def test_sm90_resources_compiles_one_tile_on_cpu():
    """One dQ tile at D=64 built for sm_90 with the wheel's ptxas: no GPU needed."""
    result = _run(
        ["scripts/sm90_resources.py", "dq", "--head-dim", "64", "--limit", "1"], interpret=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [x for x in result.stdout.splitlines() if x.startswith("M")]
    assert len(lines) == 1 and "regs" in lines[0], result.stdout
