"""The baseline for ``benchmarks.vifb_speed``: VIFB's 13 metrics ported line by line from its MATLAB
code (``metrics/metrics<Name>.m``) with numpy and scipy, the way one would first write them:
``filter2``/``conv2``/``imfilter`` as direct scipy correlations (the 31 x 31 Gaussians of Qcb
included), ``blkproc`` as a loop over blocks, complex ``fft2`` with ``fftshift`` for the CSF
filters, ``histogram2d`` for MI. Same definitions and quirks as ``crossfuse.fusion.metrics.vifb``
(its docstrings say what each quirk is); the benchmark checks that both give the same values.
Bench-only: needs scipy. Arguments as VIFB's: ``(vis, ir, fused)``, uint8 as read.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal

_GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def rgb2gray(x):
    if x.ndim == 2:
        return x
    g = x[..., 0] * _GRAY[0] + x[..., 1] * _GRAY[1] + x[..., 2] * _GRAY[2]
    return np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else g


def _per_channel(single, vis, ir, fused, double_sources=False):
    fused = fused.astype(np.float64)
    if double_sources:
        vis, ir = vis.astype(np.float64), ir.astype(np.float64)
    if fused.ndim == 2:
        return float(single(vis, ir, fused))
    return float(np.mean([single(vis[..., k], ir if ir.ndim == 2 else ir[..., k], fused[..., k]) for k in range(3)]))


def _bands(fused):
    f = fused.astype(np.float64)
    return [f] if f.ndim == 2 else [f[..., k] for k in range(f.shape[2])]


def ag(vis, ir, fused):
    out = []
    for band in _bands(fused):
        gy, gx = np.gradient(band)
        out.append(np.sum(np.sqrt((gx ** 2 + gy ** 2) / 2)) / ((band.shape[0] - 1) * (band.shape[1] - 1)))
    return float(np.mean(out))


def _hist(x):
    h, _ = np.histogram(np.floor(np.asarray(x, dtype=np.float64)), bins=256, range=(0, 256))
    return h / x.size


def ce(vis, ir, fused):
    def one(a, f):
        p1, p2 = _hist(rgb2gray(a)), _hist(rgb2gray(f))
        total = 0.0
        for k in range(256):
            if p1[k] != 0 and p2[k] != 0:
                total += p1[k] * math.log2(p1[k] / p2[k])
        return total

    return _per_channel(lambda a, b, f: (one(a, f) + one(b, f)) / 2, vis, ir, fused)


def ei(vis, ir, fused):
    out = []
    for band in _bands(fused):
        gx = ndimage.correlate(band, _SOBEL_Y.T, mode="nearest")
        gy = ndimage.correlate(band, _SOBEL_Y, mode="nearest")
        out.append(np.mean(np.sqrt(gx ** 2 + gy ** 2)))
    return float(np.mean(out))


def en(vis, ir, fused):
    def one(a, b, f):
        p = _hist(f)
        p = p[p > 0]
        return -np.sum(p * np.log2(p))

    return _per_channel(one, vis, ir, fused)


def _mutinf(a, b):
    def levels(x):
        x = np.asarray(rgb2gray(x), dtype=np.float64)
        lo, hi = x.min(), x.max()
        return np.floor((x - lo) / (hi - lo) * 255 + 0.5) if hi != lo else np.zeros_like(x)

    joint, _, _ = np.histogram2d(levels(a).ravel(), levels(b).ravel(), bins=256, range=[[0, 256], [0, 256]])
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)

    def h(p):
        p = p[p > 0]
        return -np.sum(p * np.log(p))

    return h(pa) + h(pb) - h(joint.ravel())


def mi(vis, ir, fused):
    return _per_channel(lambda a, b, f: _mutinf(a, f) + _mutinf(b, f), vis, ir, fused)


def _mse(a, b):
    a, b = rgb2gray(a), rgb2gray(b)
    return np.sqrt(np.sum((a - b) ** 2)) / (a.shape[0] * a.shape[1])


def psnr(vis, ir, fused):
    return _per_channel(lambda a, b, f: 20 * np.log10(255 / np.sqrt((_mse(a, f) + _mse(b, f)) / 2)), vis, ir, fused,
                        double_sources=True)


def rmse(vis, ir, fused):
    return _per_channel(lambda a, b, f: (_mse(a, f) + _mse(b, f)) / 2, vis, ir, fused, double_sources=True)


def sf(vis, ir, fused):
    f = fused.astype(np.float64)
    if f.ndim == 3:
        f = f.reshape(f.shape[0], -1, order="F")  # MATLAB's [m, n] = size(fused): H x 3W
    m, n = f.shape
    rf = np.sum((f[:, 1:] - f[:, :-1]) ** 2) / (m * n)
    cf = np.sum((f[1:, :] - f[:-1, :]) ** 2) / (m * n)
    return float(np.sqrt(rf + cf))


def _ssim_index(a, b):
    x = np.arange(-5, 6)
    xx, yy = np.meshgrid(x, x)
    w = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = signal.correlate2d(a, w, mode="valid"), signal.correlate2d(b, w, mode="valid")
    s1 = signal.correlate2d(a * a, w, mode="valid") - mu1 * mu1
    s2 = signal.correlate2d(b * b, w, mode="valid") - mu2 * mu2
    s12 = signal.correlate2d(a * b, w, mode="valid") - mu1 * mu2
    return np.mean(((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2)))


def ssim(vis, ir, fused):
    def one(a, b, f):
        a, b, f = (np.asarray(rgb2gray(x), dtype=np.float64) for x in (a, b, f))
        return _ssim_index(a, f) + _ssim_index(b, f)

    return _per_channel(one, vis, ir, fused)


def sd(vis, ir, fused):
    return _per_channel(lambda a, b, f: np.sqrt(np.sum((f - f.mean()) ** 2) / f.size), vis, ir, fused)


def _qabf(a, b, f):
    def sobel(x):
        x = 255 * np.asarray(rgb2gray(x.astype(np.float64)), dtype=np.float64)
        sx, sy = signal.convolve2d(x, _SOBEL_X, mode="same"), signal.convolve2d(x, _SOBEL_Y, mode="same")
        g = np.sqrt(sx * sx + sy * sy)
        with np.errstate(divide="ignore", invalid="ignore"):
            angle = np.arctan(sy / sx)
        angle[sx == 0] = math.pi / 2
        return g, angle

    (ga, aa), (gb, ab), (gf, af) = sobel(a), sobel(b), sobel(f)

    def q(gs, as_):
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(gs > gf, gf / gs, np.where(gs == gf, gf, gs / gf))
        o = 1 - np.abs(as_ - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (g - 0.5))) * 0.9879 / (1 + np.exp(-22 * (o - 0.8)))

    return np.sum(q(ga, aa) * ga + q(gb, ab) * gb) / np.sum(ga + gb)


def qabf(vis, ir, fused):
    return _per_channel(_qabf, vis, ir, fused)


def _normalize1(x):
    x = np.asarray(x, dtype=np.float64)
    hi, lo = x.max(), x.min()
    return x if hi == 0 and lo == 0 else np.floor((x - lo) / (hi - lo) * 255 + 0.5)


def _freqspace(h, w):
    return np.meshgrid((np.arange(w) - w // 2) * (2 / w), (np.arange(h) - h // 2) * (2 / h))


def _csf(x, response):
    return np.real(np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * response)))


def _qcb(a, b, f):
    a, b, f = _normalize1(a), _normalize1(b), _normalize1(f)
    h, w = a.shape
    u, v = _freqspace(h, w)
    r = np.sqrt((w / 30 * u) ** 2 + (h / 30 * v) ** 2)
    sd_ = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    x, y = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))
    g1, g2 = (np.exp(-(x * x + y * y) / (2 * s * s)) / (2 * np.pi * s * s) for s in (2.0, 4.0))

    def contrast(im):
        c = np.abs(ndimage.correlate(im, g1, mode="constant") / ndimage.correlate(im, g2, mode="constant") - 1)
        return c ** 3 / (c ** 2 + 0.0001)

    c1, c2, cf = (contrast(_csf(x_, sd_)) for x_ in (a, b, f))
    mask1, mask2 = (c1 < cf).astype(np.float64), (c2 < cf).astype(np.float64)
    q1 = (c1 / cf) * mask1 + (cf / c1) * (1 - mask1)
    q2 = (c2 / cf) * mask2 + (cf / c2) * (1 - mask2)
    l1, l2 = c1 * c1 / (c1 * c1 + c2 * c2), c2 * c2 / (c1 * c1 + c2 * c2)
    return np.mean(l1 * q1 + l2 * q2)


def qcb(vis, ir, fused):
    return _per_channel(_qcb, vis, ir, fused, double_sources=True)


def _blkproc(x, size, fun):
    h, w = x.shape
    out = np.zeros((-(-h // size), -(-w // size)))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            block = np.zeros((size, size))
            part = x[i * size:(i + 1) * size, j * size:(j + 1) * size]
            block[:part.shape[0], :part.shape[1]] = part
            out[i, j] = fun(block)
    return out


def _qcv(a, b, f):
    a, b, f = _normalize1(a), _normalize1(b), _normalize1(f)

    def strength(x):
        gx = signal.correlate2d(x, _SOBEL_X, mode="same")
        gy = signal.correlate2d(x, _SOBEL_X.T, mode="same")
        return np.sqrt(gx * gx + gy * gy)

    l1 = _blkproc(strength(a), 16, lambda x: np.sum(x ** 5))
    l2 = _blkproc(strength(b), 16, lambda x: np.sum(x ** 5))
    h, w = a.shape
    u, v = _freqspace(h, w)
    r = np.sqrt((w / 8 * u) ** 2 + (h / 8 * v) ** 2)
    theta = 2.6 * (0.0192 + 0.144 * r) * np.exp(-(0.144 * r) ** 1.1)
    d1 = _blkproc(_csf(a - f, theta), 16, lambda x: np.mean(x ** 2))
    d2 = _blkproc(_csf(b - f, theta), 16, lambda x: np.mean(x ** 2))
    return np.sum(l1 * d1 + l2 * d2) / np.sum(l1 + l2)


def qcv(vis, ir, fused):
    return _per_channel(_qcv, vis, ir, fused)


FUNCTIONS = {"AG": ag, "CE": ce, "EI": ei, "EN": en, "MI": mi, "PSNR": psnr, "Qabf": qabf, "Qcb": qcb, "Qcv": qcv,
             "RMSE": rmse, "SF": sf, "SSIM": ssim, "SD": sd}


def all_metrics(vis, ir, fused) -> dict[str, float]:
    return {name: float(fn(vis, ir, fused)) for name, fn in FUNCTIONS.items()}
