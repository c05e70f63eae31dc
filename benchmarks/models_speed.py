"""Every model's training step and fusion on this machine, side by side in one run.

    python -m benchmarks.models_speed [--steps 30] [--fuse-repeats 3] [--device cpu|cuda] [--smoke]

Per model (CrossFuse as the experiments train it, narrow: dim 16, 2 heads, one block each; the
others at their official sizes): the median seconds of a training step (batch 8 of 64x64 patches,
the model's own loss, forward + backward + Adam, channels_last, through the trainer's
``step_losses`` and ``optimise``) after 5 warm-up steps, and the median seconds to fuse one
640x480 pair (the network's forward on Y and infrared, channels_last). Then what a run of
recipes/alignment.toml's length costs per model (its epochs x steps_per_epoch steps). Prints one
JSON line; BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib

import numpy as np
import torch

from benchmarks.common import machine
from crossfuse import models
from crossfuse.corpus.reading import to_model_inputs
from crossfuse.fusion.config import defaults
from crossfuse.fusion.runtime import Dist, keep_freed_memory
from crossfuse.fusion.steps import optimise
from crossfuse.fusion.steps import make_optimizer
from crossfuse.models.base import FuseOptions

NARROW = {"dim": 16, "heads": 2, "encoder_blocks": 1, "decoder_blocks": 1, "detail_nodes": 1}


def _config(name: str, device: str):
    return defaults(name, batch_size=8, device=device, **({"network": NARROW} if name == "crossfuse" else {}))


def train_step(name: str, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    cfg = _config(name, device.type)
    model = models.get(name)
    layout = torch.channels_last
    net = model.build(cfg.network).to(device).to(memory_format=layout)
    parts = model.parts(net)
    opt, _ = make_optimizer(parts, cfg)
    g = torch.Generator().manual_seed(1)
    vis = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=g).to(device)
    ir = torch.randint(0, 256, (8, 1, 64, 64), dtype=torch.uint8, generator=g).to(device)
    phase = model.phases  # CrossFuse's phase II (the longer one)
    times = []
    for s in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        v, i = (x.contiguous(memory_format=layout) for x in to_model_inputs(vis, ir))
        terms = model.step_losses(parts, vis=v, ir=i, phase=phase, beta=0.1, cfg=cfg,
                                  generator=torch.Generator().manual_seed(s))
        optimise(terms, parts, opt, clip_norm=cfg.clip_norm, dist_info=Dist())
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    rest = sorted(times[5:])
    return rest[len(rest) // 2]


def fuse_time(name: str, repeats: int, device: torch.device, size: tuple[int, int]) -> float:
    torch.manual_seed(0)
    model = models.get(name)
    net = model.build(_config(name, device.type).network).to(device).eval()
    rng = np.random.default_rng(0)
    vis_y, ir = (rng.uniform(0, 1, size).astype(np.float32) for _ in range(2))
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        model.fuse_y(net, vis_y=vis_y, ir=ir, device=device, options=FuseOptions())
        times.append(time.perf_counter() - t)
    rest = sorted(times[1:])
    return rest[len(rest) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--fuse-repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="a few steps on a small image (the suite's check)")
    args = parser.parse_args()
    keep_freed_memory()
    steps, repeats, size = (7, 1, (48, 64)) if args.smoke else (args.steps, args.fuse_repeats, (480, 640))
    device = torch.device(args.device)
    with open("recipes/alignment.toml", "rb") as fh:
        recipe = tomllib.load(fh)["train"]
    run_steps = recipe["epochs"] * recipe["steps_per_epoch"]
    rows = {}
    for name in models.names():
        step = train_step(name, steps, device)
        rows[name] = {"parameters": sum(p.numel() for p in models.get(name).build(
                          _config(name, device.type).network).parameters()),
                      "train_step_s": round(step, 4), "fuse_s": round(fuse_time(name, repeats, device, size), 3),
                      "alignment_run_train_min": round(step * run_steps / 60, 1)}
    print(json.dumps({"benchmark": "models_speed", "machine": machine(), "device": str(device),
                      "alignment_run_steps": run_steps, "fuse_size": list(size), "models": rows}))


if __name__ == "__main__":
    main()
