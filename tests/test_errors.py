"""Bad input gets a ValueError/TypeError naming the argument, never a Triton error."""

import pytest
import torch

import kernels


def _qkv(device, *, b=1, h=2, tq=8, tk=8, d=64, dtype=torch.float16):
    q = torch.randn(b, h, tq, d, device=device, dtype=dtype)
    k = torch.randn(b, h, tk, d, device=device, dtype=dtype)
    v = torch.randn(b, h, tk, d, device=device, dtype=dtype)
    return q, k, v


def test_rank_not_4(device):
    q, k, v = _qkv(device)
    with pytest.raises(ValueError, match=r"q must have rank 4"):
        kernels.attention(q[0], k, v)
    with pytest.raises(ValueError, match=r"v must have rank 4"):
        kernels.attention(q, k, v.unsqueeze(0))


def test_not_a_tensor(device):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match=r"k must be a torch.Tensor"):
        kernels.attention(q, k.tolist(), v)


def test_mismatched_batch_or_heads(device):
    q, k, v = _qkv(device)
    with pytest.raises(ValueError, match=r"share batch and heads"):
        kernels.attention(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match=r"share batch and heads"):
        kernels.attention(torch.cat([q, q]), k, v)


def test_mismatched_head_dim(device):
    q, k, v = _qkv(device)
    with pytest.raises(ValueError, match=r"share the head dim D"):
        kernels.attention(q, k, v[..., :32])


def test_mismatched_kv_length(device):
    q, k, v = _qkv(device)
    with pytest.raises(ValueError, match=r"k and v must have the same length"):
        kernels.attention(q, k, v[:, :, :5])


@pytest.mark.parametrize("opts", [dict(causal=True), dict(window=4)], ids=["causal", "window"])
def test_tq_greater_than_tk_with_mask(device, opts):
    q, k, v = _qkv(device, tq=9, tk=8)
    with pytest.raises(ValueError, match=r"Tq <= Tk.*Tq=9 > Tk=8"):
        kernels.attention(q, k, v, **opts)


def test_tq_greater_than_tk_without_mask_is_fine(device):
    q, k, v = _qkv(device, tq=9, tk=8)
    assert kernels.attention(q, k, v).shape == q.shape


def test_dtype_mismatch(device):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match=r"share a dtype"):
        kernels.attention(q, k.to(torch.bfloat16), v)


def test_unsupported_dtype(device):
    q, k, v = (t.to(torch.int32) for t in _qkv(device))
    with pytest.raises(TypeError, match=r"dtype must be one of"):
        kernels.attention(q, k, v)


def test_device_mismatch():
    q, k, v = _qkv("cpu")
    meta = v.to("meta")
    with pytest.raises(ValueError, match=r"one device"):
        kernels.attention(q, k, meta)


@pytest.mark.parametrize("d", [8, 100, 256])
def test_unsupported_head_dim(device, d):
    q, k, v = _qkv(device, d=d)
    with pytest.raises(ValueError, match=rf"head dim D={d} is not supported"):
        kernels.attention(q, k, v)


def test_unsupported_head_dim_is_fine_in_fp32(device):
    q, k, v = _qkv(device, d=100, dtype=torch.float32)
    assert kernels.attention(q, k, v).shape == q.shape


@pytest.mark.parametrize("window", [0, -3])
def test_window_below_one(device, window):
    q, k, v = _qkv(device)
    with pytest.raises(ValueError, match=r"window must be >= 1"):
        kernels.attention(q, k, v, window=window)


def test_window_not_an_int(device):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match=r"window must be an int"):
        kernels.attention(q, k, v, window=2.5)


def test_unknown_bwd_mode(device):
    q, k, v = _qkv(device)
    with pytest.raises(ValueError, match=r"bwd_mode must be one of .*'flash'"):
        kernels.attention(q, k, v, bwd_mode="flash")


def test_causal_not_a_bool(device):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match=r"causal must be a bool"):
        kernels.attention(q, k, v, causal="yes")


def test_empty_sequence(device):
    q, k, v = _qkv(device, tq=0)
    with pytest.raises(ValueError, match=r"at least one position"):
        kernels.attention(q, k, v)


@pytest.mark.parametrize("d", [20, 136])
def test_attention_and_launchers_share_the_head_dim_rule(device, d):
    """One rule (kernels/contract.py) for kernels.attention and the Triton launchers."""
    from kernels.fused_backward import fused_attention_backward

    q, k, v = _qkv(device, d=d)
    lse = torch.zeros(q.shape[:3], device=device, dtype=torch.float32)
    message = rf"head dim D={d} is not supported .*D % 8 == 0"
    with pytest.raises(ValueError, match=message):
        kernels.attention(q, k, v)
    with pytest.raises(ValueError, match=message):
        fused_attention_backward(q, k, v, q, lse, q, causal=False, window=None, scale=None)


