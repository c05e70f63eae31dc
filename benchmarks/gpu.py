"""The network on a GPU: training steps and inference in fp32, bf16, channels_last and torch.compile.

    python -m benchmarks.gpu [--iters 20] [--no-compile]      # on a CUDA machine, under 5 minutes
    python -m benchmarks.gpu --device cpu --smoke --no-compile  # checks the script in seconds

Full-size model, random weights and inputs. For each variant: one 640x480 fusion (ms, and the
largest absolute difference from the fp32 NCHW output) and one training step on a batch of 8
64x64 patches, phase I and phase II (forward, backward, clip and Adam, ms and patches/s), plus the
peak memory. "fp32" runs PyTorch's defaults, which on CUDA let cuDNN use TF32 for convolutions
(``torch.backends.cudnn.allow_tf32``, recorded). Medians over ``--iters`` after warm-up; prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

from benchmarks.common import machine, sync
from crossfuse.fusion.config import TrainConfig
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse, NetworkConfig
from crossfuse.fusion.steps import step_losses
from crossfuse.fusion.steps import make_optimizer

VARIANTS = {  # name: (bf16, channels_last, compile)
    "fp32_nchw": (False, False, False),
    "fp32_channels_last": (False, True, False),
    "bf16_nchw": (True, False, False),
    "bf16_channels_last": (True, True, False),
    "bf16_channels_last_compiled": (True, True, True),
}


def _median_ms(fn, device: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def run_variant(name: str, *, device: torch.device, network: NetworkConfig, size: tuple[int, int], batch: int,
                patch: int, iters: int, reference: torch.Tensor | None) -> tuple[dict, torch.Tensor]:
    bf16, channels_last, compiled = VARIANTS[name]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    cfg = TrainConfig(crop=patch // 2, network=network)
    model = CrossFuse(cfg.network).to(device).to(memory_format=layout)
    warmup = 3 if compiled else 2
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    ir, vis = (torch.rand(1, 1, *size, generator=gen).to(device).contiguous(memory_format=layout) for _ in range(2))
    forward = torch.compile(model) if compiled else model
    model.eval()

    @torch.no_grad()
    def infer() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return forward(ir, vis)

    row: dict = {"fuse_ms": round(_median_ms(infer, device, iters, warmup), 2)}
    out = infer().float().contiguous()
    if reference is not None:
        row["fuse_max_abs_diff"] = float((out - reference).abs().max())
    model.train()
    parts: dict[str, nn.Module] = {attr: getattr(model, attr) for attr in CHECKPOINT_PARTS.values()}
    opt, _ = make_optimizer(parts, cfg)
    stepped = {k: torch.compile(m) for k, m in parts.items()} if compiled else parts
    pv, pi = (torch.rand(batch, 1, patch, patch, generator=gen).to(device).contiguous(memory_format=layout)
              for _ in range(2))
    for phase in (1, 2):
        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                terms = step_losses(stepped, vis=pv, ir=pi, phase=phase, beta=0.1, cfg=cfg,
                                     generator=torch.Generator().manual_seed(0))
            opt.zero_grad(set_to_none=True)
            terms["loss"].float().backward()
            for part in parts.values():
                nn.utils.clip_grad_norm_(part.parameters(), max_norm=cfg.clip_norm)
            opt.step()

        ms = _median_ms(step, device, iters, warmup)
        row[f"train_phase{phase}_ms"] = round(ms, 2)
        row[f"train_phase{phase}_patches_per_s"] = round(batch / ms * 1e3, 1)
    if device.type == "cuda":
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return row, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--smoke", action="store_true", help="a narrow network on tiny inputs, 1 iteration")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run on a GPU machine, or pass --device cpu --smoke to check the script.")
    size, batch, patch, iters, network = (480, 640), 8, 64, args.iters, NetworkConfig()
    if args.smoke:
        size, batch, patch, iters = (32, 48), 2, 32, 1
        network = NetworkConfig(dim=16, heads=4, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)
    results, reference = {}, None
    started = time.perf_counter()
    for name, (_, _, compiled) in VARIANTS.items():
        if compiled and args.no_compile:
            continue
        row, out = run_variant(name, device=device, network=network, size=size, batch=batch, patch=patch, iters=iters,
                               reference=reference)
        reference = out if reference is None else reference
        results[name] = row
    info = {"command": "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "machine": machine(), "torch": torch.__version__, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "fuse_size": f"{size[1]}x{size[0]}", "batch": batch, "patch": patch, "iters": iters,
            "wall_s": round(time.perf_counter() - started, 1), "variants": results}
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    main()
