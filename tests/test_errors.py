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
