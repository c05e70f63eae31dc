"""The blocked direct filtering behind VIF and SSIM (fusion/metrics/common.filter_valid, the
blocked SSIM of cddfuse) against straightforward whole-image references written here, on every
height around the block size: a block boundary or a short last block must change nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from crossfuse.fusion.metrics import cddfuse, vifp
from crossfuse.fusion.metrics.common import BLOCK_ROWS, filter_valid, gaussian_window


def _valid(image: np.ndarray, win: np.ndarray, step: int = 1) -> np.ndarray:
    """'valid' filtering by outer(win, win): every window's weighted sum, then every step-th."""
    windows = sliding_window_view(image, (len(win), len(win)))
    return np.einsum("ijkl,k,l->ij", windows, win, win)[::step, ::step]


HEIGHTS = sorted({1, 2, 8, 9, 16, 17, 30} | {BLOCK_ROWS + d for d in range(-2, 20)} | {2 * BLOCK_ROWS + 5})


@pytest.mark.parametrize("n,step", [(17, 1), (9, 2), (5, 1), (3, 2)])
def test_filter_valid_equals_whole_image_filtering(n, step):
    rng = np.random.default_rng(n)
    win = gaussian_window(n, n / 5)
    for h in HEIGHTS:
        image = np.round(rng.uniform(0, 255, (h, 37)))
        got = filter_valid(torch.from_numpy(image), win, step).numpy()
        if h < n:
            assert got.size == 0
            continue
        want = _valid(image, win, step)
        assert got.shape == want.shape, h
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9, err_msg=f"height {h}")


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """scikit-image's structural_similarity as the protocol calls it, on whole images."""
    def mean7(z):
        return sliding_window_view(np.pad(z, 3, mode="symmetric"), (7, 7)).mean(axis=(2, 3))
    ux, uy, uxx, uyy, uxy = (mean7(z) for z in (x, y, x * x, y * y, x * y))
    cov = 49 / 48
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean())


def test_ssim_equals_whole_image_ssim_at_every_block_boundary():
    rng = np.random.default_rng(0)
    for h in [7] + [h for h in HEIGHTS if h >= 7]:
        a, b, f = (np.round(rng.uniform(0, 255, (h, 23))) for _ in range(3))
        want = _ssim_reference(f, a) + _ssim_reference(f, b)
        assert cddfuse.ssim(fused=f, ir=a, vis=b) == pytest.approx(want, rel=1e-11, abs=1e-13), h
    assert math.isnan(cddfuse.ssim(fused=np.zeros((6, 40)), ir=np.zeros((6, 40)), vis=np.zeros((6, 40))))


def _vif_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    """vifp_mscale.m, whole images, numpy."""
    sigma_nsq, eps, num, den = 2.0, 1e-10, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = gaussian_window(n, n / 5)
        if scale > 1:
            ref, dist = _valid(ref, win, 2), _valid(dist, win, 2)
        mu1, mu2 = _valid(ref, win), _valid(dist, win)
        s1 = np.maximum(_valid(ref * ref, win) - mu1 * mu1, 0)
        s2 = np.maximum(_valid(dist * dist, win) - mu2 * mu2, 0)
        s12 = _valid(ref * dist, win) - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps], sv[s1 < eps], s1[s1 < eps] = 0, s2[s1 < eps], 0
        g[s2 < eps], sv[s2 < eps] = 0, 0
        sv[g < 0], g[g < 0] = s2[g < 0], 0
        sv[sv <= eps] = eps
        num += np.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum()
        den += np.log10(1 + s1 / sigma_nsq).sum()
    return num / den


def test_vif_equals_whole_image_vif_across_block_boundaries():
    rng = np.random.default_rng(1)
    for h in (BLOCK_ROWS + 16, BLOCK_ROWS + 17, BLOCK_ROWS + 19, 2 * BLOCK_ROWS + 21, 3 * BLOCK_ROWS + 18):
        a, b = (np.round(rng.uniform(0, 255, (h, 50))) for _ in range(2))
        f = np.round((a + b) / 2 + rng.normal(0, 5, (h, 50)))
        got = vifp.ratios(a, b, f)
        np.testing.assert_allclose(got, [_vif_reference(a, f), _vif_reference(b, f)], rtol=1e-11, err_msg=str(h))
