"""Pixel-domain multi-scale VIF (Sheikh & Bovik's ``vifp_mscale.m``), shared by the protocols
that score with it (CDDFuse's and Tang's toolbox), in float64 through (torch) FFTs.

At scales s = 1..4 a Gaussian window of N = 2^(5-s)+1 (sd N/5) gives local moments by 'valid'
filtering (for s > 1 both images are first filtered 'valid' and decimated by 2); sigma_n^2 = 2,
eps = 1e-10; g = s12/(s1+eps), sv = s2 - g s12 with the usual guards, applied in the MATLAB
code's order; VIF = sum log10(1 + g^2 s1/(sv + sigma_n^2)) / sum log10(1 + s1/sigma_n^2).
"""

from __future__ import annotations

import numpy as np
import torch

from crossfuse.fusion.metrics.common import fast_length, gaussian_window, torch_fork_safe


def _spectra(stack: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Real 2-D FFTs (float64) of each (H, W) image of ``stack`` (k, H, W), zero-padded to
    5-smooth sizes >= (H, W), so that a 'valid' filtering through them never wraps."""
    size = (fast_length(stack.shape[-2]), fast_length(stack.shape[-1]))
    return torch.fft.rfft2(stack, s=size), size


def _filter_valid(spectra: torch.Tensor, size: tuple[int, int], shape: tuple[int, int],
                  win: np.ndarray) -> torch.Tensor:
    """'valid' filtering, by the symmetric window ``outer(win, win)``, of the (H, W) = ``shape``
    images whose :func:`_spectra` are given: a circular FFT convolution whose valid part never
    wraps. The window's spectrum is the outer product of its two 1-D transforms."""
    h, w = shape
    n = len(win)
    taps = torch.from_numpy(win)
    kernel = torch.fft.fft(taps, n=size[0])[:, None] * torch.fft.rfft(taps, n=size[1])[None, :]
    return torch.fft.irfft2(spectra * kernel, s=size)[..., n - 1:h, n - 1:w]


def _terms(mu_r: torch.Tensor, rr: torch.Tensor, mu_d: torch.Tensor, dd: torch.Tensor,
           rd: torch.Tensor) -> tuple[float, float]:
    """One scale's VIF numerator and denominator from local moments of reference r and distorted d
    (float64 tensors; the guards apply in this order, as in the MATLAB code)."""
    sigma_nsq, eps = 2.0, 1e-10
    s1 = rr - mu_r * mu_r
    s2 = dd - mu_d * mu_d
    s12 = rd - mu_r * mu_d
    s1, s2 = s1.clamp_min(0), s2.clamp_min(0)
    g = s12 / (s1 + eps)
    sv = s2 - g * s12
    low1 = s1 < eps
    g, sv, s1 = g.masked_fill(low1, 0), torch.where(low1, s2, sv), s1.masked_fill(low1, 0)
    low2 = s2 < eps
    g, sv = g.masked_fill(low2, 0), sv.masked_fill(low2, 0)
    neg = g < 0
    sv, g = torch.where(neg, s2, sv), g.masked_fill(neg, 0)
    sv = sv.clamp_min(eps)
    return (float(torch.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum()),
            float(torch.log10(1 + s1 / sigma_nsq).sum()))


def ratios(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, saturating: bool = False) -> np.ndarray:
    """VIF(A, F) and VIF(B, F), each source the reference, as num / den (NaN where a source has no
    variance at any scale: MATLAB's 0 / 0). The fused image's moments are computed once for both,
    and each scale's transforms of A, B and F also give the next scale's filtered, decimated images.

    ``saturating``: the images are uint8 at the first scale, as MATLAB passes them in Tang's 2022
    toolbox, so the products there (``ref.*ref``, ``ref.*dist``) saturate at 255."""
    torch_fork_safe()
    images = torch.from_numpy(np.stack([a, b, f]).astype(np.float64))
    spectra, size = None, None  # spectra: of the previous scale
    totals = np.zeros((2, 2))
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = gaussian_window(n, n / 5)
        if scale > 1:
            images = _filter_valid(spectra[:3], size, images.shape[-2:], win)[..., ::2, ::2]
        a_, b_, f_ = images
        products = torch.stack([a_ * a_, b_ * b_, f_ * f_, a_ * f_, b_ * f_])
        if saturating and scale == 1:
            products = products.clamp_max(255.0)
        spectra, size = _spectra(torch.cat([images, products]))
        mu_a, mu_b, mu_f, aa, bb, ff, af, bf = _filter_valid(spectra, size, images.shape[-2:], win)
        totals[0] += _terms(mu_a, aa, mu_f, ff, af)
        totals[1] += _terms(mu_b, bb, mu_f, ff, bf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return totals[:, 0] / totals[:, 1]
