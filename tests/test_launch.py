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

    launch._entries[key] = (refusing, *launch._entries[key][1:])
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


def test_parameter_slots_pack_scalars_and_leave_pointers_to_the_launch():
    import ctypes

    types = ["*bf16", "*fp32", "i32", "constexpr", "i64", "fp32", "constexpr", "constexpr"]
    args = (torch.zeros(2), torch.zeros(2), 7, 1, 2**40, 0.125)  # the 1: specialized away
    slots, pointers = _launch.parameter_slots(types, args, n_tensors=2)
    assert [type(s) for s in slots] == [
        ctypes.c_uint64,
        ctypes.c_uint64,
        ctypes.c_int32,
        ctypes.c_int64,
        ctypes.c_float,
    ]
    assert pointers == slots[:2]
    assert [s.value for s in slots[2:]] == [7, 2**40, 0.125]


@pytest.mark.parametrize(
    "types, n_tensors",
    [
        (["*bf16", "i32", "fp16"], 1),  # a scalar type the C launcher converts: not packed
        (["i32", "i32"], 1),  # a tensor whose parameter is no pointer
        (["*bf16", "i32", "i32"], 1),  # a runtime parameter beyond the positional args
        (["*bf16", ("i32", "i32")], 1),  # a tuple argument
    ],
)
def test_parameter_slots_refuse_what_they_cannot_pack(types, n_tensors):
    assert _launch.parameter_slots(types, (torch.zeros(1), 3), n_tensors) is None


@pytest.mark.parametrize(
    "sizes, expected",
    [
        ([8, 4, 4], 0),
        ([8, 4, 4, 8, 8], 2),  # Triton's global and profile scratch pointers
        ([8, 4, 4, 8, 8, 8], None),  # more than Triton appends
        ([8, 4], None),  # fewer parameters than packed
        ([8, 8, 4], None),  # a size that differs from the packing
        ([8, 4, 4, 4], None),  # a trailing parameter that is no pointer
    ],
)
def test_driver_parameter_sizes_must_match_the_packing(sizes, expected):
    import ctypes

    slots = [ctypes.c_uint64(0), ctypes.c_int32(1), ctypes.c_float(0.5)]
    assert _launch.trailing_scratch_count(sizes, slots) == expected


def test_launch_mode_from_the_environment(monkeypatch):
    for value, mode in (("0", "off"), ("runner", "runner"), ("1", "direct")):
        monkeypatch.setenv("KERNELS_LAUNCH_CACHE", value)
        assert _launch.launch_mode() == mode
    monkeypatch.delenv("KERNELS_LAUNCH_CACHE")
    assert _launch.launch_mode() == "direct"


@pytest.mark.gpu
def test_cached_launches_match_tritons_bit_for_bit(device, monkeypatch):
    """Fused backward and double backward: cached launches give Triton's exact bits."""
    from kernels import fused_backward, fused_gradgrad
    from kernels.forward import attention_forward
    from kernels.fused_backward import fused_attention_backward
    from kernels.fused_gradgrad import fused_attention_double_backward

    launchers = (
        fused_backward.LAUNCHERS["dkdv"],
        fused_backward.LAUNCHERS["dq"],
        fused_gradgrad.LAUNCHERS["rows"],
    )

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
    counts = [x.cached_launches for x in launchers]
    cached = run(*one), run(*two)
    after = [x.cached_launches for x in launchers]
    assert all(a == c + 1 for a, c in zip(after, counts)), (counts, after)
    for want, got in zip(through_triton, cached):
        for a, c in zip(want, got):
            assert torch.equal(a, c)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_direct_launches_match_tritons_runner_bit_for_bit(device, monkeypatch, causal):
    """The ctypes launch is taken on the H100 and gives the runner's exact bits.

    Odd T (masked tails), a window and a strided (transposed) q: scalars of every kind
    the kernels take go through the packed parameter block.
    """
    from kernels import forward, fused_backward, fused_gradgrad
    from kernels.forward import attention_forward
    from kernels.fused_backward import fused_attention_backward
    from kernels.fused_gradgrad import fused_attention_double_backward

    launchers = (
        *forward.LAUNCHERS.values(),
        *fused_backward.LAUNCHERS.values(),
        *fused_gradgrad.LAUNCHERS.values(),
    )
    b, h, t, d = 2, 3, 333, 96
    window = 100 if causal else None
    args = dict(causal=causal, window=window, scale=0.3)
    gen = torch.Generator(device=device).manual_seed(5)
    q = torch.randn(b, t, h, d, device=device, dtype=torch.float16, generator=gen).transpose(1, 2)
    k, v, do, gq, gk, gv = (
        torch.randn(b, h, t, d, device=device, dtype=torch.float16, generator=gen) for _ in range(6)
    )

    def run():
        o, lse = attention_forward(q, k, v, **args)
        grads = fused_attention_backward(q, k, v, o, lse, do, **args)
        gg = fused_attention_double_backward(q, k, v, o, lse, do, gq, gk, gv, **args)
        return (o, lse, *grads, *gg)

    monkeypatch.setenv("KERNELS_LAUNCH_CACHE", "runner")
    run()  # fills the cache through Triton
    before = [x.direct_launches for x in launchers]
    by_runner = run()
    assert [x.direct_launches for x in launchers] == before
    monkeypatch.setenv("KERNELS_LAUNCH_CACHE", "1")
    direct = run()
    after = [x.direct_launches for x in launchers]
    assert all(a > c for a, c in zip(after, before)), (before, after)
    for want, got in zip(by_runner, direct):
        assert torch.equal(want, got)


class FakeDriver:
    """Stands in for libcuda: records what a direct launch hands cuLaunchKernel."""

    def __init__(self, context=True, status=0):
        self.context, self.status, self.calls = context, status, []

    def has_context(self):
        return self.context

    def launch(self, function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        import ctypes

        values = [ctypes.c_uint64.from_address(params[i]).value for i in range(2)]
        self.calls.append(((function, gx, gy, gz, bx, by, bz, shared), values, extra))
        return self.status


@pytest.fixture
def fresh_thread(monkeypatch):
    """No thread known to have a CUDA context, and a stream lookup that needs no GPU."""
    import threading

    monkeypatch.setattr(_launch, "_thread_state", threading.local())
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 0, raising=False)


def direct_launch(driver):
    import ctypes

    slots = [ctypes.c_uint64(0), ctypes.c_uint64(0), ctypes.c_int32(7)]
    return _launch.DirectLaunch(
        driver, 1234, (4, 3, 1), 128, 4096, slots, slots[:2], device=torch.device("cpu")
    )


def test_direct_launch_writes_each_calls_pointers_into_the_parameter_block(fresh_thread):
    driver = FakeDriver()
    launch = direct_launch(driver)
    assert launch([16, 32]) and launch([48, 64])
    assert [c[1] for c in driver.calls] == [[16, 32], [48, 64]]
    assert driver.calls[0][0] == (1234, 4, 3, 1, 128, 1, 1, 4096)


def test_direct_launch_leaves_a_thread_without_cuda_context_to_triton(fresh_thread):
    driver = FakeDriver(context=False)
    assert direct_launch(driver)([16, 32]) is False
    assert driver.calls == []


def test_a_failed_direct_launch_raises(fresh_thread):
    with pytest.raises(RuntimeError, match="CUresult 700"):
        direct_launch(FakeDriver(status=700))([16, 32])
