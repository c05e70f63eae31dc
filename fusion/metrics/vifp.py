"""Pixel-domain multi-scale VIF (Sheikh & Bovik's ``vifp_mscale.m``), shared by the protocols
that score with it (CDDFuse's and Tang's toolbox), in float64.

At scales s = 1..4 a Gaussian window of N = 2^(5-s)+1 (sd N/5) gives local moments by 'valid'
filtering (for s > 1 both images are first filtered 'valid' and decimated by 2); sigma_n^2 = 2,
eps = 1e-10; g = s12/(s1+eps), sv = s2 - g s12 with the usual guards, applied in the MATLAB
code's order; VIF = sum log10(1 + g^2 s1/(sv + sigma_n^2)) / sum log10(1 + s1/sigma_n^2).

The filtering is direct, as MATLAB's ``filter2``: the separable window's two 1-D passes as sums
of shifted views, over blocks of rows that stay in the cache, and only at the kept outputs where
the next scale decimates (:func:`~crossfuse.fusion.metrics.common.filter_valid`). It replaced
float64 FFTs, 2.5-3x faster (BENCHMARKS.md, "Scoring") and closer to the official values.
"""

from __future__ import annotations

import numpy as np
import torch

from crossfuse.fusion.metrics.common import (BLOCK_ROWS, filter_rows, filter_valid, gaussian_window, torch_fork_safe,
                                             valid_shape)

def _variance(mean: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
    """Local variance ``E[x^2] - E[x]^2``, negatives (rounding) set to 0."""
    return (square - mean * mean).clamp_min_(0)


def _terms(mu_r: torch.Tensor, rr: torch.Tensor, mu_d: torch.Tensor, s2: torch.Tensor,
           rd: torch.Tensor) -> tuple[float, float]:
    """One scale's VIF numerator and denominator from local moments of reference r and distorted d
    (``s2`` its variance, :func:`_variance`; float64 tensors; the guards apply in this order, as
    in the MATLAB code)."""
    sigma_nsq, eps = 2.0, 1e-10
    s1 = _variance(mu_r, rr)
    s12 = rd - mu_r * mu_d
    g = s12 / (s1 + eps)
    sv = s2 - g * s12
    low1 = s1 < eps
    g.masked_fill_(low1, 0)
    sv = torch.where(low1, s2, sv)
    s1.masked_fill_(low1, 0)
    low2 = s2 < eps
    g.masked_fill_(low2, 0)
    sv.masked_fill_(low2, 0)
    neg = g < 0
    sv = torch.where(neg, s2, sv)
    g.masked_fill_(neg, 0)
    sv.clamp_min_(eps)
    num = g.mul_(g).mul_(s1).div_(sv.add_(sigma_nsq)).add_(1).log10_().sum()
    return float(num), float(s1.div_(sigma_nsq).add_(1).log10_().sum())


def ratios(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, saturating: bool = False) -> np.ndarray:
    """VIF(A, F) and VIF(B, F), each source the reference, as num / den (NaN where a source has no
    variance at any scale: MATLAB's 0 / 0). The fused image's moments are computed once for both.
    Each scale goes by blocks of :data:`~crossfuse.fusion.metrics.common.BLOCK_ROWS` rows: the
    eight maps' moments filtered there and their terms summed while they are in the cache.

    ``saturating``: the images are uint8 at the first scale, as MATLAB passes them in Tang's 2022
    toolbox, so the products there (``ref.*ref``, ``ref.*dist``) saturate at 255."""
    torch_fork_safe()
    images = [torch.from_numpy(np.asarray(x, dtype=np.float64)) for x in (a, b, f)]
    totals = np.zeros((2, 2))
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = gaussian_window(n, n / 5)
        if scale > 1:
            images = [filter_valid(x, win, step=2) for x in images]
        a_, b_, f_ = images
        products = [a_ * a_, b_ * b_, f_ * f_, a_ * f_, b_ * f_]
        if saturating and scale == 1:
            products = [p.clamp_max_(255.0) for p in products]
        maps, taps = images + products, [float(v) for v in win]
        out_h, out_w = valid_shape(tuple(a_.shape), n)
        buffer = torch.empty((min(out_h, BLOCK_ROWS), a_.shape[1]), dtype=torch.float64)
        moments = [torch.empty((min(out_h, BLOCK_ROWS), out_w), dtype=torch.float64) for _ in maps]
        for top in range(0, out_h, BLOCK_ROWS):
            rows = min(out_h, top + BLOCK_ROWS) - top
            mu_a, mu_b, mu_f, aa, bb, ff, af, bf = (filter_rows(x, taps, top, m[:rows], buffer)
                                                    for x, m in zip(maps, moments))
            s2 = _variance(mu_f, ff)
            totals[0] += _terms(mu_a, aa, mu_f, s2, af)
            totals[1] += _terms(mu_b, bb, mu_f, s2, bf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return totals[:, 0] / totals[:, 1]
