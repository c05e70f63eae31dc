"""CrossFuse (the paper's network: CDDFuse's architecture) behind the model interface.

The network (:mod:`crossfuse.fusion.network`) and its losses (:mod:`crossfuse.fusion.losses`,
:func:`crossfuse.fusion.steps.step_losses`) are the ones crossfuse has always trained, unchanged
to the last number; this module only answers the interface with them. Two phases: I trains
encoder and decoder to reconstruct both images, II adds the fusion layers with the
weak/aggressive consistency term under a cosine-decaying beta. Its checkpoint layout is the
release's four state dicts, so the release's scripts load ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from crossfuse.errors import CheckpointError
from crossfuse.fusion import losses, steps
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse
from crossfuse.models.base import Model, min_max_uint8


class CrossFuseModel(Model):
    name = "crossfuse"
    source = "CDDFuse (Zhao et al., CVPR 2023) as the CrossFuse release uses it"
    phases = 2

    def build(self, settings: Any) -> nn.Module:
        return CrossFuse(settings)

    def parts(self, net: nn.Module) -> dict[str, nn.Module]:
        return {attr: getattr(net, attr) for attr in CHECKPOINT_PARTS.values()}

    def phase(self, epoch: int, cfg: Any) -> tuple[int, float]:
        if epoch < cfg.phase1_epochs:
            return 1, 0.0
        return 2, losses.beta_schedule(epoch - cfg.phase1_epochs, cfg.epochs - cfg.phase1_epochs, cfg.beta_max)

    def step_losses(self, parts, *, vis, ir, phase, beta, cfg, generator):
        return steps.step_losses(parts, vis=vis, ir=ir, phase=phase, beta=beta, cfg=cfg, generator=generator)

    @torch.no_grad()
    def preview(self, net, *, vis, ir, phase):
        if phase != 1:
            return [net(ir, vis)], ["visible Y", "infrared", "fused"]
        both = torch.cat([vis, ir])
        base, detail, _ = net.encoder(both)
        rec, _ = net.decoder(both, base, detail)
        return [rec[:len(vis)], rec[len(vis):]], ["visible Y", "infrared", "rec. visible", "rec. infrared"]

    def forward_fused(self, net, *, vis_y, ir):
        return net(ir, vis_y)

    def to_uint8(self, raw: np.ndarray, *, round: bool = False) -> np.ndarray:
        return min_max_uint8(raw, round=round)

    def official_state(self, net: nn.Module) -> dict[str, Any]:
        return net.official_state()

    def load_official(self, net: nn.Module, state: dict[str, Any], *, where: str) -> None:
        try:
            net.load_official(state)
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()
            raise CheckpointError(f"{where} does not fit the network (its weights have other names or shapes: "
                                  f"{' '.join(first[:3])[:400]}). It was made with another network config.") from None


MODEL = CrossFuseModel()
