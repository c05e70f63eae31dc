"""The benchmarks' smoke modes (tiny sizes, seconds): the scripts run, and what they check holds.
The benchmarks themselves never run here; their results live in BENCHMARKS.md."""

import pytest

from benchmarks import gpu, network_cpu

pytestmark = pytest.mark.slow


def test_network_benchmark_default_path_keeps_the_numbers():
    out = network_cpu.main(["--smoke"])
    assert out["fuse_default_fp32_max_abs_diff"] < 1e-5
    for phase in (1, 2):
        assert out[f"train_phase{phase}_channels_last_fp32_max_grad_diff"] < 1e-5
        assert out[f"train_phase{phase}_gflop"] > 0
    assert out["matmul_peak_fp32_gflops"] > 0 and 0 < out["fuse_default_fp32_fraction_of_peak"]


def test_gpu_script_runs_on_the_cpu():
    out = gpu.main(["--device", "cpu", "--smoke", "--no-compile"])
    variants = out["variants"]
    assert set(variants) == {"fp32_nchw", "fp32_channels_last", "bf16_nchw", "bf16_channels_last"}
    assert variants["fp32_channels_last"]["fuse_max_abs_diff"] < 1e-5
    assert variants["bf16_channels_last"]["fuse_max_abs_diff"] < 0.05
    assert all(v["train_phase2_patches_per_s"] > 0 for v in variants.values())


def test_metrics_baseline_agrees_with_ours():
    pytest.importorskip("scipy")  # a bench extra, not a test dependency
    from benchmarks import metrics_speed

    out = metrics_speed.main(["--smoke"])  # raises if the scipy baseline and ours disagree
    assert out["records"][0]["shape"] == [96, 128] and out["records"][0]["speedup_vs_scipy"] > 0


def test_vifb_baseline_agrees_with_ours():
    pytest.importorskip("scipy")  # a bench extra, not a test dependency
    from benchmarks import vifb_speed

    out = vifb_speed.main(["--smoke"])  # exits if the MATLAB port and ours disagree
    assert out["shape"] == [96, 128, 3] and len(out["values"]) == 13 and out["baseline_s"] > 0


def test_selection_scale_smoke_streamed_equals_faiss():
    from benchmarks import selection_scale

    out = selection_scale.main(["--smoke"])  # exits if the two selections differ
    row = out["rows"][0]
    assert row["streamed_equals_faiss"] and row["n"] == 100_000 and 0.9 <= row["ivf"]["recall"] <= 1.0


def test_tang_baseline_agrees_with_ours():
    pytest.importorskip("scipy")  # a bench extra, not a test dependency
    from benchmarks import tang_speed

    out = tang_speed.main(["--smoke"])  # exits if the MATLAB port and ours disagree
    assert out["shape"] == [96, 128] and len(out["values"]) == 11 and out["baseline_s"] > 0