def test_launcher_window_of_the_wrong_type(device):
    from kernels.fused_backward import attention_backward_dv

    q, k, v = _qkv(device)
    lse = torch.zeros(q.shape[:3], device=device, dtype=torch.float32)
    with pytest.raises(TypeError, match=r"window must be an int"):
        attention_backward_dv(q, k, v, lse, q, causal=True, window=2.5, scale=None)


# ---- issue 16, item 9: scale, window, D = 0, meta tensors, index limits


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf"), 1e39])
def test_scale_not_finite(device, dtype, scale):
    q, k, v = _qkv(device, dtype=dtype)
    with pytest.raises(ValueError, match=r"scale must be a finite float"):
        kernels.attention(q, k, v, scale=scale)


def test_launcher_scale_not_finite(device):
    from kernels.fused_backward import fused_attention_backward

    q, k, v = _qkv(device)
    lse = torch.zeros(q.shape[:3], device=device, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"scale must be a finite float"):
        fused_attention_backward(q, k, v, q, lse, q, causal=False, window=None, scale=float("nan"))


def test_scale_not_a_number(device):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match=r"scale must be a float"):
        kernels.attention(q, k, v, scale="0.1")
    with pytest.raises(TypeError, match=r"scale must be a float"):
        kernels.attention(q, k, v, scale=True)


@pytest.mark.parametrize("scale", [0.0, -0.3])
def test_scale_zero_or_negative_is_attention(device, scale):
    """0 averages the visible values; a negative scale is a plain (finite) softmax too."""
    from numerics import assert_within_rule

    from kernels import reference

    q, k, v = _qkv(device, tq=17, tk=17)
    do = torch.randn_like(q)
    opts = dict(causal=True, scale=scale)

    def run(fn, *args):
        args = [t.detach().clone().requires_grad_() for t in args]
        o = fn(*args[:3])
        return [o, *torch.autograd.grad(o, args[:3], args[3])]

    got = run(lambda q, k, v: kernels.attention(q, k, v, **opts), q, k, v, do)
    want = run(
        lambda q, k, v: reference.attention(q, k, v, **opts), *(t.double() for t in (q, k, v, do))
    )
    base = run(lambda q, k, v: reference.attention(q, k, v, **opts), q, k, v, do)
    for name, a, w, m in zip(("o", "dq", "dk", "dv"), got, want, base):
        assert_within_rule(f"scale={scale}/{name}", a, w, m)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("window", [2**64, 10**30, 8, 9])
def test_window_at_least_tk_is_causal(device, dtype, window):
    """Any window >= Tk is the causal mask (clamped to Tk), never an OverflowError."""
    q, k, v = _qkv(device, tq=5, tk=8, dtype=dtype)
    got = kernels.attention(q, k, v, window=window)
    assert torch.equal(got, kernels.attention(q, k, v, causal=True))


def test_launcher_window_beyond_int64(device):
    from kernels.fused_backward import fused_attention_backward

    q, k, v = _qkv(device)
    lse = torch.zeros(q.shape[:3], device=device, dtype=torch.float32)
    want = fused_attention_backward(q, k, v, q, lse, q, causal=True, window=None, scale=None)
    got = fused_attention_backward(q, k, v, q, lse, q, causal=False, window=2**70, scale=None)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_reference_mask_takes_any_window():
    from kernels import reference

    want = reference.visible_mask(3, 5, causal=True, window=None)
    assert torch.equal(reference.visible_mask(3, 5, causal=True, window=2**80), want)


@pytest.mark.parametrize("window", [True, 2.0, "4"])
def test_window_bool_float_or_str(device, window):
    q, k, v = _qkv(device)
    with pytest.raises(TypeError, match=r"window must be an int or None, got"):
        kernels.attention(q, k, v, window=window)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_zero_head_dim(device, dtype):
    q, k, v = _qkv(device, d=0, dtype=dtype)
    with pytest.raises(ValueError, match=r"head dim D >= 1, got D=0"):
        kernels.attention(q, k, v)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_meta_tensors_give_the_output_shape(dtype):
    """Meta tensors take the math path, as PyTorch's ops do: shape and dtype, no data."""
    q, k, v = _qkv("meta", tq=3, tk=8, dtype=dtype)
    o = kernels.attention(q, k, v, causal=True)
    assert o.device.type == "meta" and o.shape == q.shape and o.dtype == dtype


