"""The parity references, computed once per input set and kept on disk across commits.

The fp64 reference and the same-dtype math path's errors against it (the parity ratio's
denominator, harness.parity) depend on the problem, the seed, the device and the reference
code, not on the commit's kernels; on the lent H200 they took 31.5 s of a cold GPU grid and
half of a warm TTT run (issue 20). :func:`cached_outputs` loads them from here when it can
and computes and stores them otherwise. What is stored is what the gate uses: the
reference rounded to harness.parity.kept_dtype (float32 for fp16/bf16 problems, computed
in float64; parity.KEPT_MIN_EPS says why that is exact enough), and per output two
float64 scalars, the math path's max error against that reference and the reference's
max magnitude (parity.Denominator), not the math outputs (format 2's entries held the
fp64 reference and the fp16/bf16 math outputs whole: 2.5x the bytes).

Layout: ``<root>/<code hash>/<entry key>.pt``

- root: ``$GRADGRAD_REF_CACHE``, default ``~/.cache/gradgrad-attention/refs`` (outside
  git; modal_runner.py points it at the Volume); ``off`` (or ``0``, or empty) disables the
  cache.
- code hash: sha256 of the bytes of the reference code as imported (kernels/reference.py,
  harness/impls.py with the input construction, harness/parity.py), so an edit of any of
  them misses; an edit of the kernels does not (that is the point).
- entry key: sha256 of the JSON of :func:`entry_key`: kind ("fp64" or "denominators"), path,
  config (B, H, T, D, dtype, mask), seed, the reference chunking, the device (the card's
  name and capability; on a CPU its model and torch's thread count), torch and CUDA
  versions, the code hash, the format. Another card, another torch, seed or shape misses.
- file: ``MAGIC``, a CRC-32 (hex) of the rest, one JSON line (key, meta, each tensor's
  shape and dtype), then the tensors' raw bytes. No pickle; loading is a read into one
  buffer and ``torch.frombuffer`` views: 96 MiB in 0.07 s on the dev VM (1.5 GB/s; 0.19 s
  with sha256 and torch.save's format). CRC-32 is a corruption check, not a signature. An
  entry whose magic, header, length, checksum, key, or tensor shapes/dtypes are wrong is
  ignored with a warning, recomputed and rewritten: never a crash, never a wrong value.
- reads ahead: :func:`prefetch` reads and checks an entry in one background thread
  (harness.measure asks for the next config's reference while it measures the current
  one); :func:`cached_outputs` takes that read, and the warning of a bad entry is given
  in the caller's thread as for a read of its own.
- writes: a temporary file in the same folder, then ``os.replace``: two shards storing the
  same entry each replace it whole (the contents are the same), a reader sees the old file
  or the new one. No fsync: a file cut short by a crash fails its length/checksum test.
- size: at most ``$GRADGRAD_REF_CACHE_GIB`` (default 16) in all and
  ``$GRADGRAD_REF_CACHE_ENTRY_GIB`` (default 1) per entry; a larger entry is not stored
  (and said so). A hit refreshes the entry's mtime; room is made by removing the least
  recently used entries, never ones used in the last :data:`PROTECT_S` seconds (this run's):
  when those alone fill the cap the new entry is not stored. Plain LRU would miss every
  entry of a grid larger than the cap (each is evicted just before it is needed again);
  this keeps what fits. The GPU grid's entries are about 5.95 GiB (grid 2.62, long 1.53,
  short 1.31, ttt 0.43, seed 0.05), the largest (grad-grad or backward of B4 H16 T4096
  D128, or of B1 H8 T32768 D128) 384 MiB: estimated from the grid's shapes, not measured,
  as the sum over the five GPU presets' configs and the three paths of the outputs'
  elements (forward q-shaped, backward and grad-grad q-, k- and v-shaped: B*H*Tq*D or
  B*H*Tk*D each) at 4 bytes (fp32); the denominators entries are under 1 KiB each.
  Format 2 (fp64 + the bf16/fp16 math outputs, 10 bytes an element) was 14.9 GiB by the
  same sum, its largest entry 768 MiB: the caps, 16 GiB and 1 GiB, were set for it and
  now leave room.

Standard library at import time, torch inside the functions (harness/__init__.py).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import time
import uuid
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "GRADGRAD_REF_CACHE"
TOTAL_GIB_ENV = "GRADGRAD_REF_CACHE_GIB"
ENTRY_GIB_ENV = "GRADGRAD_REF_CACHE_ENTRY_GIB"
DEFAULT_TOTAL_GIB = 16.0
DEFAULT_ENTRY_GIB = 1.0
DEFAULT_ROOT = Path("~/.cache/gradgrad-attention/refs")
DISABLED = ("off", "0", "none", "")
# 3: the reference kept as parity.kept_dtype, "denominators" entries instead of the
# same-dtype math outputs; a format-2 entry has another key (another name), and its magic
# is refused if read
FORMAT = 3
MAGIC = b"gradgrad-ref-cache 3\n"
SUFFIX = ".pt"
PROTECT_S = 3600.0  # entries used this recently are never evicted (a GPU grid is < 10 min)
STALE_TMP_S = 3600.0  # a temporary file this old is a dead writer's
# the modules whose source decides the references' values (their files, as imported)
CODE_MODULES = ("kernels.reference", "harness.impls", "harness.parity")


class CacheWarning(UserWarning):
    """A cache entry was unreadable or wrong and is recomputed (or could not be written)."""


def cache_root(env: dict | None = None) -> Path | None:
    """The cache's root folder, or None when the cache is off."""
    env = os.environ if env is None else env
    value = env.get(CACHE_ENV)
    if value is None:
        return DEFAULT_ROOT.expanduser()
    if value.strip().lower() in DISABLED:
        return None
    return Path(value).expanduser()


