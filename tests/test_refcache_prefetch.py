"""Reading reference-cache entries in the background (harness/refcache.py ``prefetch``).

CPU, offline; every test points the cache at its own tmp_path.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

from harness import measure, refcache
from harness.grid import Config
from harness.impls import make_inputs
from harness.parity import REFERENCE_CHUNK_SCORES

CFG = Config(1, 2, "48/80", 32, "bfloat16", "window24")
OTHER = Config(1, 2, "64", 32, "float16", "none")
COMMON = dict(seed=measure.SEED, chunk_scores=REFERENCE_CHUNK_SCORES)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "refs"
    monkeypatch.setenv(refcache.CACHE_ENV, str(root))
    return root


@pytest.fixture
def reads(monkeypatch):
    """Which thread read which entry: (thread name, file name) per refcache._read."""
    seen = []
    real = refcache._read

    def spy(file, key, expect):
        seen.append((threading.current_thread().name, file.name))
        return real(file, key, expect)

    monkeypatch.setattr(refcache, "_read", spy)
    return seen


def references(path, cfg, prefetched=None, counts=None):
    inp = make_inputs(cfg, "cpu", seed=measure.SEED)
    counts = {} if counts is None else counts
    return measure._references(f"{path}/test", path, cfg, inp, "cpu", counts, prefetched=prefetched)


def prefetch(path, cfg):
    return measure._prefetch_reference(path, cfg, "cpu")


@pytest.mark.parametrize("path", ["forward", "gradgrad"])
def test_a_prefetched_entry_is_read_once_in_the_background(cache, reads, path):
    cold, cold_denoms, _ = references(path, CFG)  # computes and stores
    reads.clear()
    pending = prefetch(path, CFG)
    assert pending is not None and pending.expect == measure._reference_expect(path, CFG)
    counts = {}
    warm, warm_denoms, _ = references(path, CFG, pending, counts)
    assert counts == {"hit": 2}
    fp64_reads = [name for name, f in reads if f == pending.file.name]
    assert fp64_reads == ["refcache-reader_0"]  # the reader thread, and only it
    for a, b in zip(warm, cold, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert warm_denoms == cold_denoms


def test_a_prefetch_of_another_entry_is_not_used(cache, reads):
    references("backward", CFG)
    pending = prefetch("backward", OTHER)  # not stored: a miss in the background
    assert pending.future.result() == (None, None)
    reads.clear()
    counts = {}
    references("backward", CFG, pending, counts)
    assert counts == {"hit": 2}
    assert [t for t, _ in reads] == ["MainThread", "MainThread"]  # read here, both


def test_a_corrupt_prefetched_entry_warns_here_and_is_recomputed(cache):
    ref, _, _ = references("gradgrad", CFG)
    pending = prefetch("gradgrad", CFG)
    pending.future.result()
    # damage the file after a first read, then read it again in the background
    data = bytearray(pending.file.read_bytes())
    data[-5] ^= 0xFF
    pending.file.write_bytes(bytes(data))
    pending = prefetch("gradgrad", CFG)
    counts = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, _, _ = references("gradgrad", CFG, pending, counts)
    assert any(issubclass(w.category, refcache.CacheWarning) for w in caught)
    assert any("checksum" in str(w.message) for w in caught)
    assert counts == {"corrupt": 1, "hit": 1}  # the reference; its denominators were fine
    for a, b in zip(again, ref, strict=True):
        assert torch.equal(a, b)
    assert prefetch("gradgrad", CFG).future.result()[1] is None  # rewritten whole


def test_no_prefetch_when_the_cache_is_off(monkeypatch):
    monkeypatch.setenv(refcache.CACHE_ENV, "off")
    assert prefetch("forward", CFG) is None


def test_a_preset_reads_every_config_after_the_first_in_the_background(cache, reads):
    measure.measure_preset("cpu", "backward", iters=2, modes=("math",))  # cold: stores
    reads.clear()
    records = measure.measure_preset("cpu", "backward", iters=2, modes=("math",))
    assert all(r.status == "ok" for r in records.values())
    n = len({k[:-1] for k in records})  # configs
    fp64 = [t for t, f in reads if t == "refcache-reader_0"]
    assert n >= 2 and len(fp64) == n - 1  # each config's successor, while it was measured
