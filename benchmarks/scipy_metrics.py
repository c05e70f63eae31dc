"""The baseline for ``benchmarks.metrics_speed``: the twelve protocol metrics written the
straightforward way, with scipy, as the paper's evaluator computes them (``convolve2d`` for VIF's
Gaussian moments and the Sobel responses, ``ndimage.uniform_filter`` for SSIM as scikit-image does,
a joint histogram for MI, ``corrcoef`` for the correlations). Same definitions as
``crossfuse.fusion.metrics``; the benchmark checks that both give the same values.
Bench-only: needs scipy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal


def _gauss(n: int, sigma: float) -> np.ndarray:
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    xx, yy = np.meshgrid(x, x)
    g = np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
    g[g < np.finfo(np.float64).eps * g.max()] = 0
    return g / g.sum()


def en(f):
    hist, _ = np.histogram(np.round(f), bins=256, range=(0, 256))
    p = hist[hist > 0] / f.size
    return float(-(p * np.log2(p)).sum())


def sd(f):
    return float(np.std(f))


def sf(f):
    rf = np.sqrt(np.mean((f[:, 1:] - f[:, :-1]) ** 2))
    cf = np.sqrt(np.mean((f[1:, :] - f[:-1, :]) ** 2))
    return float(np.sqrt(rf ** 2 + cf ** 2))


def ag(f):
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2)))


def _mi(x, y):
    joint, _, _ = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[0, 256], [0, 256]])
    joint /= joint.sum()
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (px @ py)[nz])).sum())


def mi(f, a, b):
    return _mi(f, a) + _mi(f, b)


def _corr(x, y):
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def scd(f, a, b):
    return _corr(f - b, a) + _corr(f - a, b)


def cc(f, a, b):
    return (_corr(a, f) + _corr(b, f)) / 2


def _vif(ref, dist):
    sigma_nsq, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = _gauss(n, n / 5)
        if scale > 1:
            ref = signal.convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = signal.convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1 = signal.convolve2d(ref, win, mode="valid")
        mu2 = signal.convolve2d(dist, win, mode="valid")
        s1 = signal.convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = signal.convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = signal.convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    v = num / den
    return 1.0 if np.isnan(v) else float(v)


def vif(f, a, b):
    return _vif(a, f) + _vif(b, f)


def _sobel(img):
    hx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    hy = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
    sx = signal.convolve2d(img, hx, mode="same")
    sy = signal.convolve2d(img, hy, mode="same")
    g = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(sy / sx)
    angle[sx == 0] = math.pi / 2
    return g, angle


def qabf(f, a, b):
    ga, aa = _sobel(a)
    gb, ab = _sobel(b)
    gf, af = _sobel(f)

    def q(g_src, a_src):
        with np.errstate(divide="ignore", invalid="ignore"):
            gaf = np.where(g_src > gf, gf / g_src, np.where(g_src < gf, g_src / gf, gf))
        aaf = 1 - np.abs(a_src - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (gaf - 0.5))) * 0.9879 / (1 + np.exp(-22 * (aaf - 0.8)))

    return float((q(ga, aa) * ga + q(gb, ab) * gb).sum() / (ga + gb).sum())


def _ssim(x, y):
    ux, uy = ndimage.uniform_filter(x, 7), ndimage.uniform_filter(y, 7)
    uxx, uyy = ndimage.uniform_filter(x * x, 7), ndimage.uniform_filter(y * y, 7)
    uxy = ndimage.uniform_filter(x * y, 7)
    k = 49 / 48
    vx, vy, vxy = k * (uxx - ux * ux), k * (uyy - uy * uy), k * (uxy - ux * uy)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean())


def ssim(f, a, b):
    return _ssim(f, a) + _ssim(f, b)


def mse(f, a, b):
    return float((np.mean(((a - f) / 255) ** 2) + np.mean(((b - f) / 255) ** 2)) / 2)


def psnr(f, a, b):
    return float(10 * np.log10(f.max() ** 2 / mse(f, a, b)))


def all_metrics(f, a, b) -> dict[str, float]:
    return {"EN": en(f), "SD": sd(f), "SF": sf(f), "AG": ag(f), "MI": mi(f, a, b), "SCD": scd(f, a, b),
            "VIF": vif(f, a, b), "Qabf": qabf(f, a, b), "SSIM": ssim(f, a, b), "CC": cc(f, a, b),
            "PSNR": psnr(f, a, b), "MSE": mse(f, a, b)}
