"""Tang's MATLAB toolbox "Evaluation-for-Image-Fusion" (github: Linfeng-Tang), the protocol most
IVIF papers since 2022 print: its 11 ``easy = 1`` metrics, as ``analysis_Reference.m`` and the
files it calls compute them, in two versions.

- :func:`all_metrics`: the toolbox as it is today (metric code of 2023-03-03). Every metric but EN
  and MI sees ``im2double(x) * 255``; EN and MI see the uint8 images.
- :func:`all_metrics_2022`: its first version (2022-05-02), which papers of 2022 printed. SF, PSNR,
  MSE, CC, SCD and Qabf see ``im2double(x)`` ([0, 1]); SD, VIF and AG see the uint8 images, so SD's
  ``F - mean(F)`` saturates at 0 and its square at 255 (SD near 9, not 30-45) and VIF's first
  scale squares and multiplies in uint8 (saturating at 255).

Images are read as the toolbox's drivers read them (:func:`read`): ``imread``, then MATLAB's
``rgb2gray`` on any three-channel image, sources included. Arguments of the metric functions:
``ir`` (the toolbox's ``img1``, A), ``vis`` (``img2``, B) and ``fused`` (``img_f``, F), uint8 (H, W),
keyword-only. Quirks kept on purpose (each docstring names its own): MI in **bits** with the joint
histogram of ``uint8 + 1`` (255 + 1 saturates, so levels 254 and 255 share a bin); PSNR on [0, 1]
images as ``20 log10(255 / sqrt(MSE))`` (about 48 dB above the usual figure); CC centres B's
term on A's mean; Qabf's gradient ratio is g_F (not 1) where g_src = g_F. Values a MATLAB 0 / 0
would give stay NaN.
"""

from __future__ import annotations

import math

import numpy as np

from crossfuse.fusion.metrics import vifp
from crossfuse.fusion.metrics.common import conv2_sobel, edge_preservation, read_stored, rgb2gray, strength_angle

#: The toolbox's ``easy = 1`` metrics, in its order.
NAMES = ("EN", "SF", "SD", "PSNR", "MSE", "MI", "VIF", "AG", "CC", "SCD", "Qabf")


def read(path: str) -> np.ndarray:
    """An image as the toolbox's drivers read it: ``imread``, and ``rgb2gray`` (MATLAB's weights,
    rounded) when it has three channels. uint8 (H, W)."""
    return rgb2gray(read_stored(path))


def _scaled(x: np.ndarray) -> np.ndarray:
    """``im2double(x) * 255``: not always x itself in the last bit, as in MATLAB."""
    return x / 255.0 * 255.0


def _mean2(x: np.ndarray) -> float:
    """``mean(mean(x))``: the column means' mean."""
    return float(x.mean(axis=0).mean())


def _entropy(counts: np.ndarray) -> float:
    """``-sum p log2 p`` over the non-empty bins of ``counts``."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _en(x: np.ndarray) -> float:
    """MATLAB's ``entropy`` of a uint8 image: 256 bins, bits."""
    return _entropy(np.bincount(x.ravel(), minlength=256))


def _joint_entropy(x: np.ndarray, y: np.ndarray) -> float:
    """``Hab.m``: joint entropy in bits of the histogram indexed by ``uint8 + 1``, which saturates
    at 255 (levels 254 and 255 share a bin)."""
    i = np.minimum(x.astype(np.int64) + 1, 255).ravel()
    j = np.minimum(y.astype(np.int64) + 1, 255).ravel()
    return _entropy(np.bincount(i * 256 + j, minlength=256 * 256))


