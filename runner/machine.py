"""The machine: GPU detection, the asv machine name, and asv's machine file (machine.json).

Standard library only; nothing here initialises CUDA (nvidia-smi, or torch in a child).
Machines are pinned by name (:func:`machine_name`: the GPU model, or ``cpu-<arch>``), never
the hostname. ``asv machine --yes --machine NAME`` records only the fields that differ from
its defaults (so just the name), so the runner writes asv's machine file itself
(:func:`write_machine_file`), with os/cpu/ram and the GPU model, into a per-run file;
``asv run`` copies it into ``results/<machine>/machine.json``, the record that is
committed with the results, and into every result file's ``params``. It carries the
provenance of the results (:data:`PROVENANCE_KEYS`): torch, triton, cuda, python_version
(one child of the benchmarks' python), driver, GPU name and max SM/memory clocks (one
nvidia-smi query), and ``where`` (local, or modal: Modal runs get a machine of their own,
:func:`modal_machine_name`).
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


def _nvidia_smi_rows(fields: str) -> list[list[str]]:
    """nvidia-smi --query-gpu=<fields> (comma-separated values) per GPU this process may use
    (CUDA_VISIBLE_DEVICES by index); [] without nvidia-smi. No CUDA init."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        if not ids or ids[0] == "-1":
            return []
        if all(d.isdigit() for d in ids):
            rows = [rows[int(d)] for d in ids if int(d) < len(rows)]
    return rows


def _nvidia_smi_gpus() -> list[tuple[str, int]]:
    """(name, memory MiB) per GPU that this process may use, from nvidia-smi (no CUDA init)."""
    gpus = []
    for row in _nvidia_smi_rows("name,memory.total"):
        # a name with a comma would split: the memory is the last field
        name, mem = ",".join(row[:-1]), row[-1] if row else ""
        try:
            gpus.append((name.strip(), int(float(mem))))
        except ValueError:
            continue
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
    """asv machine fields (as strings, as asv writes them) plus the provenance of a result:
    the GPU (name, count, driver, max clocks), the software of ``python`` (torch, triton,
    cuda, python_version) and ``where`` it ran (local or modal): :data:`PROVENANCE_KEYS`."""
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
    info.update(gpu_provenance())
    info.update(software(python))
    info["where"] = where(name)
    return info


# Provenance (issue 15 item 5): what a result was measured with, in the machine file and so
# in every result's "params" (asv copies the machine file's fields there). Values are
# strings, as asv writes machine fields; "-" when unknown. Not "python": asv's own param
# (the environment's label, "3").
PROVENANCE_KEYS = (
    "torch",
    "triton",
    "cuda",
    "python_version",
    "driver",
    "gpu",
    "gpu_clock_mhz",
    "mem_clock_mhz",
    "where",
)
MODAL_SUFFIX = "-modal"


def modal_machine_name(name: str) -> str:
    """A machine name for results measured on Modal: 'h100-sxm-80gb' -> 'h100-sxm-80gb-modal'.

    A Modal host is never the same machine as a local card of the same model (another
    driver, clocks, neighbours), and reports keep the newest file per machine and commit:
    under the local name a Modal run would silently replace the local rows.
    """
    return name if name.endswith(MODAL_SUFFIX) else name + MODAL_SUFFIX


def where(name: str) -> str:
    """'modal' for a Modal machine name (or inside a Modal container), else 'local'."""
    return "modal" if name.endswith(MODAL_SUFFIX) or os.environ.get("MODAL_TASK_ID") else "local"


def gpu_provenance() -> dict[str, str]:
    """driver, GPU name and its maximum SM and memory clocks (MHz) of the first visible GPU,
    from one nvidia-smi query; {} without nvidia-smi."""
    rows = _nvidia_smi_rows("driver_version,clocks.max.sm,clocks.max.mem,name")
    if not rows or len(rows[0]) < 4:
        return {}
    driver, sm, mem = rows[0][:3]
    name = ",".join(rows[0][3:])  # last: a name with a comma stays whole
    return {
        "driver": driver or "-",
        "gpu": name or "-",
        "gpu_clock_mhz": sm or "-",
        "mem_clock_mhz": mem or "-",
    }


# One child with the benchmarks' python: versions from package metadata, CUDA from torch's
# own torch/version.py (torch.version.cuda: the CUDA torch was built with), run alone rather
# than importing torch (seconds per run; torch itself only when that file cannot be read),
# so the runner never imports torch.
_SOFTWARE_PROBE = """import json, platform
from importlib.metadata import version
out = {"python_version": platform.python_version()}
for p in ("torch", "triton"):
    try:
        out[p] = version(p)
    except Exception:
        out[p] = "-"
try:  # torch/version.py alone (its only import is typing): no 2-5 s torch import
    import importlib.util, os
    spec = importlib.util.find_spec("torch")
    scope = {}
    with open(os.path.join(spec.submodule_search_locations[0], "version.py")) as f:
        exec(f.read(), scope)
    out["cuda"] = scope.get("cuda") or "none"
except Exception:
    try:
        import torch
        out["cuda"] = torch.version.cuda or "none"
    except Exception:
        out["cuda"] = "-"
print(json.dumps(out))
"""


def software(python: str = sys.executable) -> dict[str, str]:
    """torch, triton, cuda and python_version of ``python`` (one child process); '-' where
    unknown."""
    info = dict.fromkeys(("torch", "triton", "cuda", "python_version"), "-")
    try:
        out = subprocess.run(
            [python, "-c", _SOFTWARE_PROBE], capture_output=True, text=True, timeout=300
        )
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return info
    if isinstance(found, dict):
        info.update({k: str(v) for k, v in found.items() if k in info and v is not None})
    return info


def write_machine_file(path: str | os.PathLike, name: str, python: str = sys.executable) -> Path:
    """asv's machine file (what ~/.asv-machine.json holds) with :func:`machine_info`."""
    path = Path(path)
    path.write_text(json.dumps({"version": 1, name: machine_info(name, python)}, indent=2))
    return path
