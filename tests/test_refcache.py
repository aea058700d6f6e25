"""The reference cache (harness/refcache.py) and the caches modal_runner.py keeps on the Volume.

CPU, offline. Every test points the cache at its own tmp_path (tests/conftest.py points
the whole suite at a temporary folder, never ~/.cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from harness import grid, measure, parity, refcache
from harness.grid import Config
from harness.impls import make_inputs
from harness.parity import (
    REFERENCE_CHUNK_SCORES,
    math_denominators,
    parity_reference,
    reference_outputs,
    same_dtype_math_outputs,
)

REPO = Path(__file__).resolve().parents[1]
CFG = Config(1, 2, "96", 32, "float32", "causal")
CFG_BF16_WINDOW = Config(1, 2, "48/80", 32, "bfloat16", "window24")
CFG_FP16 = Config(1, 2, "64", 32, "float16", "none")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "refs"
    monkeypatch.setenv(refcache.CACHE_ENV, str(root))
    monkeypatch.delenv(refcache.TOTAL_GIB_ENV, raising=False)
    monkeypatch.delenv(refcache.ENTRY_GIB_ENV, raising=False)
    return root


def fresh(path, cfg):
    """The references computed now, without any cache: (kept reference, denominators, which)."""
    inp = make_inputs(cfg, "cpu", seed=measure.SEED)
    ref = parity_reference(path, cfg, inp)
    denoms, which = math_denominators(path, cfg, inp, ref)
    return ref, denoms, which


def through_cache(path, cfg, counts=None):
    inp = make_inputs(cfg, "cpu", seed=measure.SEED)
    counts = {} if counts is None else counts
    return measure._references(f"{path}/test", path, cfg, inp, "cpu", counts)


def assert_identical(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
        assert torch.equal(a, b)  # bit for bit


def assert_same_denominators(got, want):
    assert all(type(d) is parity.Denominator for d in got)
    assert got == want  # Python floats: bit for bit (no NaN here)


def key(kind="fp64", path="gradgrad", cfg=CFG, seed=0, device="cpu"):
    return refcache.entry_key(
        kind, path, cfg, seed=seed, device=device, chunk_scores=REFERENCE_CHUNK_SCORES
    )


def only_entries(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- imports -------------------------------------------------------------------------------


def test_the_cache_and_the_cost_record_import_no_torch():
    code = "import sys, harness.refcache, runner.costs; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_the_test_suite_never_uses_the_home_cache():
    root = refcache.cache_root()
    assert root is not None and Path.home() / ".cache" not in root.parents, root


# --- the values: cached references are the fresh ones, bit for bit ---------------------------


@pytest.mark.parametrize("cfg", [CFG, CFG_BF16_WINDOW], ids=["fp32-causal", "bf16-window"])
@pytest.mark.parametrize("path", grid.PATHS)
def test_cached_references_are_bit_identical_to_fresh_ones(cache, path, cfg):
    want64, want_same, want_which = fresh(path, cfg)
    counts = {}
    cold = through_cache(path, cfg, counts)
    assert counts == {"miss": 2} and len(only_entries(cache)) == 2
    warm = through_cache(path, cfg, counts)
    assert counts == {"miss": 2, "hit": 2}
    for got in (cold, warm):
        ref, denoms, which = got
        assert_identical(ref, want64)
        assert_same_denominators(denoms, want_same)
        assert which == want_which == "math"
    # fp32 problems keep the fp64 reference whole; fp16/bf16 ones round it to fp32
    kept = torch.float64 if cfg.dtype == "float32" else torch.float32
    assert all(t.dtype == kept for t in warm[0])
    files = only_entries(cache)
    small = refcache.entry_path(cache, key("denominators", path, cfg))
    assert small in files and small.stat().st_size < 2048


@pytest.mark.parametrize("path", grid.PATHS)
def test_a_computed_reference_holds_no_autograd_graph(path):
    """Cold, the reference is computed; warm, it is read from disk: both must hold only
    their values. A forward reference that kept its chunks' graphs held ~80 GiB (fp64
    scores and probabilities) on the H200 at T32768 in every cold run, and the math and
    save_p rows ran out of memory there, which the warm runs measured."""
    inp = make_inputs(CFG_BF16_WINDOW, "cpu", seed=measure.SEED)
    for t in (*reference_outputs(path, CFG_BF16_WINDOW, inp, torch.float64),
              *parity_reference(path, CFG_BF16_WINDOW, inp)):  # fmt: skip
        assert t.grad_fn is None and not t.requires_grad


def test_the_kept_reference_is_the_fp64_one_rounded(cache):
    for cfg in (CFG, CFG_BF16_WINDOW, CFG_FP16):
        inp = make_inputs(cfg, "cpu", seed=measure.SEED)
        full = reference_outputs("backward", cfg, inp, torch.float64)
        kept = parity_reference("backward", cfg, inp)
        want = torch.float64 if cfg.dtype == "float32" else torch.float32
        assert_identical(kept, tuple(t.to(want) for t in full))


# fp16 and bf16 problems, whose reference is kept rounded to fp32, as a CPU preset
TINY16 = grid.Preset(
    "tiny16", "Tiny16", "cpu", B=(1,), H=(2,), T=("48/80",), D=(32,),
    dtype=("float16", "bfloat16"), mask=("none", "window24"), modes=("math",),
)  # fmt: skip


@pytest.mark.parametrize("preset", ["cpu", "tiny16"])
def test_measure_preset_records_are_the_same_cold_and_warm(cache, tmp_path, monkeypatch, preset):
    """The parity ratios (the one value the references decide) do not change, and the warm
    run says so in its events: every reference a hit, none computed. Without the cache,
    the same ratios again (the cold path rounds the reference as the cache keeps it)."""
    monkeypatch.setitem(grid.PRESETS, "tiny16", TINY16)
    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv(grid.PROGRESS_ENV, str(progress))
    runs = []
    for _ in range(2):
        progress.write_text("")
        records = measure.measure_preset(preset, "backward", iters=2, modes=("math",))
        events = [json.loads(line) for line in progress.read_text().splitlines()]
        runs.append((records, events))
    (cold, cold_events), (warm, warm_events) = runs
    ratios = {k: r.parity for k, r in cold.items()}
    assert all(r.status == "ok" and 0 < r.parity <= 1 for r in cold.values()), cold
    assert ratios == {k: r.parity for k, r in warm.items()}
    with monkeypatch.context() as m:
        m.setenv(refcache.CACHE_ENV, "off")
        off = measure.measure_preset(preset, "backward", iters=2, modes=("math",))
    assert ratios == {k: r.parity for k, r in off.items()}
    n = len(grid.PRESETS[preset].configs())
    start = [e for e in cold_events if e["event"] == "class_start"][0]
    assert start["caches"]["refs"] == 0 and start["caches"]["ref_dir"] == str(cache)
    done = [e for e in cold_events if e["event"] == "class_done"][0]
    assert done["ref_cache"] == {"miss": 2 * n}
    start = [e for e in warm_events if e["event"] == "class_start"][0]
    assert start["caches"]["refs"] == 2 * n
    done = [e for e in warm_events if e["event"] == "class_done"][0]
    assert done["ref_cache"] == {"hit": 2 * n}
    assert "reference cache" in done["msg"]


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv(refcache.CACHE_ENV, "off")
    counts = {}
    ref64, _, _ = through_cache("forward", CFG, counts)
    assert counts == {"off": 2}
    assert_identical(ref64, fresh("forward", CFG)[0])


# --- keys ------------------------------------------------------------------------------------


def test_keys_change_with_everything_the_values_depend_on(cache, monkeypatch):
    base = refcache.entry_path(cache, key())
    others = {
        "seed": key(seed=1),
        "shape": key(cfg=Config(1, 2, "128", 32, "float32", "causal")),
        "head dim": key(cfg=Config(1, 2, "96", 64, "float32", "causal")),
        "dtype": key(cfg=Config(1, 2, "96", 32, "bfloat16", "causal")),
        "mask": key(cfg=Config(1, 2, "96", 32, "float32", "window8")),
        "path": key(path="backward"),
        "kind": key(kind="denominators"),
        "format": dict(key(), format=refcache.FORMAT - 1),
    }
    for card in ("NVIDIA H100 80GB HBM3:sm90", "NVIDIA H200:sm90"):
        with monkeypatch.context() as m:
            m.setattr(refcache, "device_id", lambda device, card=card: f"cuda:{card}")
            others[card] = key()
    with monkeypatch.context() as m:
        m.setattr(torch, "__version__", "9.9.9")
        others["torch"] = key()
    paths = {name: refcache.entry_path(cache, k) for name, k in others.items()}
    assert base not in paths.values()
    assert len(set(paths.values())) == len(paths), paths
    assert refcache.entry_path(cache, key()) == base  # and the same problem finds its entry


def test_the_code_hash_is_the_reference_codes_bytes(tmp_path):
    files = [REPO / "kernels" / "reference.py", REPO / "harness" / "impls.py"]
    files.append(REPO / "harness" / "parity.py")
    assert refcache.code_hash() == refcache.code_hash_of(files)
    # an edit of any reference file changes it (and with it the entries' folder)
    for i, f in enumerate(files):
        copies = []
        for j, g in enumerate(files):
            copy = tmp_path / str(i) / g.name
            copy.parent.mkdir(exist_ok=True)
            data = g.read_bytes()
            copy.write_bytes(data + b"\n# edited\n" if i == j else data)
            copies.append(copy)
        assert refcache.code_hash_of(copies) != refcache.code_hash(), f.name
    # the kernels are not reference code: an edit of them keeps every entry
    assert not any(
        m.startswith("kernels.") and m != "kernels.reference" for m in refcache.CODE_MODULES
    )


def test_a_reference_code_edit_misses_and_recomputes(cache, monkeypatch):
    counts = {}
    through_cache("forward", CFG, counts)
    monkeypatch.setattr(refcache, "code_hash", lambda: "f" * 64)  # the reference code changed
    through_cache("forward", CFG, counts)
    assert counts == {"miss": 4}
    assert len({p.parent for p in only_entries(cache)}) == 2  # a folder per code hash


def test_the_cpu_device_key_names_the_cpu_and_threads():
    dev = refcache.device_id("cpu")
    assert dev.startswith("cpu:") and f"threads{torch.get_num_threads()}" in dev


# --- corrupt entries: ignored with a warning, recomputed, rewritten ----------------------------


def _entry_file(cache, path="gradgrad", kind="fp64"):
    return refcache.entry_path(cache, key(kind=kind, path=path))


def _flip_last_byte(f: Path):
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01
    f.write_bytes(bytes(data))


def _truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garbage(f: Path):
    f.write_bytes(b"\x00" * 100)


def _empty(f: Path):
    f.write_bytes(b"")


def _bad_header(f: Path):
    lines = f.read_bytes().split(b"\n", 3)
    lines[2] = b"12x"
    f.write_bytes(b"\n".join(lines))


def _old_format(f: Path):
    """A whole, valid entry of the previous format (its magic) under this entry's name."""
    data = f.read_bytes()
    assert data.startswith(refcache.MAGIC)
    old = f"gradgrad-ref-cache {refcache.FORMAT - 1}\n".encode()
    f.write_bytes(old + data[len(refcache.MAGIC) :])


