"""Infrared, visible and fused images are arrays of one shape, so a swap would run and give wrong
numbers: every function taking two or three of them takes them by keyword only (issue 21)."""

import inspect

import numpy as np
import pytest
import torch

from crossfuse.fusion import evaluate, inference, losses, steps
from crossfuse.fusion.metrics import cddfuse, tang, vifb
from crossfuse.fusion.network import CrossFuse, NetworkConfig

METRICS = {**{getattr(cddfuse, n.lower()): ("ir", "vis", "fused")
               for n in ("MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE")},
           **{f: ("ir", "vis", "fused") for f in vifb.FUNCTIONS_BY_NAME.values()}}
KEYWORD_ONLY = {**METRICS,
    cddfuse.all_metrics: ("ir", "vis", "fused"),
    vifb.all_metrics: ("ir", "vis", "fused"),
    tang.all_metrics: ("ir", "vis", "fused"),
    tang.all_metrics_2022: ("ir", "vis", "fused"),
    evaluate.score: ("ir", "vis", "fused"),
    inference.fuse_y: ("vis_y", "ir"),
    inference.fuse_images: ("vis_rgb", "ir"),
    steps.step_losses: ("vis", "ir"),
    losses.intensity_gradient_loss: ("vis", "ir", "fused"),
    losses.fusion_loss: ("vis", "ir", "fused"),
    losses.reconstruction_loss: ("vis", "vis_hat", "ir", "ir_hat"),
    losses.decomposition_loss: ("base_v", "base_i", "detail_v", "detail_i"),
}


@pytest.mark.parametrize("func", list(KEYWORD_ONLY), ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_images_are_keyword_only(func):
    params = inspect.signature(func).parameters
    for name in KEYWORD_ONLY[func]:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_a_positional_call_fails_and_the_keyword_call_scores():
    rng = np.random.default_rng(0)
    a, b, f = (rng.integers(0, 256, (24, 24)).astype(np.uint8) for _ in range(3))
    with pytest.raises(TypeError):
        cddfuse.all_metrics(f, a, b)
    with pytest.raises(TypeError):
        vifb.all_metrics(b, a, f)
    with pytest.raises(TypeError):
        losses.intensity_gradient_loss(*(torch.rand(1, 1, 8, 8) for _ in range(3)))
    # By name the order does not matter, and the values are the protocol's (the swap now shows).
    assert cddfuse.all_metrics(ir=a, vis=b, fused=f) == cddfuse.all_metrics(fused=f, vis=b, ir=a)
    assert cddfuse.all_metrics(ir=a, vis=b, fused=f)["MI"] != cddfuse.all_metrics(ir=f, vis=b, fused=a)["MI"]


def test_the_network_keeps_the_official_positional_order():
    model = CrossFuse(NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)).eval()
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        positional, named = model(ir, vis), model(ir=ir, vis_y=vis)
        swapped = model(vis, ir)
    assert torch.equal(positional, named) and not torch.equal(positional, swapped)
