"""Time one training step (batch 8, 64x64, full-size model) and one 640x480 fusion, fp32 and bf16.

    python -m benchmarks.network_cpu [--repeats 5] [--device cpu]

Prints one JSON line: median seconds of each (after one warm-up), with the machine's details.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from benchmarks.common import median_seconds
from crossfuse.fusion.config import TrainConfig
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse
from crossfuse.fusion.runtime import keep_freed_memory
from crossfuse.fusion.trainer import _step_losses, make_optimizer


def _median(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up run."""
    fn()
    return median_seconds(fn, repeats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--glibc-default", action="store_true",
                    help="leave glibc's allocator as it is (the commands call keep_freed_memory())")
    args = ap.parse_args()
    if not args.glibc_default:
        keep_freed_memory()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = TrainConfig()
    model = CrossFuse(cfg.network).to(device)
    parts = {attr: getattr(model, attr) for attr in CHECKPOINT_PARTS.values()}
    opt, _ = make_optimizer(parts, cfg)
    vis, ir = torch.rand(8, 1, 64, 64, device=device), torch.rand(8, 1, 64, 64, device=device)
    results = {}
    big_v, big_i = torch.rand(1, 1, 480, 640, device=device), torch.rand(1, 1, 480, 640, device=device)
    # Inference first, as `crossfuse fuse` runs it: in a process that has not trained (a backward
    # pass leaves glibc's heap grown, which hides the allocator effect).
    for bf16 in (False, True):
        @torch.no_grad()
        def infer() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                model.eval()(big_i, big_v)
            if device.type == "cuda":
                torch.cuda.synchronize()

        results[f"fuse_640x480_{'bf16' if bf16 else 'fp32'}_s"] = _median(infer, max(1, args.repeats // 2))
    # The default path of `crossfuse fuse`: channels_last, checked against the NCHW output.
    with torch.no_grad():
        reference = model.eval()(big_i, big_v)
        model.to(memory_format=torch.channels_last)
        cl_i, cl_v = (t.contiguous(memory_format=torch.channels_last) for t in (big_i, big_v))
        results["fuse_640x480_fp32_channels_last_s"] = _median(lambda: model(cl_i, cl_v), max(1, args.repeats // 2))
        results["channels_last_max_abs_diff"] = float((model(cl_i, cl_v) - reference).abs().max())
        model.to(memory_format=torch.contiguous_format)
    model.train()
    for bf16 in (False, True):
        def step(phase: int) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                terms = _step_losses(parts, vis, ir, phase=phase, beta=0.1, cfg=cfg,
                                     generator=torch.Generator().manual_seed(0))
            opt.zero_grad(set_to_none=True)
            terms["loss"].float().backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        name = "bf16" if bf16 else "fp32"
        results[f"train_step_phase1_{name}_s"] = _median(lambda: step(1), args.repeats)
        results[f"train_step_phase2_{name}_s"] = _median(lambda: step(2), args.repeats)
    print(json.dumps({"command": "python -m benchmarks.network_cpu " + " ".join(sys.argv[1:]), "device": str(device),
                      "allocator": "glibc default" if args.glibc_default else "keep_freed_memory",
                      "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "repeats": args.repeats,
                      "params": sum(p.numel() for p in model.parameters()),
                      **{k: (v if "diff" in k else round(v, 3)) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