def _math_calls(monkeypatch):
    """Count the same-dtype math runs (what a denominators entry saves)."""
    calls = []

    def counted(*a, **kw):
        calls.append(a[0])
        return same_dtype_math_outputs(*a, **kw)

    monkeypatch.setattr(parity, "same_dtype_math_outputs", counted)
    return calls


@pytest.mark.parametrize("kind", ["fp64", "denominators"])
@pytest.mark.parametrize(
    "damage",
    [_flip_last_byte, _truncate, _garbage, _empty, _bad_header, _old_format],
    ids=lambda f: f.__name__,
)
def test_a_corrupt_entry_is_ignored_recomputed_and_rewritten(cache, monkeypatch, damage, kind):
    cfg = CFG_BF16_WINDOW  # a reference rounded to fp32
    want = fresh("gradgrad", cfg)
    through_cache("gradgrad", cfg)
    f = refcache.entry_path(cache, key(kind, "gradgrad", cfg))
    damage(f)
    math_calls = _math_calls(monkeypatch)
    counts = {}
    with pytest.warns(refcache.CacheWarning, match="ignored"):
        got = through_cache("gradgrad", cfg, counts)
    assert counts == {"corrupt": 1, "hit": 1}
    assert len(math_calls) == (kind == "denominators")  # recomputed: the math path ran
    assert_identical(got[0], want[0])
    assert_same_denominators(got[1], want[1])
    assert got[2] == want[2] == "math"
    counts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", refcache.CacheWarning)
        again = through_cache("gradgrad", cfg, counts)  # rewritten: a hit now
    assert counts == {"hit": 2}
    assert_identical(again[0], want[0])
    assert_same_denominators(again[1], want[1])
    assert len(math_calls) == (kind == "denominators")


