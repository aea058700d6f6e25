"""kernels._launch.CachedLauncher: when a launch may skip Triton's Python path, and what it passes.

The key logic is tested on CPU with a stand-in kernel (the interpreter never hands back
a CompiledKernel); the real cached launches are checked bit for bit with ``--gpu``.
"""

import pytest
import torch

from kernels import _launch
from kernels._launch import CachedLauncher


class FakeCompiled:
    def __init__(self, log):
        self.log = log

    def __getitem__(self, grid):
        def runner(*args):
            self.log.append(("cached", grid, args))

        return runner


class FakeConfig:
    kwargs = {"BLOCK_M": 64, "BLOCK_N": 32}


class FakeAutotuned:
    """kernel[grid](*args, **kw) like triton.autotune: records, returns a compiled kernel."""

    arg_names = ["X", "Y", "n", "scale", "HEAD_DIM", "BLOCK_M", "BLOCK_N"]
    best_config = FakeConfig()

    def __init__(self):
        self.log = []

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.log.append(("triton", grid, args, kw))
            return FakeCompiled(self.log)

        return launch


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(_launch, "COMPILED_KERNEL_TYPES", (FakeCompiled,))
    monkeypatch.delenv("KERNELS_LAUNCH_CACHE", raising=False)
    kernel = FakeAutotuned()
    return kernel, CachedLauncher(kernel, n_tensors=2)


def grid(meta):
    return (meta["n"] // meta["BLOCK_M"], 3)


def test_second_launch_is_cached_with_constexprs_in_signature_order(fake):
    kernel, launch = fake
    x, y = torch.zeros(8), torch.zeros(8)
    launch(grid, x, y, 256, 0.5, HEAD_DIM=64)
    launch(grid, x, y, 256, 0.5, HEAD_DIM=64)
    assert [e[0] for e in kernel.log] == ["triton", "cached"]
    _, cached_grid, args = kernel.log[1]
    assert cached_grid == (4, 3, 1)  # from the chosen config's BLOCK_M, padded to 3-D
    assert args == (x, y, 256, 0.5, 64, 64, 32)
    assert (launch.triton_launches, launch.cached_launches) == (1, 1)


def test_new_tensors_of_the_same_signature_reuse_the_entry(fake):
    kernel, launch = fake
    launch(grid, torch.zeros(8), torch.zeros(8), 256, 0.5, HEAD_DIM=64)
    x2, y2 = torch.ones(8), torch.ones(8)
    launch(grid, x2, y2, 256, 0.5, HEAD_DIM=64)
    assert kernel.log[-1][0] == "cached"
    assert kernel.log[-1][2][:2] == (x2, y2)  # the new pointers, not the first call's


@pytest.mark.parametrize(
    "change",
    ["scalar", "float", "dtype", "alignment", "shape", "constexpr"],
)
def test_anything_triton_specializes_on_goes_back_through_triton(fake, change):
    kernel, launch = fake
    base = torch.zeros(64, dtype=torch.float16)
    x, y, n, scale, hd = base, torch.zeros(8), 256, 0.5, 64
    launch(grid, x, y, n, scale, HEAD_DIM=hd)
    if change == "scalar":
        n = 512
    elif change == "float":
        scale = 0.25
    elif change == "dtype":
        x = torch.zeros(64, dtype=torch.bfloat16)
    elif change == "alignment":
        x = base[1:]  # 2-byte offset: Triton's pointer specialization changes
        assert x.data_ptr() % 16 != 0
    elif change == "shape":
        # Same scalars, another batch: only the grid sees it (a stale grid left a whole
        # batch unwritten on the H100, found by tests/test_properties.py).
        x = torch.zeros(2, 32, dtype=torch.float16)
    else:
        hd = 128
    launch(grid, x, y, n, scale, HEAD_DIM=hd)
    assert [e[0] for e in kernel.log] == ["triton", "triton"]


def test_env_switch_turns_the_cache_off(fake, monkeypatch):
    kernel, launch = fake
    monkeypatch.setenv("KERNELS_LAUNCH_CACHE", "0")
    for _ in range(3):
        launch(grid, torch.zeros(8), torch.zeros(8), 256, 0.5, HEAD_DIM=64)
    assert [e[0] for e in kernel.log] == ["triton"] * 3


def test_a_refused_cached_launch_falls_back_for_good(fake):
    kernel, launch = fake
    x, y = torch.zeros(8), torch.zeros(8)
    launch(grid, x, y, 256, 0.5, HEAD_DIM=64)
    key = next(iter(launch._entries))

    def refusing(*args):
        raise TypeError("function takes exactly 12 arguments (15 given)")

    launch._entries[key] = (refusing, launch._entries[key][1])
    with pytest.warns(RuntimeWarning, match="Triton's launch path"):
        launch(grid, x, y, 256, 0.5, HEAD_DIM=64)
    launch(grid, x, y, 256, 0.5, HEAD_DIM=64)
    assert [e[0] for e in kernel.log] == ["triton", "triton", "triton"]


def test_nothing_is_cached_when_triton_returns_no_compiled_kernel(monkeypatch):
    monkeypatch.delenv("KERNELS_LAUNCH_CACHE", raising=False)

    class Interpreted(FakeAutotuned):
        def __getitem__(self, grid):
            def launch(*args, **kw):
                self.log.append(("triton", grid, args, kw))

            return launch

    kernel = Interpreted()
    launch = CachedLauncher(kernel, n_tensors=2)
    for _ in range(2):
        launch(grid, torch.zeros(8), torch.zeros(8), 256, 0.5, HEAD_DIM=64)
    assert [e[0] for e in kernel.log] == ["triton", "triton"]


@pytest.mark.gpu
def test_cached_launches_match_tritons_bit_for_bit(device, monkeypatch):
    """Fused backward and double backward: cached launches give Triton's exact bits."""
    from kernels.forward import attention_forward
    from kernels.fused_backward import _launch_dkdv_kernel, _launch_dq, fused_attention_backward
    from kernels.fused_gradgrad import _launch_rows, fused_attention_double_backward

    h, t, d = 2, 200, 64
    args = dict(causal=True, window=None, scale=d**-0.5)

    def inputs(b):
        return [torch.randn(b, h, t, d, device=device, dtype=torch.bfloat16) for _ in range(7)]

    def run(q, k, v, do, gq, gk, gv):
        o, lse = attention_forward(q, k, v, **args)
        grads = fused_attention_backward(q, k, v, o, lse, do, **args)
        gg = fused_attention_double_backward(q, k, v, o, lse, do, gq, gk, gv, **args)
        return (o, lse, *grads, *gg)

    one, two = inputs(1), inputs(2)  # batch 2 has batch 1's strides: only the grid differs
    monkeypatch.setenv("KERNELS_LAUNCH_CACHE", "0")
    through_triton = run(*one), run(*two)
    monkeypatch.delenv("KERNELS_LAUNCH_CACHE")
    run(*one)  # fills the cache
    counts = [x.cached_launches for x in (_launch_dkdv_kernel, _launch_dq, _launch_rows)]
    cached = run(*one), run(*two)
    after = [x.cached_launches for x in (_launch_dkdv_kernel, _launch_dq, _launch_rows)]
    assert all(a == c + 1 for a, c in zip(after, counts)), (counts, after)
    for want, got in zip(through_triton, cached):
        for a, c in zip(want, got):
            assert torch.equal(a, c)
