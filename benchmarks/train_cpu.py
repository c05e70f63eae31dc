"""CPU training steps of the experiments' narrow network: what makes them faster on two cores.

    python -m benchmarks.train_cpu [--steps 40]

The network and batch of recipes/cpu.toml and recipes/alignment.toml (dim 16, 2 heads, one block
each, batch 8 of 64x64 patches), phase I and phase II steps as the trainer takes them
(``step_losses`` + ``optimise``), each timed as the median step after 5 warm-up steps, in one
process: eager NCHW, eager channels_last (the default), channels_last with ``torch.compile`` of
each sub-network (compile time reported apart), and one torch thread instead of two. Each path's
loss after the same steps is compared with eager NCHW's (the paths must compute the same thing).
Prints one JSON line; BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks.common import machine
from crossfuse.corpus.reading import to_model_inputs
from crossfuse.fusion.config import TrainConfig
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse, NetworkConfig
from crossfuse.fusion.runtime import Dist, keep_freed_memory
from crossfuse.fusion.steps import optimise, step_losses
from crossfuse.fusion.steps import make_optimizer

NARROW = NetworkConfig(dim=16, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)


def _steps(phase: int, steps: int, *, channels_last: bool, compiled: bool) -> tuple[float, float, float]:
    """(median seconds per step after 5 warm-up steps, the first step's seconds, the last loss)."""
    torch.manual_seed(0)
    cfg = TrainConfig(network=NARROW, channels_last=channels_last, batch_size=8)
    model = CrossFuse(cfg.network)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    parts = {a: getattr(model, a) for a in CHECKPOINT_PARTS.values()}
    run = {a: torch.compile(m) for a, m in parts.items()} if compiled else parts
    opt, _ = make_optimizer(parts, cfg)
    g = torch.Generator().manual_seed(1)
    vis = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=g)
    ir = torch.randint(0, 256, (8, 1, 64, 64), dtype=torch.uint8, generator=g)
    times, loss = [], float("nan")
    for s in range(steps):
        t = time.perf_counter()
        v, i = to_model_inputs(vis, ir)
        if channels_last:
            v, i = (x.contiguous(memory_format=torch.channels_last) for x in (v, i))
        terms = step_losses(run, vis=v, ir=i, phase=phase, beta=0.1, cfg=cfg, generator=torch.Generator().manual_seed(s))
        optimise(terms, parts, opt, clip_norm=0.5, dist_info=Dist())
        times.append(time.perf_counter() - t)
        loss = float(terms["loss"].detach())
    rest = sorted(times[5:])
    return rest[len(rest) // 2], times[0], loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    keep_freed_memory()
    out: dict = {"command": "python -m benchmarks.train_cpu", "machine": machine()}
    for phase in (1, 2):
        torch.set_num_threads(2)
        base = _steps(phase, args.steps, channels_last=False, compiled=False)
        rows = {"eager_nchw": base,
                "eager_channels_last": _steps(phase, args.steps, channels_last=True, compiled=False),
                "compiled_channels_last": _steps(phase, args.steps, channels_last=True, compiled=True)}
        torch.set_num_threads(1)
        rows["eager_channels_last_1_thread"] = _steps(phase, args.steps, channels_last=True, compiled=False)
        torch.set_num_threads(2)
        out[f"phase{phase}"] = {name: {"step_s": round(s, 4), "first_step_s": round(first, 2),
                                       "speed_vs_eager_nchw": round(base[0] / s, 2),
                                       "loss_diff_vs_eager_nchw": float(f"{abs(loss - base[2]):.2e}")}
                                for name, (s, first, loss) in rows.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