def test_a_warm_run_runs_no_math_and_keeps_which_math(cache, monkeypatch):
    """The denominators entry replaces the math outputs: a hit runs no math path, and the
    "which math" label (the entry's meta) still reaches the progress note."""
    chunked = "chunked math (math is OOM)"

    def oom_math(path, cfg, inp):
        return reference_outputs(path, cfg, inp, cfg.torch_dtype), chunked

    monkeypatch.setattr(parity, "same_dtype_math_outputs", oom_math)
    cold = through_cache("backward", CFG_BF16_WINDOW)
    math_calls = _math_calls(monkeypatch)
    warm = through_cache("backward", CFG_BF16_WINDOW)
    assert cold[2] == warm[2] == chunked and not math_calls
    assert_same_denominators(warm[1], cold[1])


def test_an_entry_with_a_valid_checksum_but_the_wrong_content_is_refused(cache):
    """Another problem's entry under this name (a copy, a hash collision), or the right key
    with tensors of the wrong shape: both are caught after the checksum."""
    want = fresh("backward", CFG)
    through_cache("backward", CFG)
    through_cache("forward", CFG)
    mine, other = _entry_file(cache, "backward"), _entry_file(cache, "forward")
    mine.write_bytes(other.read_bytes())  # a whole, valid file of another entry
    with pytest.warns(refcache.CacheWarning, match="key mismatch"):
        got = through_cache("backward", CFG)
    assert_identical(got[0], want[0])
    # the right key, wrong tensors (e.g. written by a buggy version of the store)
    k = key(path="backward")
    refcache.store(mine, k, [t[..., :1] for t in want[0]], "fp64")
    with pytest.warns(refcache.CacheWarning, match="expected"):
        got = through_cache("backward", CFG)
    assert_identical(got[0], want[0])
    # a denominators entry with one row too few
    small = _entry_file(cache, "backward", "denominators")
    k = key("denominators", path="backward")
    refcache.store(small, k, [torch.tensor(want[1][:2], dtype=torch.float64)], "math")
    with pytest.warns(refcache.CacheWarning, match="expected"):
        got = through_cache("backward", CFG)
    assert_same_denominators(got[1], want[1])
    # a format-2 entry sits under another name: not read, not mistaken for this one
    with pytest.MonkeyPatch.context() as m:
        m.setattr(refcache, "FORMAT", refcache.FORMAT - 1)
        assert refcache.entry_path(cache, key(path="backward")) != mine


