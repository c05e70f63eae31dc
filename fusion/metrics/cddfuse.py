"""Fusion-quality metrics exactly as the paper's evaluation protocol computes them.

F is the fused image, A the infrared, B the visible: (H, W) float64 arrays of gray values on a
0-255 scale, read by :func:`read_gray`. Everything is vectorised float64: Gaussian and box
filtering direct, as separable sums of shifted views in cache-sized blocks (torch). The protocol's
quirks are kept on purpose and noted in each docstring, so that numbers stay comparable with
published tables.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from crossfuse.fusion.metrics import vifp
from crossfuse.fusion.metrics.common import (BLOCK_ROWS, conv2_sobel, edge_preservation, read_stored, strength_angle,
                                             torch_fork_safe)

NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE")


def read_gray(path: str) -> np.ndarray:
    """The protocol's reading: 8-bit RGB -> ``round(0.299 R + 0.587 G + 0.114 B)``; gray as it is.
    Returns (H, W) float64 on 0-255."""
    return gray(read_stored(path))


def gray(stored: np.ndarray) -> np.ndarray:
    """An image as :func:`~crossfuse.fusion.metrics.common.read_stored` returns it, turned gray
    as :func:`read_gray` does."""
    if stored.ndim == 2:
        return stored.astype(np.float64)
    rgb = stored.astype(np.float64)
    return np.round(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either image is constant (where the protocol would give NaN)."""
    xc, yc = x - x.mean(), y - y.mean()
    norm = math.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / norm) if norm > 0 else 0.0


# ---- the metrics ----

def en(f: np.ndarray) -> float:
    """Entropy in bits of the 256-bin histogram of round(F): ``-sum p log2 p``."""
    counts = np.bincount(np.round(f).astype(np.uint8).ravel(), minlength=256)
    p = counts[counts > 0] / f.size
    return float(-(p * np.log2(p)).sum())


def sd(f: np.ndarray) -> float:
    """Population standard deviation of F."""
    return float(f.std())


def sf(f: np.ndarray) -> float:
    """Spatial frequency: ``sqrt(mean((F[:,1:]-F[:,:-1])^2) + mean((F[1:,:]-F[:-1,:])^2))``."""
    return float(math.sqrt(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))


def ag(f: np.ndarray) -> float:
    """Average gradient: ``mean(sqrt((Gx^2 + Gy^2) / 2))``, central differences inside, one-sided
    on the first and last column/row (numpy's ``gradient``)."""
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2)))


def _mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """MI in nats with each (integer) pixel value a label: ``sum p_xy log(p_xy / (p_x p_y))``."""
    a = x.astype(np.int64).ravel()
    b = y.astype(np.int64).ravel()
    joint = np.bincount(a * 256 + b, minlength=256 * 256).reshape(256, 256).astype(np.float64)
    joint /= a.size
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.outer(px, py)[nz])).sum())


def mi(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """``MI(F, A) + MI(F, B)`` in **nats** over exact pixel values (scikit-learn's
    ``mutual_info_score`` on the flattened images) - the protocol's quirk: not bits."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    return _mutual_information(f, a) + _mutual_information(f, b)


def scd(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """Sum of correlations of differences: ``corr(A, F - B) + corr(B, F - A)`` (Pearson)."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    return _corr(a, f - b) + _corr(b, f - a)


def cc(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """``(corr(A, F) + corr(B, F)) / 2`` (Pearson over all pixels)."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    return (_corr(a, f) + _corr(b, f)) / 2


def _vif_pair(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """VIF(A, F) and VIF(B, F) (:mod:`~crossfuse.fusion.metrics.vifp`), NaN counting as 1."""
    return tuple(1.0 if math.isnan(v) else float(v) for v in vifp.ratios(a, b, f))


def vif(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """``VIF(A, F) + VIF(B, F)``: pixel-domain VIF at scales s = 1..4 with Gaussian windows of
    N = 2^(5-s)+1 (sd N/5; for s > 1 both images are first filtered 'valid' and decimated by 2),
    local moments by 'valid' filtering, sigma_n^2 = 2, eps = 1e-10; g = s12/(s1+eps),
    sv = s2 - g s12 with the usual guards; VIF = sum log10(1 + g^2 s1/(sv + sigma_n^2)) /
    sum log10(1 + s1/sigma_n^2), NaN counting as 1."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    return sum(_vif_pair(a, b, f))


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient magnitude and angle arctan(Sy/Sx) (pi/2 where Sx = 0) of the Sobel responses by
    true 2-D convolution with zero padding ('same'): :func:`~crossfuse.fusion.metrics.common.conv2_sobel`."""
    return strength_angle(*conv2_sobel(img))


def qabf(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """Xydeas-Petrovic edge preservation: ``sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B)`` with
    Q = Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (A - Da))), Tg=0.9994, kg=-15, Dg=0.5,
    Ta=0.9879, ka=-22, Da=0.8; G the gradient-strength ratio (the quirk: G = g_F where g_src = g_F),
    A = 1 - |angle_src - angle_F| / (pi/2)."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    ga, aa = _sobel(a)
    gb, ab = _sobel(b)
    gf, af = _sobel(f)
    den = (ga + gb).sum()
    if den == 0:  # both sources flat: no edge to preserve (the protocol would give NaN)
        return 0.0
    num = (edge_preservation(ga, aa, gf, af) * ga + edge_preservation(gb, ab, gf, af) * gb).sum()
    return float(num / den)


