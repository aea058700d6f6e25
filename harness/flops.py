"""The one FLOP model (and, beside it, the byte model): every TFLOP/s in the results divides
these FLOPs by a time; the roofline divides them by these bytes.

Only visible (query, key) pairs are counted, so a causal or windowed problem is not
credited the work its mask skips. Every mode of a configuration is credited the same
FLOPs, whatever it actually executes, so TFLOP/s ranks like 1/ms within a config.
"""

from __future__ import annotations

import dataclasses

from harness.grid import Config, check_path, parse_mask

# Matmuls of 2*Tq*Tk*D FLOPs each (per batch and head, on visible pairs), per stage: the
# convention of docs/gradgrad.md ("FLOP model"). Forward: S = QK^T, O = PV. Backward:
# 5, the FA2 count (S, dP = dO V^T, dV, dQ, dK), i.e. 2.5x the forward (FA3 paper 4.1;
# the fused kernel executes 7, paying 2 for determinism). Double backward: 21,
# what the fused kernel executes with all three cotangents (gradgrad_matmul_count(): rows
# pass 5, rows pass 8, columns pass 8; docs/gradgrad.md estimated ~19).
MATMULS_FORWARD = 2
MATMULS_BACKWARD = 5
MATMULS_DOUBLE_BACKWARD = 21
MATMULS_PER_PATH = {
    "forward": MATMULS_FORWARD,
    "backward": MATMULS_FORWARD + MATMULS_BACKWARD,  # 7 = 3.5x forward
    "gradgrad": MATMULS_FORWARD + MATMULS_BACKWARD + MATMULS_DOUBLE_BACKWARD,  # 28 = 14x
}


def _sum_range(lo: int, hi: int) -> int:
    """lo + (lo+1) + ... + hi, 0 when hi < lo."""
    return (lo + hi) * (hi - lo + 1) // 2 if hi >= lo else 0


def visible_pairs(tq: int, tk: int, mask: str) -> int:
    """Number of (query, key) pairs the mask lets through, in closed form.

    Queries are the last Tq of Tk positions (bottom-right): query i sits at position
    p = i + Tk - Tq and sees m = p + 1 keys when causal, min(window, m) with a window.
    m runs over Tk - Tq + 1 .. Tk.
    """
    causal, window = parse_mask(mask)
    if not causal:
        return tq * tk
    first, last = tk - tq + 1, tk
    if window is None or window >= last:
        return _sum_range(first, last)
    # rows with m < window see m keys, the rest see window keys
    return _sum_range(first, min(last, window - 1)) + window * (last - max(first, window) + 1)


def flops(path: str, B: int, H: int, Tq: int, Tk: int, D: int, mask: str) -> float:
    """FLOPs of one call of ``path``, counting only visible (query, key) pairs.

    forward = 4*B*H*Tq*Tk*D * visible fraction (square causal: (T+1)/(2T));
    backward path = forward + backward = 3.5x forward; grad-grad path = 14x forward.
    """
    check_path(path)
    return 2.0 * MATMULS_PER_PATH[path] * B * H * visible_pairs(Tq, Tk, mask) * D


def config_flops(path: str, cfg: Config) -> float:
    return flops(path, cfg.B, cfg.H, cfg.tq, cfg.tk, cfg.D, cfg.mask)


# --------------------------------------------------------------------------------------
# The byte model, beside the FLOP model: HBM traffic of one call, for the roofline
# (reports/roofline.py: arithmetic intensity = flops / bytes_moved). Compulsory traffic only:
# each pass of the step reads each of its inputs once and writes each output once (a fused
# kernel's ideal; re-reads of K and V per query block are left to the L2), so it is a lower
# bound of the real traffic and the intensity an upper bound. Per batch and head, counted in
# tensors of Tq x D ("q-sized": q, o, dO, dq, ...), Tk x D ("k-sized": k, v, dk, dv, ...) in
# the input dtype, and fp32 rows of Tq (the logsumexp, delta = rowsum(dO * o)). The mask does
# not change it: every visible key is still read once. docs/gradgrad.md "Byte model".
#
#   forward:            read q, k, v; write o and the logsumexp                 (2, 2, 1)
#   backward (+ fwd):   read q, o, dO, k, v, lse; write dq, dk, dv, delta,
#                       read delta again                                         (+4, +4, +3)
#   double backward:    read q, o, dO, the cotangent of dq, k, v, the cotangents
#                       of dk and dv, lse, delta; write the grads of q, dO, k, v (+6, +6, +2)
TENSORS_FORWARD = (2, 2, 1)
TENSORS_BACKWARD = (4, 4, 3)
TENSORS_DOUBLE_BACKWARD = (6, 6, 2)
TENSORS_PER_PATH = {  # (q-sized, k-sized, fp32 rows) of a whole step of the path
    "forward": TENSORS_FORWARD,
    "backward": tuple(map(sum, zip(TENSORS_FORWARD, TENSORS_BACKWARD))),  # (6, 6, 4)
    "gradgrad": tuple(  # (12, 12, 6)
        map(sum, zip(TENSORS_FORWARD, TENSORS_BACKWARD, TENSORS_DOUBLE_BACKWARD))
    ),
}
ROW_STAT_BYTES = 4  # fp32 logsumexp and delta


