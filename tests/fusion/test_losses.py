"""Each loss on small tensors whose values can be worked out by hand."""

import math

import pytest
import torch

from crossfuse.fusion import losses


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
    assert losses.decomposition_loss(a, -a, a, a).item() == pytest.approx(100.0, rel=1e-3)


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
    out = losses.fusion_loss(vis, ir, ir.clone(), feats, beta=0.1, generator=g)
    assert out["intensity"].item() == pytest.approx(0.0) and out["gradient"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["consistency"].item() == pytest.approx(0.0, abs=1e-10)
    out = losses.fusion_loss(vis, ir, vis.clone(), feats, beta=0.1, generator=g)
    assert out["intensity"].item() == pytest.approx(0.5)
    # zero padding gives constant images a Sobel response on the border only: |S(I) - S(V)| = 0.5 S(1)
    border = 0.5 * losses.sobel_magnitude(torch.ones(1, 1, 40, 40)).mean()
    assert border.item() > 0 and out["gradient"].item() == pytest.approx(border.item(), rel=1e-5)
    expected = 0.5 + 10 * border + 2 * losses.decomposition_loss(feats["base_v"], feats["base_i"], feats["detail_v"],
                                                                  feats["detail_i"])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_reconstruction_loss_is_zero_for_perfect_reconstruction_and_uncorrelated_details():
    x = torch.rand(2, 1, 16, 16)
    y = torch.rand(2, 1, 16, 16)
    d = torch.randn(2, 4, 8, 8)
    feats = {"base_v": d, "base_i": d, "detail_v": torch.zeros_like(d), "detail_i": d}
    out = losses.reconstruction_loss(x, x, y, y, feats)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-5)
    out = losses.reconstruction_loss(x, x + 0.1, y, y, feats)
    assert out["rec_v"].item() == pytest.approx(5 * losses.ssim_loss(x, x + 0.1).item() + 0.01, rel=1e-4)


def test_crop_is_reproducible_and_checked():
    x = torch.rand(1, 1, 64, 64)
    a = losses.random_crop(x, 32, torch.Generator().manual_seed(3))
    b = losses.random_crop(x, 32, torch.Generator().manual_seed(3))
    assert a.shape == (1, 1, 32, 32) and torch.equal(a, b)
    with pytest.raises(ValueError, match="larger than"):
        losses.random_crop(x, 65, torch.Generator())
