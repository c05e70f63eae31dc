"""Each loss on small tensors whose values can be worked out by hand."""

import math

import pytest
import torch

from crossfuse.fusion import losses
from crossfuse.fusion.losses import AGGRESSIVE_VIEWS, fusion_loss
from tests.helpers import SAMPLE_TARGET


def test_ssim_of_identical_images_is_one_and_loss_zero():
    x = torch.rand(2, 1, 20, 24)
    assert torch.allclose(losses.ssim_map(x, x), torch.ones_like(x), atol=1e-5)
    assert losses.ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.2, 0.7
    x, y = (torch.full((1, 1, 16, 16), v, dtype=torch.float64) for v in (a, b))
    expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    assert torch.allclose(losses.ssim_map(x, y), torch.full_like(x, expected), atol=1e-6)
    assert losses.ssim_loss(x, y).item() == pytest.approx((1 - expected) / 2, rel=1e-5)


def test_gaussian_kernel_is_normalised_and_symmetric():
    k = losses.gaussian_kernel1d(11, 1.5, like=torch.zeros(1))
    assert k.sum().item() == pytest.approx(1.0) and torch.allclose(k, k.flip(0))
    assert (k[5] / k[4]).item() == pytest.approx(math.exp(1 / (2 * 1.5 ** 2)), rel=1e-5)


def test_correlation_and_decomposition():
    a = torch.rand(3, 4, 8, 8)
    assert losses.correlation(a, a).item() == pytest.approx(1.0, abs=1e-5)
    assert losses.correlation(a, -2 * a + 1).item() == pytest.approx(-1.0, abs=1e-5)
    # detail features identical (cc 1), base features opposite (cc -1): 1 / (1.01 - 1) = 100
    assert losses.decomposition_loss(base_v=a, base_i=-a, detail_v=a, detail_i=a).item() == pytest.approx(100.0, rel=1e-3)


def test_spatial_gradient_of_a_ramp():
    ramp = torch.arange(6.0).repeat(5, 1)[None, None]  # value = column index
    g = losses.spatial_gradient(ramp)
    assert g.shape == (1, 1, 2, 5, 6)
    assert torch.allclose(g[0, 0, 0, :, 1:-1], torch.ones(5, 4))  # Sobel/8 of slope 1
    assert torch.allclose(g[0, 0, 0, :, 0], torch.full((5,), 0.5))  # replicate border
    assert torch.allclose(g[0, 0, 1], torch.zeros(5, 6))


def test_sobel_magnitude_of_a_ramp():
    ramp = torch.arange(6.0).repeat(5, 1)[None, None]
    s = losses.sobel_magnitude(ramp)
    assert torch.allclose(s[0, 0, 1:-1, 1:-1], torch.full((3, 4), 8.0))
    # first row, zero padding above: x part 2*1 + 1*1 = 6 ... plus |y| = |(1+2+1)*j ... | from the missing row
    j = 2.0
    assert s[0, 0, 0, 2].item() == pytest.approx(6.0 + abs(-(1 * (j - 1) + 2 * j + 1 * (j + 1))))


def test_blur_keeps_constants_and_smooths():
    x = torch.full((1, 1, 32, 32), 0.3)
    assert torch.allclose(losses.gaussian_blur(x, width=9, height=21, sigma=3.0), x, atol=1e-6)
    noise = torch.rand(1, 1, 32, 32)
    assert losses.gaussian_blur(noise, width=9, height=21, sigma=3.0).std() < noise.std() / 2


