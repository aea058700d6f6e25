"""The machine: GPU detection, the asv machine name, and asv's machine file (machine.json).

Standard library only; nothing here initialises CUDA (nvidia-smi, or torch in a child).
Machines are pinned by name (:func:`machine_name`: the GPU model, or ``cpu-<arch>``), never
the hostname. ``asv machine --yes --machine NAME`` records only the fields that differ from
its defaults (so just the name), so the runner writes asv's machine file itself
(:func:`write_machine_file`), with os/cpu/ram and the GPU model, into a per-run file;
``asv run`` copies it into ``results/<machine>/machine.json``, the record that is
committed with the results.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path


def _nvidia_smi_gpus() -> list[tuple[str, int]]:
    """(name, memory MiB) per GPU that this process may use, from nvidia-smi (no CUDA init)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append((name.strip(), int(float(mem))))
        except ValueError:
            continue
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        if not ids or ids[0] == "-1":
            return []
        if all(d.isdigit() for d in ids):
            gpus = [gpus[int(d)] for d in ids if int(d) < len(gpus)]
    return gpus


def gpu_slug(name: str, memory_mib: int) -> str:
    """'NVIDIA H100 80GB HBM3', 81559 -> 'h100-sxm-80gb'; 'NVIDIA H100 PCIe' -> 'h100-pcie-80gb'.

    Model, form factor (H100/H200 without a hint are SXM: PCIe and NVL say so in their
    names), memory from the name's "<N>GB" or else the size rounded to GiB.
    """
    words = [w for w in re.split(r"[\s_-]+", name) if w and w not in ("NVIDIA", "Tesla")]
    model = next(
        (
            w
            for w in words
            if re.fullmatch(r"[A-Za-z]{1,4}\d+[A-Za-z]*", w)
            and not w.upper().startswith(("SXM", "HBM", "PCIE"))
            and not w.upper().endswith("GB")
        ),
        None,
    )
    model = (model or "-".join(words) or "gpu").lower()
    upper = name.upper()
    if "PCIE" in upper:
        form = "pcie"
    elif "NVL" in upper:
        form = "nvl"
    elif "SXM" in upper or "HBM3" in upper or model in ("h100", "h200", "b200", "gh200"):
        form = "sxm"
    else:
        form = ""
    m = re.search(r"(\d+)\s*GB", upper)
    mem = int(m.group(1)) if m else round(memory_mib / 1024)
    return "-".join(p for p in (model, form, f"{mem}gb") if p)


def machine_name(n_gpus: int | None = None) -> str:
    """Stable asv machine name: the GPU ('h100-sxm-80gb', '-x2' for 2 GPUs) or 'cpu-<arch>'."""
    gpus = _nvidia_smi_gpus()
    if not gpus:
        return f"cpu-{platform.machine() or 'unknown'}"
    name = gpu_slug(*gpus[0])
    return f"{name}-x{n_gpus}" if n_gpus and n_gpus > 1 else name


def _cuda_visible_by_torch(python: str = sys.executable) -> bool:
    """torch.cuda.is_available() in a child process: the parent never initialises CUDA."""
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return (
            subprocess.run([python, "-c", probe], capture_output=True, timeout=300).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def default_grid() -> str:
    """'gpu' when a CUDA GPU is usable here, else 'cpu' (nvidia-smi; torch in a child if absent)."""
    if _nvidia_smi_gpus():
        return "gpu"
    if shutil.which("nvidia-smi") is None and os.path.exists("/dev/nvidiactl"):
        return "gpu" if _cuda_visible_by_torch() else "cpu"
    return "cpu"


def visible_gpus() -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`."""
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
    if pinned is not None:
        return [d.strip() for d in pinned.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def machine_info(name: str, python: str = sys.executable) -> dict:
    """asv machine fields (as strings, as asv writes them) plus the GPU and software."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    try:
        ram = str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        ram = ""
    info = {
        "machine": name,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu,
        "num_cpu": str(os.cpu_count() or ""),
        "ram": ram,
    }
    gpus = _nvidia_smi_gpus()
    if gpus:
        info["gpu"] = gpus[0][0]
        info["gpu_count"] = str(len(gpus))
    probe = (
        "from importlib.metadata import version\n"
        "for p in ('torch', 'triton'):\n"
        "    try: print(p, version(p))\n"
        "    except Exception: print(p, '-')\n"
    )
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
        for line in out.stdout.splitlines():
            pkg, _, ver = line.partition(" ")
            info[pkg] = ver
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def write_machine_file(path: str | os.PathLike, name: str, python: str = sys.executable) -> Path:
    """asv's machine file (what ~/.asv-machine.json holds) with :func:`machine_info`."""
    path = Path(path)
    path.write_text(json.dumps({"version": 1, name: machine_info(name, python)}, indent=2))
    return path
