"""A/A noise per card and unit|regime, read by reports/metrics.py aa_noise. GENERATED
by `python -m reports aa A B --write` (one card per A/A pair; the sources are in
the JSON): do not edit by hand.
"""

# ruff: noqa: E501
import json

AA_NOISE = json.loads(
    r"""
{
 "about": "A/A noise per card and unit|regime; written by `python -m reports aa A B --write` (one card per pair); read by reports/metrics.py aa_noise: the floor of every row's minimum detectable step (what moves between runs). threshold = 1.5 x max_abs_diff, rounded up to 0.5%.",
 "cards": {
  "h100-sxm-80gb": {
   "noise": {
    "MiB|all": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 60,
     "threshold": 0.005,
     "worst": "bench_backward.Seed.track_peak_mib B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=dv_only"
    },
    "MiB|backend_choice": {
     "max_abs_diff_pct": 24.9004,
     "median_abs_diff_pct": 0.0,
     "pairs": 8,
     "threshold": 0.375,
     "worst": "bench_backward.Seed.track_peak_mib B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=sdpa"
    },
    "TFLOP/s|gpu_bound": {
     "max_abs_diff_pct": 0.3217,
     "median_abs_diff_pct": 0.0542,
     "pairs": 18,
     "threshold": 0.005,
     "worst": "bench_gradgrad.Seed.track_tflops B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=save_p"
    },
    "TFLOP/s|host_bound": {
     "max_abs_diff_pct": 64.7658,
     "median_abs_diff_pct": 0.5529,
     "pairs": 50,
     "threshold": 0.975,
     "worst": "bench_forward.Seed.track_tflops B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=recompute"
    },
    "ms|gpu_bound": {
     "max_abs_diff_pct": 0.3207,
     "median_abs_diff_pct": 0.0542,
     "pairs": 18,
     "threshold": 0.005,
     "worst": "bench_gradgrad.Seed.track_ms B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=save_p"
    },
    "ms|host_bound": {
     "max_abs_diff_pct": 39.3078,
     "median_abs_diff_pct": 0.5531,
     "pairs": 50,
     "threshold": 0.59,
     "worst": "bench_forward.Seed.track_ms B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=recompute"
    },
    "ratio|all": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 60,
     "threshold": 0.005,
     "worst": "bench_backward.Seed.track_parity B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=dv_only"
    },
    "ratio|backend_choice": {
     "max_abs_diff_pct": 15.9098,
     "median_abs_diff_pct": 0.0,
     "pairs": 8,
     "threshold": 0.24,
     "worst": "bench_backward.Seed.track_parity B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=sdpa"
    }
   },
   "source": {
    "a": "results/h100-sxm-80gb",
    "b": "results/h100-sxm-80gb-aa",
    "commits": [
     "c4ea3647"
    ]
   }
  },
  "h200-sxm-140gb": {
   "noise": {
    "GB/s|all": {
     "max_abs_diff_pct": 0.0684,
     "median_abs_diff_pct": 0.039,
     "pairs": 2,
     "threshold": 0.005,
     "worst": "bench_peak.Peak.track_gbps op=copy_2GiB"
    },
    "MiB|all": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 392,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_peak_mib B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=dv_only"
    },
    "MiB|backend_choice": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 60,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_peak_mib B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=sdpa"
    },
    "TFLOP/s|gpu_bound": {
     "max_abs_diff_pct": 9.0419,
     "median_abs_diff_pct": 0.0784,
     "pairs": 402,
     "threshold": 0.14,
     "worst": "bench_backward.Grid.track_tflops B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=none bwd_mode=sdpa"
    },
    "TFLOP/s|host_bound": {
     "max_abs_diff_pct": 100.6701,
     "median_abs_diff_pct": 0.3166,
     "pairs": 494,
     "threshold": 1.5150000000000001,
     "worst": "bench_forward.Seed.track_tflops B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=recompute"
    },
    "graph ms|backend_choice": {
     "max_abs_diff_pct": 8.53,
     "median_abs_diff_pct": 0.3289,
     "pairs": 60,
     "threshold": 0.13,
     "worst": "bench_forward.Long.track_graph_ms B=1 H=8 T=32768 D=128 dtype=bfloat16 mask=causal bwd_mode=sdpa"
    },
    "graph ms|gpu_bound": {
     "max_abs_diff_pct": 5.194,
     "median_abs_diff_pct": 0.1141,
     "pairs": 380,
     "threshold": 0.08,
     "worst": "bench_gradgrad.Grid.track_graph_ms B=4 H=16 T=4096 D=64 dtype=bfloat16 mask=causal bwd_mode=fused"
    },
    "host ms|all": {
     "max_abs_diff_pct": 163.6056,
     "median_abs_diff_pct": 22.4151,
     "pairs": 452,
     "threshold": 2.455,
     "worst": "bench_forward.Short.track_host_ms B=4 H=16 T=2048 D=64 dtype=bfloat16 mask=none bwd_mode=sdpa"
    },
    "ms|gpu_bound": {
     "max_abs_diff_pct": 8.2921,
     "median_abs_diff_pct": 0.0967,
     "pairs": 207,
     "threshold": 0.125,
     "worst": "bench_backward.Grid.track_ms B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=none bwd_mode=sdpa"
    },
    "ms|host_bound": {
     "max_abs_diff_pct": 94.8274,
     "median_abs_diff_pct": 0.465,
     "pairs": 251,
     "threshold": 1.425,
     "worst": "bench_backward.Seed.track_ms B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=flash"
    },
    "ratio|all": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 392,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_parity B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=dv_only"
    },
    "ratio|backend_choice": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 60,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_parity B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=sdpa"
    }
   },
   "source": {
    "a": "results/h200-sxm-140gb",
    "b": "results/h200-sxm-140gb-aa",
    "commits": [
     "493bf30f",
     "c5a9b22c"
    ]
   }
  }
 },
 "host_bound_below_ms": 3.0
}
"""
)