def _ssim_map(ux: np.ndarray, uy: np.ndarray, uxx: np.ndarray, uyy: np.ndarray, uxy: np.ndarray) -> np.ndarray:
    """scikit-image's SSIM map from 7x7 local means of x, y, x^2, y^2, xy: sample covariance,
    K1=0.01, K2=0.03 with data_range = 1. Its operations in its order, in place:
    ``((2 ux uy + c1)(2 vxy + c2)) / ((ux^2 + uy^2 + c1)(vx + vy + c2))``, v = 49/48 (E[..] - ..)."""
    cov_norm = 49 / 48
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = 2 * ux
    num *= uy
    num += c1
    vxy = np.subtract(uxy, ux * uy)
    vxy *= cov_norm
    vxy *= 2
    vxy += c2
    num *= vxy
    ux2, uy2 = ux * ux, uy * uy
    vx = np.subtract(uxx, ux2)
    vx *= cov_norm
    vy = np.subtract(uyy, uy2, out=vxy)
    vy *= cov_norm
    vx += vy
    vx += c2
    ux2 += uy2
    ux2 += c1
    ux2 *= vx
    num /= ux2
    return num


def _sums7(x: torch.Tensor, dim: int, out: torch.Tensor) -> torch.Tensor:
    """Into ``out``: the sums of 7 neighbours along ``dim`` of ``x``, built from sums of 2 and 4
    neighbours (three additions per value instead of six): ``(s4 + s2') + x''``."""
    n = x.shape[dim]
    pairs = x.narrow(dim, 0, n - 1) + x.narrow(dim, 1, n - 1)
    fours = pairs.narrow(dim, 0, n - 3) + pairs.narrow(dim, 2, n - 3)
    return torch.add(fours.narrow(dim, 0, n - 6), pairs.narrow(dim, 4, n - 6), out=out).add_(x.narrow(dim, 6, n - 6))


def _uniform7_rows(padded: torch.Tensor, top: int, out: torch.Tensor, buffer: torch.Tensor) -> np.ndarray:
    """Rows ``top`` .. ``top + len(out)`` of scipy.ndimage.uniform_filter(size=7, mode='reflect')
    of an image given padded symmetrically by 3 (d c b a | a b c d), into ``out``: its 7-sums
    down the columns, then along the rows (:func:`_sums7`; exact, the images being integers),
    divided by 49."""
    rows = out.shape[0]
    return _sums7(_sums7(padded[top:top + rows + 6], 0, buffer[:rows]), 1, out).div_(49.0).numpy()


def ssim(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """``SSIM(F, A) + SSIM(F, B)``, each scikit-image's ``structural_similarity`` (7x7 uniform
    window, sample covariance, mirrored borders, mean over the map less a 3-pixel border) with the
    protocol's quirk data_range = 1 on 0-255 images (so C1 = 1e-4, C2 = 9e-4). The maps go by
    blocks of rows, their eight local means and their sums made while a block is in the cache."""
    h, w = fused.shape
    if h <= 6 or w <= 6:
        return math.nan  # no pixel inside the border (scikit-image: the mean of nothing)
    torch_fork_safe()
    f, a, b = (torch.from_numpy(np.pad(x, 3, mode="symmetric")) for x in (fused, ir, vis))  # products pad alike
    maps = (f, a, b, f * f, a * a, b * b, f * a, f * b)
    block = min(h, BLOCK_ROWS)
    buffer = torch.empty((block, w + 6), dtype=torch.float64)
    means = [torch.empty((block, w), dtype=torch.float64) for _ in maps]
    total = 0.0
    for top in range(0, h, BLOCK_ROWS):
        rows = min(h, top + BLOCK_ROWS) - top
        uf, ua, ub, uff, uaa, ubb, ufa, ufb = (_uniform7_rows(x, top, m[:rows], buffer) for x, m in zip(maps, means))
        inside = slice(max(0, 3 - top), max(0, min(rows, h - 3 - top)))  # rows 3 .. h - 4 only
        for s in (_ssim_map(uf, ua, uff, uaa, ufa), _ssim_map(uf, ub, uff, ubb, ufb)):
            total += float(s[inside, 3:-3].sum())
    return total / ((h - 6) * (w - 6))


def mse(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """``(mean((A - F)^2) + mean((B - F)^2)) / 2`` on images divided by 255."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    fa, fb = (a - f) / 255.0, (b - f) / 255.0
    return float((np.mean(fa * fa) + np.mean(fb * fb)) / 2)


def psnr(*, fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """``10 log10(max(F)^2 / MSE)`` - the protocol's quirk: max(F) on 0-255 but MSE on /255 images.
    Infinite when F equals both sources; -inf when F is all zero."""
    f, a, b = fused, ir, vis  # the evaluator's own names: fused, infrared, visible
    return _psnr(f, mse(fused=f, ir=a, vis=b))


def _psnr(f: np.ndarray, err: float) -> float:
    peak = float(f.max()) ** 2
    if err == 0:
        return math.inf
    return float(10 * math.log10(peak / err)) if peak > 0 else -math.inf


def all_metrics(*, ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`NAMES` for the ``fused`` image against infrared ``ir`` and visible
    ``vis`` (gray, one shape; keyword-only, since a swap would run and give wrong numbers). The
    evaluator's own names are kept inside: ``f`` fused, ``a`` infrared, ``b`` visible."""
    f, images = fused, {"fused": fused, "ir": ir, "vis": vis}
    err = mse(**images)
    return {"EN": en(f), "SD": sd(f), "SF": sf(f), "AG": ag(f), "MI": mi(**images), "SCD": scd(**images),
            "VIF": vif(**images), "Qabf": qabf(**images), "SSIM": ssim(**images), "CC": cc(**images),
            "PSNR": _psnr(f, err), "MSE": err}