def test_too_many_batch_heads_for_the_grid(device):
    q = torch.randn(1, 1, 8, 64, device=device, dtype=torch.float16).expand(256, 257, 8, 64)
    with pytest.raises(ValueError, match=r"q: B \* H = 256 \* 257 = 65792 exceeds 65535"):
        kernels.attention(q, q, q)


def test_int32_offsets_are_checked():
    """Offsets inside one (batch, head) slice are int32 in the kernels (meta: no memory)."""
    from kernels.contract import check_triton_sizes

    def meta(shape, stride):
        return torch.empty_strided(shape, stride, device="meta", dtype=torch.float16)

    # (T-1) * stride_t = 39999 * 65536 > 2**31: rejected, naming the tensor
    with pytest.raises(ValueError, match=r"k: shape \(1, 1, 40000, 64\) .*int32 offsets"):
        check_triton_sizes((("k", meta((1, 1, 40000, 64), (0, 0, 65536, 1))),))
    # just inside, and a stride of 2**31 (int64 in the kernel): both fine
    check_triton_sizes((("k", meta((1, 1, 32768, 64), (0, 0, 65536, 1))),))
    check_triton_sizes((("k", meta((1, 1, 3, 64), (0, 0, 2**31, 1))),))
    # a contiguous 8 GB q: offsets per slice are small, B * H * T * D is not (int64 in kernels)
    check_triton_sizes((("q", meta((64, 16, 32768, 128), (2**26, 2**22, 128, 1))),))


# ---- issue 16, item 11: the math path refuses sizes that cannot fit in memory

_MEMORY_SCRIPT = """
import resource, sys
import torch, kernels
# 3 GiB of address space beyond what the imports mapped (CUDA builds map GBs of libraries)
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
limit = vm + (3 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
t, dtype = int(sys.argv[1]), getattr(torch, sys.argv[2])
grad, causal = sys.argv[3] == "1", sys.argv[4] == "1"
q = torch.zeros(1, 1, t, 64, dtype=dtype, requires_grad=grad)
try:
    o = kernels.attention(q, q, q, causal=causal)
except ValueError as e:
    print("REFUSED", e)
else:
    print("RAN", tuple(o.shape))
"""


def _run_under_rlimit(t, dtype, grad, causal):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), TRITON_INTERPRET="0")
    args = [str(t), dtype, "1" if grad else "0", "1" if causal else "0"]
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize(
    "t, dtype, grad, causal",
    [
        (100_000, "float32", False, False),
        (30_000, "float64", True, True),
        (20_000, "float32", True, False),
    ],
)
def test_math_path_too_large_is_refused(t, dtype, grad, causal):
    """Under an address-space limit 3 GiB above the imports, so a wrong estimate cannot swap
    the machine (2 cores, 24 GB shared) or wake the OOM killer."""
    out = _run_under_rlimit(t, dtype, grad, causal)
    assert out.startswith("REFUSED"), out
    assert "too large for the math path" in out and 'bwd_mode="fused"' in out
    assert ("RLIMIT_AS" in out or "MemAvailable" in out) and f"1 x {t} x {t}" in out


def test_math_path_that_fits_runs():
    assert _run_under_rlimit(2000, "float32", True, True).startswith("RAN (1, 1, 2000, 64)")


def test_math_path_bytes():
    from kernels.contract import math_path_bytes

    q = torch.empty(2, 3, 100, 64, device="meta", dtype=torch.float32)
    k = torch.empty(2, 3, 300, 64, device="meta", dtype=torch.float32)
    scores = 2 * 3 * 100 * 300
    assert math_path_bytes(q, k, masked=False, needs_grad=False) == 2 * 4 * scores
    assert math_path_bytes(q, k, masked=False, needs_grad=True) == 4 * 4 * scores
    assert math_path_bytes(q, k, masked=True, needs_grad=False) == 8 * scores + 10 * 100 * 300


def test_math_path_too_large_on_the_device(device):
    """fp32 on the device (CPU: MemAvailable; CUDA: mem_get_info): refused, nothing allocated.

    B * H * T^2 * 4 bytes * 2 = 1.1 TB, more than any machine here; q is expanded (stride 0).
    """
    q = torch.zeros(1, 1, 8192, 64, device=device).expand(64, 16, 8192, 64)
    with pytest.raises(ValueError, match=r'too large for the math path.*bwd_mode="fused"'):
        kernels.attention(q, q, q)
