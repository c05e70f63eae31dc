"""The baseline for ``benchmarks.tang_speed``: the 11 ``easy = 1`` metrics of Tang's toolbox as it
is today (``Evaluation/analysis_Reference.m`` and the files it calls) ported line by line with
numpy and scipy, the way one would first write them: ``filter2`` as a direct scipy correlation,
``conv2`` as ``scipy.signal.convolve2d``, ``entropy`` and ``Hab.m`` as ``np.histogram`` and
``np.histogram2d``. The toolbox's per-pixel loops (``Hab.m``, ``analysis_Qabf.m``) are written as
whole-array numpy (a Python loop over 440,000 pixels would take tens of seconds an image, which
is no fair baseline). Same definitions and quirks as ``crossfuse.fusion.metrics.tang``; the
benchmark checks that both give the same values. Bench-only: needs scipy. Arguments as the
toolbox's ``analysis_Reference(img_f, img1, img2)``: fused, infrared, visible, uint8 (H, W).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal


def entropy(x):
    counts, _ = np.histogram(x, bins=256, range=(0, 256))
    p = counts / x.size
    p = p[p > 0]
    return -np.sum(p * np.log2(p))


def hab(x, y):
    xi = np.minimum(x.astype(np.int32) + 1, 255)  # uint8 + 1 saturates
    yi = np.minimum(y.astype(np.int32) + 1, 255)
    counter, _, _ = np.histogram2d(xi.ravel(), yi.ravel(), bins=256, range=[[1, 257], [1, 257]])
    p = counter / counter.sum()
    p = p[counter != 0]
    return np.sum(-p * np.log2(p))


def mi(a, b, f):
    ha, hb, hf = entropy(a), entropy(b), entropy(f)
    return (ha + hf - hab(f, a)) + (hb + hf - hab(f, b))


def mse(a, b, f):
    a, b, f = a / 255.0, b / 255.0, f / 255.0
    m, n = f.shape
    return 0.5 * np.sum((f - a) ** 2) / (m * n) + 0.5 * np.sum((f - b) ** 2) / (m * n)


def psnr(a, b, f):
    return 20 * math.log10(255 / math.sqrt(mse(a, b, f)))


def sf(x):
    rf = np.sqrt(np.mean(np.mean(np.diff(x, 1, 0) ** 2)))
    cf = np.sqrt(np.mean(np.mean(np.diff(x, 1, 1) ** 2)))
    return np.sqrt(rf ** 2 + cf ** 2)


def sd(x):
    m, n = x.shape
    return np.sqrt(np.sum((x - np.mean(x)) ** 2) / (m * n))


def fspecial_gaussian(n, sigma):
    x = np.arange(n) - (n - 1) / 2
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return h / h.sum()


def vifp_mscale(ref, dist):
    sigma_nsq, num, den = 2.0, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = fspecial_gaussian(n, n / 5)
        if scale > 1:
            ref = signal.correlate2d(ref, win, mode="valid")[::2, ::2]
            dist = signal.correlate2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = signal.correlate2d(ref, win, mode="valid"), signal.correlate2d(dist, win, mode="valid")
        s1 = signal.correlate2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = signal.correlate2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = signal.correlate2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g ** 2 * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return num / den


def ag(img):
    r, c = img.shape
    dzdy, dzdx = np.gradient(img)
    s = np.sqrt((dzdx ** 2 + dzdy ** 2) / 2)
    return np.sum(s) / ((r - 1) * (c - 1))


def cc(a, b, f):
    r_af = np.sum((a - a.mean()) * (f - f.mean())) / np.sqrt(np.sum((a - a.mean()) ** 2) * np.sum((f - f.mean()) ** 2))
    r_bf = np.sum((b - a.mean()) * (f - f.mean())) / np.sqrt(np.sum((b - b.mean()) ** 2) * np.sum((f - f.mean()) ** 2))
    return np.mean([r_af, r_bf])


def corr2(x, y):
    x, y = x - x.mean(), y - y.mean()
    return np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))


def scd(a, b, f):
    return corr2(f - b, a) + corr2(f - a, b)


_H1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
_H3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def _edges(p):
    sx, sy = signal.convolve2d(p, _H3, mode="same"), signal.convolve2d(p, _H1, mode="same")
    g = np.sqrt(sx ** 2 + sy ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))
    return g, a


def _q(g, a, gf, af):
    with np.errstate(divide="ignore", invalid="ignore"):
        gaf = np.where(g > gf, gf / g, np.where(g == gf, gf, g / gf))
    aaf = 1 - np.abs(a - af) / (np.pi / 2)
    return 0.9994 / (1 + np.exp(-15 * (gaf - 0.5))) * 0.9879 / (1 + np.exp(-22 * (aaf - 0.8)))


def qabf(a, b, f):
    (ga, aa), (gb, ab), (gf, af) = _edges(a), _edges(b), _edges(f)
    return np.sum(_q(ga, aa, gf, af) * ga + _q(gb, ab, gf, af) * gb) / np.sum(ga + gb)


def all_metrics(f8, a8, b8):
    a, b, f = (x / 255.0 * 255.0 for x in (a8, b8, f8))
    return {"EN": entropy(f8), "SF": sf(f), "SD": sd(f), "PSNR": psnr(a, b, f), "MSE": mse(a, b, f),
            "MI": mi(a8, b8, f8), "VIF": vifp_mscale(a, f) + vifp_mscale(b, f), "AG": ag(f), "CC": cc(a, b, f),
            "SCD": scd(a, b, f), "Qabf": qabf(a, b, f)}
