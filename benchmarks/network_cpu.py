"""The network on the CPU: our default paths against plain eager fp32 NCHW of the same modules.

    python -m benchmarks.network_cpu [--repeats 3] [--glibc-default] [--smoke]

Full-size model. Fusion of one 640x480 pair (``crossfuse fuse``'s default: channels_last, with the
fused layer norm and the GEMM channel attention that layout takes; and that plus bf16 autocast)
and one training step on a batch of 8 64x64 patches, phase I and II (fp32 and bf16, NCHW and
channels_last), each against the same modules run NCHW in fp32. Reports the model's parameters
and GFLOPs (``torch.utils.flop_counter``, the NCHW formulas: useful work, not the padding the
GEMM attention adds), the machine's measured matmul peak (a 4096^3 GEMM) and the fraction of it
reached, and the largest absolute difference of each path from eager fp32. Prints one JSON line.
Fusion is timed first, in a process that has not trained (training grows glibc's heap, which
would hide the allocator effect ``--glibc-default`` shows). ``--smoke``: a narrow network on tiny
inputs, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, median_seconds, sync
from crossfuse.fusion.config import TrainConfig
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse, NetworkConfig
from crossfuse.fusion.runtime import keep_freed_memory
from crossfuse.fusion.steps import step_losses

CL = torch.channels_last
NCHW = torch.contiguous_format


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up run."""
    fn()
    return median_seconds(fn, repeats)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    """Measured GEMM throughput, n x n x n, in GFLOP/s."""
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)

    def mm() -> None:
        a @ b
        sync(device)

    return 2 * n ** 3 / _timed(mm, repeats) / 1e9


def count_gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def fusion(model: CrossFuse, ir: torch.Tensor, vis: torch.Tensor, *, layout: torch.memory_format,
           bf16: bool) -> torch.Tensor:
    """``model``'s fused output on this layout and precision, as fp32 NCHW."""
    model.to(memory_format=layout)
    ir, vis = (t.contiguous(memory_format=layout) for t in (ir, vis))
    with torch.no_grad(), torch.autocast(ir.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(ir, vis)
    sync(ir.device)
    return out.float().contiguous()


def train_step(model: CrossFuse, vis: torch.Tensor, ir: torch.Tensor, *, phase: int, layout: torch.memory_format,
               bf16: bool, cfg: TrainConfig) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward and backward pass (no optimiser update, so repeats see the same weights);
    returns the loss and the gradients."""
    model.to(memory_format=layout)
    vis, ir = (t.contiguous(memory_format=layout) for t in (vis, ir))
    parts = {attr: getattr(model, attr) for attr in CHECKPOINT_PARTS.values()}
    model.zero_grad(set_to_none=True)
    with torch.autocast(vis.device.type, dtype=torch.bfloat16, enabled=bf16):
        terms = step_losses(parts, vis=vis, ir=ir, phase=phase, beta=0.1, cfg=cfg, generator=torch.Generator().manual_seed(0))
    loss = terms["loss"].float()
    loss.backward()
    sync(vis.device)
    return float(loss.detach()), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--glibc-default", action="store_true",
                    help="leave glibc's allocator as it is (the commands call keep_freed_memory())")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and one repeat: checks the script in seconds")
    args = ap.parse_args(argv)
    if not args.glibc_default:
        keep_freed_memory()
    device = torch.device(args.device)
    height, width, batch, patch, repeats, peak_n = (480, 640, 8, 64, args.repeats, 4096)
    network = NetworkConfig()
    if args.smoke:
        height, width, batch, patch, repeats, peak_n = (32, 48, 2, 32, 1, 256)
        network = NetworkConfig(dim=16, heads=4, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)
    torch.manual_seed(0)
    cfg = TrainConfig(crop=patch // 2, network=network)
    model = CrossFuse(cfg.network).to(device)
    out: dict = {"params": sum(p.numel() for p in model.parameters())}
    big_ir, big_vis = torch.rand(1, 1, height, width, device=device), torch.rand(1, 1, height, width, device=device)
    out["fuse_size"] = f"{width}x{height}"
    model.eval()
    out["fuse_gflop"] = round(count_gflops(lambda: fusion(model, big_ir, big_vis, layout=NCHW, bf16=False)), 1)
    paths = {"eager_nchw_fp32": (NCHW, False), "default_fp32": (CL, False), "default_bf16": (CL, True)}
    reference = fusion(model, big_ir, big_vis, layout=NCHW, bf16=False)
    for name, (layout, bf16) in paths.items():
        seconds = _timed(lambda: fusion(model, big_ir, big_vis, layout=layout, bf16=bf16), repeats)
        out[f"fuse_{name}_s"] = round(seconds, 3)
        out[f"fuse_{name}_gflops"] = round(out["fuse_gflop"] / seconds, 1)
        out[f"fuse_{name}_max_abs_diff"] = float((fusion(model, big_ir, big_vis, layout=layout, bf16=bf16)
                                                  - reference).abs().max())
    for name in ("default_fp32", "default_bf16"):
        out[f"fuse_{name}_speedup"] = round(out["fuse_eager_nchw_fp32_s"] / out[f"fuse_{name}_s"], 2)

    model.train()
    vis, ir = torch.rand(batch, 1, patch, patch, device=device), torch.rand(batch, 1, patch, patch, device=device)
    steps = {"eager_nchw_fp32": (NCHW, False), "channels_last_fp32": (CL, False), "nchw_bf16": (NCHW, True),
             "channels_last_bf16": (CL, True)}
    for phase in (1, 2):
        key = f"train_phase{phase}"
        out[f"{key}_gflop"] = round(count_gflops(
            lambda: train_step(model, vis, ir, phase=phase, layout=NCHW, bf16=False, cfg=cfg)), 1)
        ref_loss, ref_grads = train_step(model, vis, ir, phase=phase, layout=NCHW, bf16=False, cfg=cfg)
        for name, (layout, bf16) in steps.items():
            seconds = _timed(lambda: train_step(model, vis, ir, phase=phase, layout=layout, bf16=bf16, cfg=cfg),
                             repeats)
            loss, grads = train_step(model, vis, ir, phase=phase, layout=layout, bf16=bf16, cfg=cfg)
            out[f"{key}_{name}_s"] = round(seconds, 3)
            out[f"{key}_{name}_loss_diff"] = abs(loss - ref_loss)
            out[f"{key}_{name}_max_grad_diff"] = max(float((grads[n] - g).abs().max()) for n, g in ref_grads.items())
        for name in ("channels_last_fp32", "nchw_bf16", "channels_last_bf16"):
            out[f"{key}_{name}_speedup"] = round(out[f"{key}_eager_nchw_fp32_s"] / out[f"{key}_{name}_s"], 2)

    out["matmul_peak_fp32_gflops"] = round(matmul_peak_gflops(device, torch.float32, peak_n), 1)
    out["matmul_peak_bf16_gflops"] = round(matmul_peak_gflops(device, torch.bfloat16, peak_n), 1)
    for name in paths:
        peak = out["matmul_peak_bf16_gflops" if "bf16" in name else "matmul_peak_fp32_gflops"]
        out[f"fuse_{name}_fraction_of_peak"] = round(out[f"fuse_{name}_gflops"] / peak, 3)
    result = {"command": "python -m benchmarks.network_cpu " + " ".join(argv if argv is not None else sys.argv[1:]),
              "device": str(device), "machine": machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "repeats": repeats,
              "allocator": "glibc default" if args.glibc_default else "keep_freed_memory", **out}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
