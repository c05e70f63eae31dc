"""Every model's CUDA paths: training steps and 640x480 fusion in fp32 / bf16, NCHW / channels_last.

    python -m benchmarks.gpu_models [--iters 20]            # on a CUDA machine, a few minutes
    python -m benchmarks.gpu_models --device cpu --smoke    # checks the script in seconds

Per model (CrossFuse at full size; the others at their official sizes) and variant: the median
ms of a training step (batch 8 of 64x64, the model's loss, forward + backward + Adam through the
trainer's ``optimise``; its loss must be finite), the median ms of one 640x480 fusion, and the
largest absolute difference of that fusion from the CPU's fp32 NCHW output (the same weights).
Imports neither zarr nor dask, so it runs where only torch is installed. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch

from crossfuse import models
from crossfuse.fusion.config import defaults
from crossfuse.fusion.steps import optimise
from crossfuse.models.base import FuseOptions

VARIANTS = {"fp32_nchw": (False, False), "fp32_channels_last": (False, True), "bf16_nchw": (True, False),
            "bf16_channels_last": (True, True)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device: torch.device, iters: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return round(1e3 * statistics.median(times), 2)


def check_model(name: str, device: torch.device, iters: int, size: tuple[int, int]) -> dict:
    model = models.get(name)
    cfg = defaults(name, batch_size=8)
    torch.manual_seed(0)
    cpu_net = model.build(cfg.network).eval()
    rng = np.random.default_rng(0)
    vis_y, ir = (rng.uniform(0, 1, size).astype(np.float32) for _ in range(2))
    reference = model.fuse_y(cpu_net, vis_y=vis_y, ir=ir, device=torch.device("cpu"),
                             options=FuseOptions(channels_last=False))
    rows = {}
    for variant, (bf16, channels_last) in VARIANTS.items():
        net = model.build(cfg.network)
        net.load_state_dict(cpu_net.state_dict())
        layout = torch.channels_last if channels_last else torch.contiguous_format
        net = net.to(device).to(memory_format=layout)
        parts = model.parts(net)
        opt = torch.optim.Adam([p for part in parts.values() for p in part.parameters()], lr=cfg.lr)
        g = torch.Generator().manual_seed(1)
        vis = torch.rand(8, 1, 64, 64, generator=g).to(device).contiguous(memory_format=layout)
        irb = torch.rand(8, 1, 64, 64, generator=g).to(device).contiguous(memory_format=layout)
        losses = []

        def step() -> None:
            net.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                terms = model.step_losses(parts, vis=vis, ir=irb, phase=model.phases, beta=0.1, cfg=cfg,
                                          generator=torch.Generator().manual_seed(0))
            losses.append(optimise(terms, parts, opt, clip_norm=cfg.clip_norm).loss)

        step_ms = _median_ms(step, device, iters)
        net.eval()
        net.load_state_dict(cpu_net.state_dict())
        options = FuseOptions(bf16=bf16, channels_last=channels_last)
        fused = {}

        def fuse() -> None:
            fused["out"] = model.fuse_y(net, vis_y=vis_y, ir=ir, device=device, options=options)

        fuse_ms = _median_ms(fuse, device, max(1, iters // 4))
        rows[variant] = {"train_step_ms": step_ms, "losses_finite": all(v is not None and math.isfinite(v)
                                                                         for v in losses),
                         "fuse_ms": fuse_ms,
                         "fuse_max_abs_diff_vs_cpu_fp32": float(np.abs(fused["out"] - reference).max())}
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="one iteration on a small image")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run on a GPU machine, or pass --device cpu --smoke.")
    size, iters = ((48, 64), 1) if args.smoke else ((480, 640), args.iters)
    started = time.perf_counter()
    out = {"benchmark": "gpu_models", "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else "cpu", "torch": torch.__version__, "fuse_size": list(size),
           "models": {name: check_model(name, device, iters, size) for name in models.names()}}
    out["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