def test_an_unreadable_and_unwritable_entry_is_computed_never_a_crash(cache):
    want = fresh("forward", CFG)
    f = _entry_file(cache, "forward")
    f.mkdir(parents=True)  # a folder where the file should be: cannot be read or replaced
    counts = {}
    with pytest.warns(refcache.CacheWarning):
        got = through_cache("forward", CFG, counts)
    assert counts["corrupt"] == 1
    assert_identical(got[0], want[0])
    assert not list(f.parent.glob(".*.tmp"))


# --- concurrent writers ----------------------------------------------------------------------


WRITER = """
import os, sys, warnings
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[2])
from harness import refcache
from harness.grid import Config
from harness.impls import make_inputs
from harness.parity import REFERENCE_CHUNK_SCORES, reference_outputs

warnings.simplefilter("error", refcache.CacheWarning)  # a torn or partial read would warn
root, cfg = Path(sys.argv[1]), Config(1, 2, "96", 32, "float32", "causal")
inp = make_inputs(cfg, "cpu", seed=0)
want = reference_outputs("backward", cfg, inp, torch.float64)
expect = [(tuple(t.shape), torch.float64) for t in (inp.q, inp.k, inp.v)]
key = refcache.entry_key(
    "fp64", "backward", cfg, seed=0, device="cpu", chunk_scores=REFERENCE_CHUNK_SCORES
)
for i in range(int(sys.argv[3])):
    if i % 2:  # store whatever is there: two shards computing the same entry at once
        assert refcache.store(refcache.entry_path(root, key), key, want, "fp64")[0]
    got, _, outcome = refcache.cached_outputs(
        "fp64", "backward", cfg, "cpu", lambda: (want, "fp64"), seed=0,
        chunk_scores=REFERENCE_CHUNK_SCORES, expect=expect,
    )
    assert outcome.status in ("hit", "miss"), outcome
    assert all(torch.equal(a, b) for a, b in zip(got, want)), "a wrong value"
print(__import__("json").dumps(key))
"""


