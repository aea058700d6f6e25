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
     "max_abs_diff_pct": 0.0732,
     "median_abs_diff_pct": 0.035,
     "pairs": 11,
     "threshold": 0.005,
     "worst": "bench_peak.Peak.track_gbps op=copy_2GiB"
    },
    "MiB|all": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 2159,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_peak_mib B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=dv_only"
    },
    "MiB|backend_choice": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 330,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_peak_mib B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=sdpa"
    },
    "TFLOP/s|gpu_bound": {
     "max_abs_diff_pct": 9.9391,
     "median_abs_diff_pct": 0.0831,
     "pairs": 2212,
     "threshold": 0.15,
     "worst": "bench_gradgrad.Long.track_tflops B=1 H=8 T=16384 D=128 dtype=bfloat16 mask=causal bwd_mode=fused"
    },
    "TFLOP/s|host_bound": {
     "max_abs_diff_pct": 150.1341,
     "median_abs_diff_pct": 0.3452,
     "pairs": 2722,
     "threshold": 2.255,
     "worst": "bench_backward.Seed.track_tflops B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=sdpa"
    },
    "graph ms|backend_choice": {
     "max_abs_diff_pct": 10.0079,
     "median_abs_diff_pct": 0.373,
     "pairs": 330,
     "threshold": 0.155,
     "worst": "bench_forward.Long.track_graph_ms B=1 H=8 T=32768 D=128 dtype=bfloat16 mask=causal bwd_mode=sdpa"
    },
    "graph ms|gpu_bound": {
     "max_abs_diff_pct": 5.7538,
     "median_abs_diff_pct": 0.1215,
     "pairs": 2093,
     "threshold": 0.09,
     "worst": "bench_forward.Long.track_graph_ms B=1 H=8 T=8192 D=128 dtype=bfloat16 mask=causal bwd_mode=fused"
    },
    "host ms|all": {
     "max_abs_diff_pct": 224.7177,
     "median_abs_diff_pct": 21.7938,
     "pairs": 2489,
     "threshold": 3.375,
     "worst": "bench_backward.Grid.track_host_ms B=4 H=16 T=4096 D=64 dtype=bfloat16 mask=none bwd_mode=math"
    },
    "ms|gpu_bound": {
     "max_abs_diff_pct": 11.036,
     "median_abs_diff_pct": 0.0955,
     "pairs": 1139,
     "threshold": 0.17,
     "worst": "bench_gradgrad.Long.track_ms B=1 H=8 T=16384 D=128 dtype=bfloat16 mask=causal bwd_mode=fused"
    },
    "ms|host_bound": {
     "max_abs_diff_pct": 191.659,
     "median_abs_diff_pct": 0.5151,
     "pairs": 1383,
     "threshold": 2.875,
     "worst": "bench_forward.Seed.track_ms B=2 H=4 T=2048 D=128 dtype=float16 mask=none bwd_mode=sdpa"
    },
    "ratio|all": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 2159,
     "threshold": 0.005,
     "worst": "bench_backward.Grid.track_parity B=4 H=16 T=4096 D=128 dtype=bfloat16 mask=causal bwd_mode=dv_only"
    },
    "ratio|backend_choice": {
     "max_abs_diff_pct": 0.0,
     "median_abs_diff_pct": 0.0,
     "pairs": 330,
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
    ],
    "pairs": [
     [
      "results/h200-sxm-140gb/493bf30f-existing-py3.json",
      "tests/data/h200-rounds/h200-sxm-140gb-r3/493bf30f-existing-py3.json"
     ],
     [
      "results/h200-sxm-140gb/493bf30f-existing-py3.json",
      "tests/data/h200-rounds/h200-sxm-140gb-r4/493bf30f-existing-py3.json"
     ],
     [
      "results/h200-sxm-140gb-aa/493bf30f-existing-py3.json",
      "tests/data/h200-rounds/h200-sxm-140gb-r3/493bf30f-existing-py3.json"
     ],
     [
      "results/h200-sxm-140gb-aa/493bf30f-existing-py3.json",
      "tests/data/h200-rounds/h200-sxm-140gb-r4/493bf30f-existing-py3.json"
     ],
     [
      "tests/data/h200-rounds/h200-sxm-140gb-r3/493bf30f-existing-py3.json",
      "tests/data/h200-rounds/h200-sxm-140gb-r4/493bf30f-existing-py3.json"
     ],
     [
      "results/h200-sxm-140gb/493bf30f-existing-py3.json",
      "results/h200-sxm-140gb/29fdc41f-existing-py3.json"
     ],
     [
      "results/h200-sxm-140gb-aa/493bf30f-existing-py3.json",
      "results/h200-sxm-140gb/29fdc41f-existing-py3.json"
     ],
     [
      "tests/data/h200-rounds/h200-sxm-140gb-r3/493bf30f-existing-py3.json",
      "results/h200-sxm-140gb/29fdc41f-existing-py3.json"
     ],
     [
      "tests/data/h200-rounds/h200-sxm-140gb-r4/493bf30f-existing-py3.json",
      "results/h200-sxm-140gb/29fdc41f-existing-py3.json"
     ]
    ]
   }
  }
 },
 "host_bound_below_ms": 3.0
}
"""
)