def bytes_moved(path: str, B: int, H: int, Tq: int, Tk: int, D: int, dtype: str) -> float:
    """Bytes one call of ``path`` moves to and from HBM at the least (see above)."""
    check_path(path)
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    n_q, n_k, n_rows = TENSORS_PER_PATH[path]
    item = DTYPE_BYTES[dtype]
    return float(B * H * ((n_q * Tq + n_k * Tk) * D * item + n_rows * Tq * ROW_STAT_BYTES))


def config_bytes(path: str, cfg: Config) -> float:
    return bytes_moved(path, cfg.B, cfg.H, cfg.tq, cfg.tk, cfg.D, cfg.dtype)


def intensity(path: str, B: int, H: int, Tq: int, Tk: int, D: int, mask: str, dtype: str):
    """Arithmetic intensity of one call, FLOPs per byte of HBM traffic (the roofline's x)."""
    return flops(path, B, H, Tq, Tk, D, mask) / bytes_moved(path, B, H, Tq, Tk, D, dtype)


# --------------------------------------------------------------------------------------
# The card's own ceilings (bench_suite/bench_peak.py, harness/peak.py; issue 17): what each
# op of the Peak benchmark does, in FLOPs and in bytes moved to or from HBM. The op's name
# carries its size, so a change of size is a new series, never a silent rescale of old ms.


@dataclasses.dataclass(frozen=True)
class PeakOp:
    """One op of the Peak benchmark: a square matmul (``n``, ``dtype``) or a copy."""

    kind: str  # "matmul" or "copy"
    dtype: str  # torch dtype name ("bfloat16", "float16"; "uint8" for the copy)
    n: int  # matmul: N of an N x N x N product; copy: bytes of the source tensor

    @property
    def flops(self) -> float:
        """2*N^3 for a matmul (a multiply and an add per term), 0 for a copy."""
        return 2.0 * self.n**3 if self.kind == "matmul" else 0.0

    @property
    def bytes(self) -> float:
        """HBM traffic at the least: a copy reads and writes its n bytes (2n, the STREAM
        convention); a matmul reads A and B and writes C once (3 N^2 elements)."""
        if self.kind == "copy":
            return 2.0 * self.n
        return 3.0 * self.n**2 * DTYPE_BYTES[self.dtype]


DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "uint8": 1}
PEAK_MATMUL_N = 8192  # 1.1 TFLOP a call: ~1.4 ms at the H100's 790 TFLOP/s, far above launch cost
PEAK_COPY_BYTES = 2 * 2**30  # a 2 GiB device-to-device copy: 4 GiB of HBM traffic a call
PEAK_OPS: dict[str, PeakOp] = {
    f"matmul_bf16_{PEAK_MATMUL_N}": PeakOp("matmul", "bfloat16", PEAK_MATMUL_N),
    f"matmul_fp16_{PEAK_MATMUL_N}": PeakOp("matmul", "float16", PEAK_MATMUL_N),
    f"copy_{PEAK_COPY_BYTES // 2**30}GiB": PeakOp("copy", "uint8", PEAK_COPY_BYTES),
}
# The ops whose rates are the ceilings the reports divide by.
PEAK_MATMUL_OP = f"matmul_bf16_{PEAK_MATMUL_N}"  # "% of peak": the bf16 dense matmul
PEAK_COPY_OP = f"copy_{PEAK_COPY_BYTES // 2**30}GiB"  # the roofline's memory ceiling


def peak_op(op: str) -> PeakOp | None:
    """The op of a Peak benchmark row by its name (None for a name this model lacks)."""
    return PEAK_OPS.get(op)


def tflops_of(flop: float, ms: float) -> float:
    """FLOPs done in ``ms`` milliseconds, in TFLOP/s."""
    return flop / ms / 1e9


def gbps_of(nbytes: float, ms: float) -> float:
    """Bytes moved in ``ms`` milliseconds, in GB/s (10^9 bytes)."""
    return nbytes / ms / 1e6