def test_concurrent_writers_of_one_entry(cache):
    """Four processes store and read one entry at once: every read is whole and right, one
    file is left, no temporary file."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(cache), str(REPO), "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    files = only_entries(cache)
    assert len(files) == 1 and files[0].suffix == ".pt", files
    written = json.loads(outs[0].strip().splitlines()[-1])
    shapes = [(96, 32)] * 3
    tensors, meta = refcache.load(files[0], written, [((1, 2, *s), torch.float64) for s in shapes])
    assert_identical(tensors, fresh("backward", CFG)[0]) and meta == "fp64"


# --- size caps ---------------------------------------------------------------------------------


def test_an_entry_over_the_per_entry_cap_is_not_stored_and_said(cache, monkeypatch, tmp_path):
    monkeypatch.setenv(refcache.ENTRY_GIB_ENV, str(1000 / 2**30))  # 1000 bytes
    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv(grid.PROGRESS_ENV, str(progress))
    counts = {}
    ref64, _, _ = through_cache("forward", CFG, counts)
    assert counts == {"skip": 1, "miss": 1}  # the denominators entry is 16 bytes of data
    assert only_entries(cache) == [_entry_file(cache, "forward", "denominators")]
    assert_identical(ref64, fresh("forward", CFG)[0])
    notes = [json.loads(line)["msg"] for line in progress.read_text().splitlines()]
    assert any("not stored" in n and "per-entry cap" in n for n in notes), notes


def test_the_total_cap_evicts_the_least_recently_used_but_never_this_runs(cache, monkeypatch):
    through_cache("forward", CFG)  # two entries: 48 KiB fp64 + < 2 KiB denominators
    files = only_entries(cache)
    old = time.time() - 2 * refcache.PROTECT_S
    for f in files:
        os.utime(f, (old, old))  # an earlier run's
    backward64 = 3 * 2 * 96 * 32 * 8  # q, k, v-shaped fp64 outputs: 144 KiB
    monkeypatch.setenv(refcache.TOTAL_GIB_ENV, str((backward64 + 8192) / 2**30))
    counts = {}
    through_cache("backward", CFG, counts)  # its entries fit once both old ones are gone
    assert counts == {"miss": 2}
    # the old fp64 entry made room (the old small one may stay: it fits)
    backward = [_entry_file(cache, "backward", kind) for kind in ("fp64", "denominators")]
    now_files = only_entries(cache)
    assert _entry_file(cache, "forward") not in now_files and set(backward) <= set(now_files)
    assert sum(f.stat().st_size for f in now_files) <= refcache.total_cap()
    # this run's entries (recent) fill the cap: a new large one does not fit and is not
    # stored, the recent ones stay; a small one still fits
    counts = {}
    through_cache("gradgrad", CFG, counts)
    assert counts == {"skip": 1, "miss": 1}
    gradgrad = _entry_file(cache, "gradgrad", "denominators")
    assert set(only_entries(cache)) - set(files) == set(backward) | {gradgrad}
    now_files = backward
    # a hit refreshes an entry's time (the "recently used" of LRU)
    for f in now_files:
        os.utime(f, (old, old))
    through_cache("backward", CFG)
    assert all(f.stat().st_mtime > old + refcache.PROTECT_S for f in now_files)


def test_a_dead_writers_temporary_file_is_removed(cache):
    through_cache("forward", CFG)
    folder = only_entries(cache)[0].parent
    tmp = folder / ".x.pt.123.abcd.tmp"
    tmp.write_bytes(b"partial")
    old = time.time() - 2 * refcache.STALE_TMP_S
    os.utime(tmp, (old, old))
    fresh_tmp = folder / ".y.pt.124.abcd.tmp"  # a live writer's: kept
    fresh_tmp.write_bytes(b"partial")
    through_cache("backward", CFG)
    assert not tmp.exists() and fresh_tmp.exists()


# --- caches on the Modal Volume -------------------------------------------------------------


def test_modal_caches_are_keyed_by_triton_version_and_card():
    modal_runner = pytest.importorskip("modal_runner")
    env = modal_runner.cache_env("/shards", "3.6.0", "NVIDIA H100 80GB HBM3")
    assert env == {
        "TRITON_CACHE_DIR": "/shards/_cache/triton/3.6.0-NVIDIA-H100-80GB-HBM3",
        "GRADGRAD_REF_CACHE": "/shards/_cache/refs",
    }
    assert modal_runner.cache_env("/shards", "3.7.0", "NVIDIA H100 80GB HBM3") != env
    other_card = modal_runner.cache_env("/shards", "3.6.0", "NVIDIA H200")
    assert other_card["TRITON_CACHE_DIR"] != env["TRITON_CACHE_DIR"]
    # the references key themselves (card, code hash) under one root
    assert other_card["GRADGRAD_REF_CACHE"] == env["GRADGRAD_REF_CACHE"]
    # no commit folder can collide with the caches' folder (commits are 40 hex digits)
    assert not all(c in "0123456789abcdef" for c in modal_runner.VOLUME_CACHES)


def test_a_shard_in_a_container_puts_its_caches_on_the_volume(tmp_path, monkeypatch):
    """run_shard's body as a container runs it (modal.is_local() False), the Volume a folder:
    the asv runner it calls sees TRITON_CACHE_DIR and GRADGRAD_REF_CACHE under the Volume."""
    modal_runner = pytest.importorskip("modal_runner")
    from runner import shards

    class FakeVolume:
        def __init__(self):
            self.calls = []

        def reload(self):
            self.calls.append("reload")

        def commit(self):
            self.calls.append("commit")

    vol = FakeVolume()
    seen = {}

    def fake_run_shard(commit, units, root, **kw):
        seen.update(
            root=root, **{k: os.environ.get(k) for k in ("TRITON_CACHE_DIR", refcache.CACHE_ENV)}
        )
        return shards.ShardResult(Path(root), {"commit": commit, "units": units})

    monkeypatch.setattr(modal_runner.modal, "is_local", lambda: False)
    monkeypatch.setattr(modal_runner, "volume", vol)
    monkeypatch.setattr(modal_runner, "VOLUME_MOUNT", str(tmp_path / "shards"))
    monkeypatch.setattr(shards, "run_shard", fake_run_shard)
    monkeypatch.setattr(modal_runner, "_gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    for name in ("TRITON_CACHE_DIR", refcache.CACHE_ENV):
        monkeypatch.setenv(name, "before")  # restored afterwards by monkeypatch
    from importlib import metadata

    monkeypatch.setattr(metadata, "version", lambda name: {"triton": "3.6.0"}[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # modal: .local() has no Volume
        out = modal_runner.run_shard.local("a" * 40, ["bench_forward.Seed"], machine="m")
    volume_root = tmp_path / "shards"
    assert seen["TRITON_CACHE_DIR"] == str(
        volume_root / "_cache" / "triton" / "3.6.0-NVIDIA-H100-80GB-HBM3"
    )
    assert seen[refcache.CACHE_ENV] == str(volume_root / "_cache" / "refs")
    assert vol.calls == ["reload", "commit"] and out["skipped"] is False