def test_beta_schedule_counts_from_phase_two():
    assert losses.beta_schedule(0, 120) == pytest.approx(0.1)
    assert losses.beta_schedule(60, 120) == pytest.approx(0.05)
    assert losses.beta_schedule(120, 120) == pytest.approx(0.0)
    values = [losses.beta_schedule(t, 120) for t in range(121)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # never rises again


def test_fusion_loss_terms():
    vis = torch.full((2, 1, 40, 40), 0.25)
    ir = torch.full((2, 1, 40, 40), 0.75)
    feats = {k: torch.rand(2, 4, 8, 8) for k in ("base_v", "base_i", "detail_v", "detail_i")}
    g = torch.Generator().manual_seed(0)
    out = losses.fusion_loss(vis=vis, ir=ir, fused=ir.clone(), features=feats, beta=0.1, generator=g)
    assert out["intensity"].item() == pytest.approx(0.0) and out["gradient"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["consistency"].item() == pytest.approx(0.0, abs=1e-10)
    out = losses.fusion_loss(vis=vis, ir=ir, fused=vis.clone(), features=feats, beta=0.1, generator=g)
    assert out["intensity"].item() == pytest.approx(0.5)
    # zero padding gives constant images a Sobel response on the border only: |S(I) - S(V)| = 0.5 S(1)
    border = 0.5 * losses.sobel_magnitude(torch.ones(1, 1, 40, 40)).mean()
    assert border.item() > 0 and out["gradient"].item() == pytest.approx(border.item(), rel=1e-5)
    expected = 0.5 + 10 * border + 2 * losses.decomposition_loss(**feats)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_reconstruction_loss_is_zero_for_perfect_reconstruction_and_uncorrelated_details():
    x = torch.rand(2, 1, 16, 16)
    y = torch.rand(2, 1, 16, 16)
    d = torch.randn(2, 4, 8, 8)
    feats = {"base_v": d, "base_i": d, "detail_v": torch.zeros_like(d), "detail_i": d}
    out = losses.reconstruction_loss(vis=x, vis_hat=x, ir=y, ir_hat=y, features=feats)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-5)
    out = losses.reconstruction_loss(vis=x, vis_hat=x + 0.1, ir=y, ir_hat=y, features=feats)
    assert out["rec_v"].item() == pytest.approx(5 * losses.ssim_loss(x, x + 0.1).item() + 0.01, rel=1e-4)


def test_crop_is_reproducible_and_checked():
    x = torch.rand(1, 1, 64, 64)
    a = losses.random_crop(x, 32, torch.Generator().manual_seed(3))
    b = losses.random_crop(x, 32, torch.Generator().manual_seed(3))
    assert a.shape == (1, 1, 32, 32) and torch.equal(a, b)
    with pytest.raises(ValueError, match="larger than"):
        losses.random_crop(x, 65, torch.Generator())


# ---- finite gradients on constant data (TNO has all-black infrared regions) ----

CONSTANTS = {"zero": 0.0, "one": 1.0, "constant": 0.37}


def _leaf(value, shape=(2, 1, 40, 40)):
    return torch.full(shape, value, requires_grad=True)


@pytest.mark.parametrize("name", CONSTANTS)
def test_every_loss_term_has_finite_gradients_on_constant_patches(name):
    value = CONSTANTS[name]
    g = torch.Generator().manual_seed(0)
    for phase in (1, 2):
        vis, ir, out = _leaf(value), _leaf(value), _leaf(value)
        # constant features as well: zero variance in every channel of base and detail
        feats = {k: torch.full((2, 4, 10, 10), value, requires_grad=True)
                 for k in ("base_v", "base_i", "detail_v", "detail_i")}
        if phase == 1:
            terms = losses.reconstruction_loss(vis=vis, vis_hat=out, ir=ir, ir_hat=_leaf(value), features=feats)
        else:
            terms = losses.fusion_loss(vis=vis, ir=ir, fused=out, features=feats, beta=0.1, generator=g)
        for term, loss in terms.items():
            inputs = [vis, ir, out, *feats.values()]
            grads = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
            for grad in grads:
                assert grad is None or torch.isfinite(grad).all(), (phase, term)


def test_correlation_of_a_constant_channel_is_zero_with_finite_gradient():
    a = torch.zeros(2, 3, 8, 8, requires_grad=True)
    b = torch.rand(2, 3, 8, 8, requires_grad=True)
    cc = losses.correlation(a, b)
    cc.backward()
    assert cc.item() == 0.0
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # the value is the release's formula wherever that is defined
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    xc = (x - x.mean((-1, -2), keepdim=True)).flatten(2)
    yc = (y - y.mean((-1, -2), keepdim=True)).flatten(2)
    release = ((xc * yc).sum(-1) / (torch.finfo(torch.float32).eps + xc.pow(2).sum(-1).sqrt()
                                    * yc.pow(2).sum(-1).sqrt())).clamp(-1, 1).mean()
    assert losses.correlation(x, y).item() == pytest.approx(release.item(), abs=1e-7)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_network_and_losses_give_finite_gradients_on_a_constant_batch(channels_last, value):
    """The whole training step on a batch holding constant patches (how the NaN was found:
    the attention's channel norms and the correlation's sqrt at zero variance)."""
    from crossfuse.fusion.config import TrainConfig
    from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse, NetworkConfig
    from crossfuse.fusion.steps import step_losses

    torch.manual_seed(0)
    model = CrossFuse(NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    parts = {attr: getattr(model, attr) for attr in CHECKPOINT_PARTS.values()}
    vis = torch.rand(4, 1, 64, 64)
    ir = torch.rand(4, 1, 64, 64)
    vis[1] = value  # one constant patch in each input, as a batch of real data has
    ir[1:3] = value
    vis, ir = (t.contiguous(memory_format=layout) for t in (vis, ir))
    cfg = TrainConfig(network=model.config)
    for phase in (1, 2):
        model.zero_grad()
        terms = step_losses(parts, vis=vis, ir=ir, phase=phase, beta=0.1, cfg=cfg, generator=torch.Generator().manual_seed(1))
        terms["loss"].backward()
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, (phase, bad[:5])


@pytest.mark.parametrize("kind", AGGRESSIVE_VIEWS)
def test_each_aggressive_view_changes_the_crop_and_keeps_its_shape(kind):
    from crossfuse.fusion.losses import aggressive_view

    weak = _real_patch_batch()[:, :, :32, :32]
    changes = []
    for seed in range(4):  # the strength is random: a small blur sigma barely changes a crop
        view = aggressive_view(weak, kind, generator=torch.Generator().manual_seed(seed))
        assert view.shape == weak.shape and torch.isfinite(view).all()
        changes.append(float((view - weak).abs().mean()))
    assert 1e-3 < max(changes) < 0.5


def test_consistency_off_drops_the_term_and_blur_is_the_default():
    vis, ir = _real_patch_batch(), _real_patch_batch().flip(0)
    fused = (vis + ir) / 2
    feats = {k: torch.randn(vis.shape[0], 4, 8, 8, generator=torch.Generator().manual_seed(i))
             for i, k in enumerate(("base_v", "base_i", "detail_v", "detail_i"))}
    on = fusion_loss(vis=vis, ir=ir, fused=fused, features=feats, beta=0.1, generator=torch.Generator().manual_seed(0))
    off = fusion_loss(vis=vis, ir=ir, fused=fused, features=feats, beta=0.1, generator=torch.Generator().manual_seed(0),
                      consistency=False)
    assert "consistency" not in off and on["consistency"] > 0
    assert torch.allclose(on["loss"] - 0.1 * on["consistency"], off["loss"])
    with pytest.raises(ValueError, match="unknown aggressive view"):
        fusion_loss(vis=vis, ir=ir, fused=fused, features=feats, beta=0.1, generator=torch.Generator(), aggressive="rotate")


def _real_patch_batch() -> torch.Tensor:
    """Four 64x64 visible-gray crops of the bundled sample, (4, 1, 64, 64) in [0, 1]."""
    import numpy as np
    from PIL import Image

    from crossfuse import manifest

    ds = manifest.load(str(SAMPLE_TARGET))
    crops = []
    for pair in ds.pairs[:2]:
        img = np.asarray(Image.open(ds.url(pair.vis)).convert("L"), dtype=np.float32) / 255
        crops += [img[40:104, 40:104], img[100:164, 120:184]]
    return torch.from_numpy(np.stack(crops)[:, None])
