"""Train a model that is not CrossFuse on crossfuse corpora, through the public corpus API.

    python examples/train_other_model.py STORE [STORE ...] --steps N [--batch-size B] [--seed S] [--model NAME]

The model is a few-layer CNN that fuses visible Y and infrared into one image; it is trained for
N steps on the unsupervised intensity + gradient loss of IVIF (CDDFuse's, from crossfuse.fusion.losses)
and prints its loss each step. ``--model seafusion`` (or sdnet, densefuse, crossfuse) trains that
model of :mod:`crossfuse.models` instead, with its official loss, through the same loop.
Everything about the data comes from ``crossfuse.corpus``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from crossfuse import corpus
from crossfuse.fusion.losses import intensity_gradient_loss


class TinyFusionNet(nn.Module):
    """Y and IR (B, 1, H, W) in [0, 1] -> fused (B, 1, H, W) in (0, 1): three 3x3 conv layers."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(torch.cat([vis, ir], dim=1)))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", metavar="STORE", help="crossfuse corpus store(s)")
    parser.add_argument("--steps", type=int, default=20, help="training steps [20]")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per batch [16]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling [0]")
    parser.add_argument("--model", default=None, help="a crossfuse model instead of the tiny CNN (seafusion, ...)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    batches = corpus.PatchLoader(args.stores, batch_size=args.batch_size, seed=args.seed, visible="y")
    for record in batches.records:
        print(f"corpus: {record.kind}, {record.counts.patches} patches of {record.params.patch}px, "
              f"gamma {', '.join(f'{g:.3f}' for g in record.gamma)}")
    if len(batches) == 0:
        parser.error(f"the corpora give no batch of {args.batch_size} patches; lower --batch-size")
    if args.model:
        from crossfuse import models

        chosen = models.get(args.model)
        settings = chosen.settings()
        model = chosen.build(settings)
        cfg = type("Settings", (), {"network": settings})  # the model's loss reads its settings from here
        phase = chosen.phases  # CrossFuse: its fusion phase
    else:
        model = TinyFusionNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step, epoch, loss = 0, 0, float("nan")
    while step < args.steps:
        batches.set_epoch(epoch)
        for batch in batches:
            if args.model:
                total = chosen.step_losses(chosen.parts(model), vis=batch["vis"], ir=batch["ir"], phase=phase,
                                           beta=0.0, cfg=cfg, generator=torch.Generator().manual_seed(step))["loss"]
            else:
                fused = model(batch["vis"], batch["ir"])
                intensity, gradient = intensity_gradient_loss(vis=batch["vis"], ir=batch["ir"], fused=fused)
                total = intensity + 10 * gradient
            opt.zero_grad()
            total.backward()
            opt.step()
            step, loss = step + 1, total.item()
            print(f"step {step} epoch {epoch} loss {loss:.4f}")
            if step == args.steps:
                break
        epoch += 1
    return loss


if __name__ == "__main__":
    main()
