"""Compile the forward / backward / double backward kernels for sm_90 on a machine WITHOUT a GPU.

Triton's front end plus the ptxas that ships in the triton wheel build the real H100
binary; cuobjdump then reads its registers, spills (stack bytes, LDL/STL count),
shared memory and whether the dots became wgmma (HGMMA) or mma.sync (HMMA). This is
how the backward / grad-grad config tables in kernels/tuning.py were chosen. Costs no
GPU time; the local triton may differ from the H100's (3.9 vs 3.6). Reaches the kernels
through their public ``AUTOTUNED`` handles; ``--limit N`` compiles the first N tiles only.

    PYTHONPATH=. .venv/bin/python scripts/sm90_resources.py rows --head-dim 128
    PYTHONPATH=. .venv/bin/python scripts/sm90_resources.py dkdv --head-dim 64 --window
    PYTHONPATH=. .venv/bin/python scripts/sm90_resources.py cols --flags 100 --all-tiles
    PYTHONPATH=. .venv/bin/python scripts/sm90_resources.py forward --head-dim 80 --padded

Split head dims (D = 80 and 96, ``kernels.tuning.head_dim_split``) compile as the launchers
run them; ``--padded`` as one BLOCK_D tile, the kernels' A/B switch. ``--ptx-dir DIR``
also writes each tile's PTX without its .loc / debug lines, to diff two checkouts.

Pointers are taken 16-byte aligned, strides divisible by 16 and the D stride 1, as
Triton specialises them for contiguous tensors.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import tempfile

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels import forward, fused_backward, fused_gradgrad  # noqa: E402
from kernels.tuning import (  # noqa: E402
    block_d,
    head_dim_split,
    prune_by_head_dim,
    prune_forward_configs,
)

# The public handles of the autotuned kernels: forward, dkdv, dq (backward), rows, cols
# (grad-grad), and the pruning each one's autotuner runs.
KERNELS = {**forward.AUTOTUNED, **fused_backward.AUTOTUNED, **fused_gradgrad.AUTOTUNED}
PRUNE = {"forward": prune_forward_configs}
FP32_SCALARS = ("scale", "qk_scale_log2")
SCALAR_INTS = ("H", "T_Q", "T_K", "WINDOW", "T_Q_BUCKET", "T_K_BUCKET")
FP32_POINTERS = ("Lse", "Delta", "Gamma", "Rho")
BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def compile_sm90(jit_fn, dtype, constexprs, num_warps, num_stages):
    signature, attrs, consts = {}, {}, dict(constexprs)
    for i, name in enumerate(jit_fn.arg_names):
        if name in consts:
            signature[name] = "constexpr"
        elif name[0].isupper() and name not in SCALAR_INTS:
            signature[name] = "*fp32" if name in FP32_POINTERS else f"*{dtype}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in FP32_SCALARS:
            signature[name] = "fp32"
        elif name.startswith("stride") and name.endswith("d"):
            signature[name] = "constexpr"
            consts[name] = 1
        else:
            signature[name] = "i32"
            if name.startswith("stride"):
                attrs[(i,)] = [["tt.divisibility", 16]]
    kernel = triton.compile(
        ASTSource(jit_fn, signature, consts, attrs),
        target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=num_warps, num_stages=num_stages),
    )
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run(
            [os.path.join(BIN, "cuobjdump"), "-res-usage", f.name], capture_output=True, text=True
        ).stdout
        sass = subprocess.run(
            [os.path.join(BIN, "cuobjdump"), "-sass", f.name], capture_output=True, text=True
        ).stdout
    regs, stack = re.search(r"REG:(\d+) STACK:(\d+)", usage).groups()
    return dict(
        regs=int(regs),
        stack_bytes=int(stack),
        ldl_stl=sass.count("LDL") + sass.count("STL"),
        smem=kernel.metadata.shared,
        hgmma=sass.count("HGMMA"),
        hmma=sass.count("HMMA"),
        ptx=kernel.asm["ptx"],
    )


def strip_ptx(ptx: str) -> str:
    """PTX without .loc / .file lines and the debug sections: what two builds must share."""
    ptx = ptx.split("\t.section\t.debug", 1)[0]
    keep = [x for x in ptx.splitlines() if not x.lstrip().startswith((".loc", ".file", "$L__"))]
    return "\n".join(keep) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", choices=sorted(KERNELS))
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    parser.add_argument("--no-causal", action="store_true")
    parser.add_argument("--window", action="store_true")
    parser.add_argument(
        "--padded", action="store_true", help="one BLOCK_D tile, no head-dim split (as before)"
    )
    parser.add_argument("--dv-only", action="store_true", help="dkdv: the dv_only variant")
    parser.add_argument("--flags", default="111", help="rows/cols: has gdq, gdk, gdv (e.g. 101)")
    parser.add_argument(
        "--all-tiles",
        action="store_true",
        help="every BLOCK_M, BLOCK_N in {32,64,128} x warps {4,8} (stages 2), not the config table",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="compile only the first N tiles (0: all)"
    )
    parser.add_argument("--ptx-dir", default="", help="write each tile's stripped PTX here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tuner = KERNELS[args.kernel]
    consts = dict(
        HEAD_DIM=args.head_dim,
        BLOCK_D=block_d(args.head_dim),
        IS_CAUSAL=not args.no_causal or args.window,
        HAS_WINDOW=args.window,
        DOT_FP32=False,
    )
    if args.kernel == "dkdv":
        consts["DV_ONLY"] = args.dv_only
    if "BLOCK_DT" in tuner.fn.arg_names:
        # the launchers' split (64 + 16 at D=80), or one padded tile with --padded
        bd, bdt = (block_d(args.head_dim), 0) if args.padded else head_dim_split(args.head_dim)
        consts.update(BLOCK_D=bd, BLOCK_DT=bdt, HAS_TAIL=bdt > 0)
    if args.kernel in ("rows", "cols"):
        consts.update(zip(("HAS_GDQ", "HAS_GDK", "HAS_GDV"), (c == "1" for c in args.flags)))
        consts["HAS_G"] = consts["HAS_GDQ"] or consts["HAS_GDK"]
    if args.all_tiles:
        tiles = [
            ({"BLOCK_M": m, "BLOCK_N": n}, w, 2, "")
            for m, n, w in itertools.product((32, 64, 128), (32, 64, 128), (4, 8))
        ]
    else:
        kept = PRUNE.get(args.kernel, prune_by_head_dim)(tuner.configs, {}, **consts)
        tiles = [
            (c.kwargs, c.num_warps, c.num_stages, "kept" if c in kept else "pruned")
            for c in tuner.configs
        ]
    if args.limit:
        tiles = tiles[: args.limit]
    print(f"{args.kernel} {consts}")
    for kwargs, warps, stages, tag in tiles:
        label = f"M{kwargs['BLOCK_M']:<3} N{kwargs['BLOCK_N']:<3} w{warps} s{stages} {tag:6s}"
        try:
            r = compile_sm90(tuner.fn, args.dtype, {**consts, **kwargs}, warps, stages)
            print(
                f"{label} regs {r['regs']:3d} stack {r['stack_bytes']:4d} B"
                f"  LDL/STL {r['ldl_stl']:4d}  smem {r['smem'] // 1024:3d} KiB"
                f"  HGMMA {r['hgmma']:3d}  HMMA {r['hmma']:3d}",
                flush=True,
            )
            if args.ptx_dir:
                os.makedirs(args.ptx_dir, exist_ok=True)
                m, n = kwargs["BLOCK_M"], kwargs["BLOCK_N"]
                name = f"{args.kernel}_D{args.head_dim}_M{m}_N{n}_w{warps}_s{stages}.ptx"
                with open(os.path.join(args.ptx_dir, name), "w") as f:
                    f.write(strip_ptx(r["ptx"]))
        except Exception as exc:  # report and go on: one bad tile must not hide the others
            print(f"{label} FAILED {type(exc).__name__}: {str(exc)[-300:]}", flush=True)


if __name__ == "__main__":
    main()
