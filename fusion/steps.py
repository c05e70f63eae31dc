"""One training step of CrossFuse: the forward pass and its losses (:func:`step_losses`, public,
for benchmarks and other drivers), then backward, the finite checks and the optimiser step
(:func:`optimise`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from crossfuse.fusion import losses
from crossfuse.fusion.config import TrainConfig
from crossfuse.fusion.runtime import Dist, all_finite


def step_losses(parts: dict[str, nn.Module], *, vis: torch.Tensor, ir: torch.Tensor, phase: int, beta: float,
                cfg: TrainConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Forward one batch of visible Y and infrared, (B, 1, P, P) in [0, 1], through the
    sub-networks ``parts`` (encoder, decoder, base_fuse, detail_fuse) and return the phase's loss
    terms (the total under "loss"). Visible and infrared go through the encoder (and in phase I
    the decoder) together, one call each, which also suits DDP (one forward per module per step)."""
    n = vis.shape[0]
    base, detail, _ = parts["encoder"](torch.cat([vis, ir]))
    feats = {"base_v": base[:n], "base_i": base[n:], "detail_v": detail[:n], "detail_i": detail[n:]}
    if phase == 1:
        rec, _ = parts["decoder"](torch.cat([vis, ir]), base, detail)
        return losses.reconstruction_loss(vis=vis, vis_hat=rec[:n], ir=ir, ir_hat=rec[n:], features=feats)
    fused_base = parts["base_fuse"](feats["base_v"] + feats["base_i"])
    fused_detail = parts["detail_fuse"](feats["detail_v"] + feats["detail_i"])
    fused, _ = parts["decoder"](vis, fused_base, fused_detail)
    return losses.fusion_loss(vis=vis, ir=ir, fused=fused.float(), features=feats, beta=beta, generator=generator, crop=cfg.crop,
                              blur=(cfg.blur_width, cfg.blur_height), sigma_range=(cfg.sigma_min, cfg.sigma_max),
                              consistency=cfg.consistency, aggressive=cfg.aggressive)


def make_optimizer(parts: dict[str, nn.Module], cfg: TrainConfig):
    """One Adam over a parameter group per sub-network (numerically the release's four Adams),
    and its StepLR scheduler. Here, not in the trainer, so that drivers without corpora (the GPU
    benchmarks, on machines without zarr) build the same optimiser."""
    groups = [{"params": list(m.parameters()), "name": name} for name, m in parts.items()]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


def _non_finite(values: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, v in values.items() if not bool(torch.isfinite(v.detach()).all())]


@dataclass(frozen=True, kw_only=True)
class StepOutcome:
    """A step's result: ``loss`` (float) when the weights were updated, else ``problem`` says why
    the step was skipped (a non-finite loss, or finite loss with non-finite gradients)."""

    loss: float | None = None
    problem: str | None = None


def optimise(terms: dict[str, torch.Tensor], parts: dict[str, nn.Module], opt: torch.optim.Optimizer, *,
             clip_norm: float, dist_info: Dist = Dist()) -> StepOutcome:
    """Backpropagate ``terms["loss"]``, clip each sub-network's gradient norm to ``clip_norm`` (0: no clipping)
    and step ``opt``, unless the loss or any gradient is not finite on any rank: then the weights
    stay as they are and the outcome names the problem. The gradient norms come from the
    clipping itself, so the check costs nothing extra."""
    loss = terms["loss"].float()
    opt.zero_grad(set_to_none=True)
    if not all_finite(loss, dist_info):
        return StepOutcome(problem=f"non-finite loss (terms {', '.join(_non_finite(terms))})")
    loss.backward()
    norms = {name: nn.utils.clip_grad_norm_(part.parameters(), max_norm=clip_norm or math.inf,
                                            norm_type=2)
             for name, part in parts.items()}
    if not all_finite(torch.stack(list(norms.values())), dist_info):
        return StepOutcome(problem=f"finite loss {loss.item():.4g} but non-finite gradients "
                                   f"in {', '.join(_non_finite(norms)) or 'another rank'}")
    opt.step()
    return StepOutcome(loss=loss.item())