def _mi(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """``MI_evaluation.m``: (H_A + H_F - H_FA) + (H_B + H_F - H_FB), bits, on uint8 images."""
    hf = _en(f)
    return _en(a) + hf - _joint_entropy(f, a) + _en(b) + hf - _joint_entropy(f, b)


def _mse(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """``MSE_evaluation.m`` on the images it is given: 0.5 mean((F-A)^2) + 0.5 mean((F-B)^2)."""
    n = f.size
    return 0.5 * float(((f - a) ** 2).sum()) / n + 0.5 * float(((f - b) ** 2).sum()) / n


def _psnr(mse: float) -> float:
    """``PSNR_evaluation.m``: 20 log10(255 / sqrt(MSE)), whatever the images' range."""
    return 20 * math.log10(255 / math.sqrt(mse)) if mse > 0 else math.inf


def _sf(x: np.ndarray) -> float:
    """``SF_evaluation.m``: sqrt(RF^2 + CF^2), RF and CF the RMS of the row and column differences."""
    rf = math.sqrt(_mean2(np.diff(x, axis=0) ** 2))
    cf = math.sqrt(_mean2(np.diff(x, axis=1) ** 2))
    return math.sqrt(rf * rf + cf * cf)


def _sd(x: np.ndarray) -> float:
    """``SD_evaluation.m`` on a double image: the population standard deviation."""
    return math.sqrt(float(((x - _mean2(x)) ** 2).sum()) / x.size)


def _sd_uint8(x: np.ndarray) -> float:
    """``SD_evaluation.m`` on a uint8 image (the 2022 version): ``F - u`` is uint8 (rounded half
    away from zero, negative values saturating at 0) and so is its square (saturating at 255)."""
    u = _mean2(x.astype(np.float64))
    d = np.clip(np.floor(x - u + 0.5), 0, 255)
    return math.sqrt(float(np.minimum(d * d, 255).sum()) / x.size)


def _ag(x: np.ndarray) -> float:
    """``AG_evaluation.m``: sum(sqrt((dx^2 + dy^2) / 2)) / ((H - 1)(W - 1)), MATLAB's ``gradient``
    (central differences, one-sided on the borders)."""
    dy, dx = np.gradient(x.astype(np.float64))
    return float(np.sqrt((dx * dx + dy * dy) / 2).sum()) / ((x.shape[0] - 1) * (x.shape[1] - 1))


def _corr2(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB's ``corr2`` (NaN for a constant image, as 0 / 0 there)."""
    xc, yc = x - _mean2(x), y - _mean2(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64((xc * yc).sum()) / np.sqrt((xc * xc).sum() * (yc * yc).sum()))


def _cc(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """``CC_evaluation.m``: the mean of r(A, F) and r(B, F), B's numerator centred on **A's** mean
    (the quirk; it moves the value only by rounding, since F - mean(F) sums to zero)."""
    ac, bc, fc = a - _mean2(a), b - _mean2(b), f - _mean2(f)
    ff = (fc * fc).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        r_af = np.float64((ac * fc).sum()) / np.sqrt((ac * ac).sum() * ff)
        r_bf = np.float64(((b - _mean2(a)) * fc).sum()) / np.sqrt((bc * bc).sum() * ff)
    return float((r_af + r_bf) / 2)


def _scd(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """``analysis_SCD.m``: corr2(F - B, A) + corr2(F - A, B)."""
    return _corr2(f - b, a) + _corr2(f - a, b)


def _vif(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, saturating: bool = False) -> float:
    """``vifp_mscale(A, F) + vifp_mscale(B, F)`` (:mod:`~crossfuse.fusion.metrics.vifp`)."""
    return float(vifp.ratios(a, b, f, saturating=saturating).sum())


def _qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, sobel=conv2_sobel) -> float:
    """``analysis_Qabf.m`` (Xydeas-Petrovic): sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B), NaN where
    both sources are flat (MATLAB's 0 / 0)."""
    (ga, aa), (gb, ab), (gf, af) = (strength_angle(*sobel(x)) for x in (a, b, f))
    num = (edge_preservation(ga, aa, gf, af) * ga + edge_preservation(gb, ab, gf, af) * gb).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / (ga + gb).sum())


#: The Sobel kernels of ``analysis_Qabf.m``: Sx = conv2(x, H3), Sy = conv2(x, H1).
_H3 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_H1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


#: The order in which ``conv2`` walks a 3x3 kernel's columns: MATLAB's (found by trying each
#: order against MATLAB's own 2022 values, all of which it then reproduces) and GNU Octave's (its
#: Fortran ``dconv2o`` walks the image's columns outermost, so the kernel's come last first).
CONV2_COLUMNS = {"matlab": (0, 1, 2), "octave": (2, 1, 0)}


def _conv2_same(x: np.ndarray, kernel: np.ndarray, columns: tuple[int, int, int]) -> np.ndarray:
    """``conv2(x, kernel, 'same')`` for a 3x3 kernel, rounded as MATLAB or Octave round it: output
    (r, s) accumulates kernel[i, j] * x[r + 1 - i, s + 1 - j], starting from 0, for j in
    ``columns`` and, within each, i = 0, 1, 2 (the products by 0, +-1 and +-2 are exact, so a fused
    multiply-add changes nothing)."""
    p = np.pad(x, 2)
    h, w = x.shape
    acc = np.zeros_like(x)
    for j in columns:
        for i in (0, 1, 2):
            acc = acc + kernel[i, j] * p[3 - i:3 - i + h, 3 - j:3 - j + w]
    return acc


def _sobel_unit(x: np.ndarray, program: str = "matlab") -> tuple[np.ndarray, np.ndarray]:
    """The 2022 Sobel responses of a [0, 1] image, rounded as ``program``'s ``conv2`` rounds them
    (:data:`CONV2_COLUMNS`). They matter: where an exact sum is zero, rounding can leave a tiny
    value, and the 2022 code tests ``Sx == 0`` (the angle) and ``gA == gF`` (the strength ratio)
    for exact equality, so Octave's Qabf differs from MATLAB's (by a median 3.7e-4 relative, at
    most 1.8e-2, over the oracle's 105 images); each order reproduces its own program's values
    to 3e-15."""
    columns = CONV2_COLUMNS[program]
    return _conv2_same(x, _H3, columns), _conv2_same(x, _H1, columns)


def all_metrics(*, ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """The 11 metrics of today's toolbox (``analysis_Reference.m`` with ``easy = 1``) for the
    ``fused`` image against ``ir`` and ``vis``, uint8 (H, W) as :func:`read` gives them."""
    a8, b8, f8 = ir, vis, fused
    a, b, f = _scaled(a8), _scaled(b8), _scaled(f8)
    mse = _mse(a / 255.0, b / 255.0, f / 255.0)
    return {"EN": _en(f8), "SF": _sf(f), "SD": _sd(f), "PSNR": _psnr(mse), "MSE": mse, "MI": _mi(a8, b8, f8),
            "VIF": _vif(a, b, f), "AG": _ag(f), "CC": _cc(a, b, f), "SCD": _scd(a, b, f), "Qabf": _qabf(a, b, f)}


def all_metrics_2022(*, ir: np.ndarray, vis: np.ndarray, fused: np.ndarray,
                     program: str = "matlab") -> dict[str, float]:
    """The 11 metrics of the toolbox's 2022 version (see the module docstring for what each sees).
    Qabf there tests Sobel responses of [0, 1] images for exact equality, which depends on the
    order ``conv2`` sums in: ``program`` "matlab" (MATLAB's values, the default) or "octave"
    (GNU Octave's); see :func:`_sobel_unit`."""
    a8, b8, f8 = ir, vis, fused
    a, b, f = a8 / 255.0, b8 / 255.0, f8 / 255.0
    mse = _mse(a, b, f)
    return {"EN": _en(f8), "SF": _sf(f), "SD": _sd_uint8(f8), "PSNR": _psnr(mse), "MSE": mse,
            "MI": _mi(a8, b8, f8), "VIF": _vif(a8, b8, f8, saturating=True), "AG": _ag(f8), "CC": _cc(a, b, f),
            "SCD": _scd(a, b, f), "Qabf": _qabf(a, b, f, sobel=lambda x: _sobel_unit(x, program))}