def _gib(env_name: str, default: float) -> int:
    try:
        return int(float(os.environ.get(env_name, default)) * 2**30)
    except ValueError:
        return int(default * 2**30)


def total_cap() -> int:
    return _gib(TOTAL_GIB_ENV, DEFAULT_TOTAL_GIB)


def entry_cap() -> int:
    return _gib(ENTRY_GIB_ENV, DEFAULT_ENTRY_GIB)


def code_hash_of(files) -> str:
    """sha256 over the files' names and bytes (in the order given)."""
    h = hashlib.sha256()
    for f in files:
        data = Path(f).read_bytes()
        h.update(Path(f).name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


@functools.cache
def code_hash() -> str:
    """The hash of the reference code this process imported (:data:`CODE_MODULES`)."""
    import importlib

    return code_hash_of(importlib.import_module(m).__file__ for m in CODE_MODULES)


def device_id(device) -> str:
    """What decides the bits of a reference computed on ``device``: the card, or the CPU
    and the number of threads (the blocking of CPU matmuls can depend on both)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{props.name}:sm{props.major}{props.minor}:{props.total_memory}"
    return f"{device.type}:{_cpu_model()}:{platform.machine()}:threads{torch.get_num_threads()}"


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def entry_key(kind: str, path: str, cfg, *, seed: int, device, chunk_scores: int) -> dict:
    """Everything the outputs depend on (see the module docstring)."""
    import torch

    return {
        "format": FORMAT,
        "kind": kind,
        "path": path,
        "config": dataclasses.asdict(cfg),
        "seed": seed,
        "chunk_scores": chunk_scores,
        "device": device_id(device),
        "torch": str(torch.__version__),
        "cuda": str(torch.version.cuda),
        "code": code_hash(),
    }


def entry_path(root: Path, key: dict) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    return root / key["code"][:16] / (name + SUFFIX)


@dataclasses.dataclass
class Outcome:
    """What the cache did for one entry: "hit", "miss" (computed, stored), "skip" (computed,
    not stored: too large, cache full, or unwritable), "corrupt" (ignored, recomputed,
    rewritten) or "off"; ``note`` says why for skip and corrupt."""

    status: str
    note: str = ""


@dataclasses.dataclass
class Prefetched:
    """An entry being read and checked in the background (:func:`prefetch`)."""

    file: Path
    expect: list
    future: concurrent.futures.Future


_READER: list[concurrent.futures.ThreadPoolExecutor] = []  # one thread, made on first use


def prefetch(
    kind: str,
    path: str,
    cfg,
    device,
    *,
    seed: int,
    chunk_scores: int,
    expect: list[tuple[tuple, object]],
    root: Path | None = ...,
) -> Prefetched | None:
    """Start reading an entry (and checking it, as :func:`load`) in a background thread;
    :func:`cached_outputs` given it as ``prefetched`` takes the result instead of reading.

    Why: on the lent H200 a warm GPU grid spent 26 s reading 15 GB of references back,
    while the GPU waited; read during the previous config's measuring, they cost the
    measuring thread only the copy to the device. The reader releases the GIL in the file
    read and the checksum, so the measuring thread's timings see no GIL stalls to speak
    of. None when the cache is off. The key is made here, in the caller's thread."""
    root = cache_root() if root is ... else root
    if root is None:
        return None
    key = entry_key(kind, path, cfg, seed=seed, device=device, chunk_scores=chunk_scores)
    file = entry_path(root, key)
    if not _READER:
        _READER.append(concurrent.futures.ThreadPoolExecutor(1, "refcache-reader"))
    return Prefetched(file, list(expect), _READER[0].submit(_read, file, key, expect))


def _read(file: Path, key: dict, expect):
    """(loaded or None, the exception or None): :func:`load` that never raises."""
    try:
        return load(file, key, expect), None
    except FileNotFoundError:
        return None, None
    except Exception as exc:  # noqa: BLE001 -- reported by the caller, in its thread
        return None, exc


def cached_outputs(
    kind: str,
    path: str,
    cfg,
    device,
    compute: Callable[[], tuple[tuple, str]],
    *,
    seed: int,
    chunk_scores: int,
    expect: list[tuple[tuple, object]],
    root: Path | None = ...,
    prefetched: Prefetched | None = None,
) -> tuple[tuple, str, Outcome]:
    """(outputs on ``device``, meta, outcome): from the cache, or ``compute()`` -> (outputs,
    meta) stored. ``expect``: (shape, dtype) per output; an entry that does not match is
    corrupt. ``prefetched`` (:func:`prefetch` of this entry): its read is used when it is
    of the same file and expectations, else the entry is read here."""
    root = cache_root() if root is ... else root
    if root is None:
        outs, meta = compute()
        return outs, meta, Outcome("off")
    key = entry_key(kind, path, cfg, seed=seed, device=device, chunk_scores=chunk_scores)
    file = entry_path(root, key)
    status, note = "miss", ""
    if prefetched is not None and prefetched.file == file and prefetched.expect == list(expect):
        loaded, error = prefetched.future.result()
    else:
        loaded, error = _read(file, key, expect)
    if error is not None:  # any unreadable entry is recomputed
        why = f"{type(error).__name__}: {_short(error)}"
        status, note = "corrupt", f"{file}: {why}; recomputed"
        warnings.warn(f"reference cache entry ignored: {note}", CacheWarning, stacklevel=2)
        loaded = None
    if loaded is not None:
        tensors, meta = loaded
        _touch(file)
        return tuple(t.to(device) for t in tensors), meta, Outcome("hit")
    outs, meta = compute()
    stored, why = store(file, key, outs, meta)
    if not stored:
        note = f"{note}; not stored: {why}" if note else f"not stored: {why}"
        if status == "miss":
            status = "skip"
    return outs, meta, Outcome(status, note)


DTYPES = ("float64", "float32", "float16", "bfloat16")
MAX_HEADER = 1 << 20


def load(file: Path, key: dict, expect) -> tuple[list, str]:
    """An entry's (CPU tensors, meta); raises on anything wrong (FileNotFoundError: none)."""
    import torch

    with open(file, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a reference cache file (bad magic)")
        crc = int(f.readline(64), 16)
        header = f.readline(MAX_HEADER)
        head = json.loads(header)
        specs = [(tuple(int(n) for n in shape), dtype) for shape, dtype in head["tensors"]]
        if any(dtype not in DTYPES for _, dtype in specs):
            raise ValueError(f"unknown dtype in {specs}")
        dtypes = [getattr(torch, dtype) for _, dtype in specs]
        sizes = [math.prod(shape) * dt.itemsize for (shape, _), dt in zip(specs, dtypes)]
        payload = bytearray(sum(sizes))
        got = f.readinto(payload)
        if got != len(payload) or f.read(1):
            raise ValueError(f"truncated or too long: {got} payload bytes, {len(payload)} expected")
    if zlib.crc32(payload, zlib.crc32(header)) != crc:
        raise ValueError("checksum mismatch")
    if head.get("key") != key:
        raise ValueError("key mismatch (another entry under this name)")
    got_specs = [(shape, dt) for (shape, _), dt in zip(specs, dtypes)]
    want = [(tuple(s), d) for s, d in expect]
    if got_specs != want:
        raise ValueError(f"outputs {got_specs}, expected {want}")
    tensors, offset = [], 0
    for (shape, _), dt, size in zip(specs, dtypes, sizes):
        flat = torch.frombuffer(payload, dtype=dt, count=size // dt.itemsize, offset=offset)
        tensors.append(flat.view(shape))
        offset += size
    return tensors, str(head.get("meta", ""))


def store(file: Path, key: dict, outs, meta: str) -> tuple[bool, str]:
    """Write an entry atomically; (stored, why not). Never raises for an OSError."""
    import torch

    size = sum(t.numel() * t.element_size() for t in outs)
    cap = entry_cap()
    if size > cap:
        return False, f"{size / 2**20:.0f} MiB > per-entry cap {cap / 2**20:.0f} MiB"
    tensors = [t.detach().to("cpu").contiguous() for t in outs]
    specs = [[list(t.shape), str(t.dtype).removeprefix("torch.")] for t in tensors]
    header = (json.dumps({"key": key, "meta": meta, "tensors": specs}) + "\n").encode()
    # the raw bytes without a copy: a uint8 view of each contiguous tensor (bf16 included)
    raw = [memoryview(t.view(-1).view(torch.uint8).numpy()) for t in tensors]
    crc = zlib.crc32(header)
    for chunk in raw:
        crc = zlib.crc32(chunk, crc)
    tmp = file.parent / f".{file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        if not make_room(file.parent.parent, len(header) + size + 64, keep=file):
            return False, f"the cache is full ({total_cap() / 2**30:.1f} GiB of recent entries)"
        with open(tmp, "wb") as f:
            f.write(MAGIC + f"{crc:08x}\n".encode() + header)
            for chunk in raw:
                f.write(chunk)
        os.replace(tmp, file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"reference cache: cannot write {file}: {exc}", CacheWarning, stacklevel=2)
        return False, f"cannot write: {exc}"
    return True, ""


def entries(root: Path) -> list[tuple[Path, os.stat_result]]:
    """Every entry under ``root`` (all code hashes) with its stat; dead writers' temporary
    files are removed on the way."""
    found = []
    now = time.time()
    for file in root.glob("*/*"):
        try:
            st = file.stat()
        except OSError:
            continue  # removed meanwhile
        if file.name.endswith(".tmp"):
            if now - st.st_mtime > STALE_TMP_S:
                file.unlink(missing_ok=True)
        elif file.name.endswith(SUFFIX):
            found.append((file, st))
    return found


def make_room(root: Path, need: int, *, keep: Path | None = None) -> bool:
    """Remove least recently used entries (not used in the last PROTECT_S seconds) until
    ``need`` more bytes fit under the total cap; False when they cannot."""
    cap = total_cap()
    if need > cap:
        return False
    found = [(f, st) for f, st in entries(root) if f != keep]
    total = sum(st.st_size for _, st in found)
    now = time.time()
    for f, st in sorted(found, key=lambda e: e[1].st_mtime):
        if total + need <= cap:
            break
        if now - st.st_mtime < PROTECT_S:
            break  # every later one is at least as recent
        f.unlink(missing_ok=True)
        total -= st.st_size
    return total + need <= cap


def count_entries(root: Path | None = None) -> int:
    """Entries of the running code's hash folder (0 when the cache is off or empty)."""
    root = cache_root() if root is None else root
    if root is None:
        return 0
    folder = root / code_hash()[:16]
    try:
        return sum(1 for p in folder.iterdir() if p.name.endswith(SUFFIX))
    except OSError:
        return 0


def _touch(file: Path) -> None:
    try:
        os.utime(file)
    except OSError:
        pass  # a read-only cache still serves hits


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
