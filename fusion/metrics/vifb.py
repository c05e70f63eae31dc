"""VIFB's metrics (Zhang et al., CVPRW 2020), as its MATLAB functions ``metrics/metrics<Name>.m``
compute them, quirks included (each docstring names its quirk).

Images are read as stored (:func:`~crossfuse.fusion.metrics.common.read_stored`): VIFB's sources
are 3-channel JPEGs, infrared included. VIFB's dispatch, shared by most metrics: when the fused
image has one channel, the metric sees the sources whole (and turns a colour one gray with
MATLAB's ``rgb2gray`` where it needs to); when it has three, the metric is computed per channel,
channel k of the fused image against channel k of each source (or the source itself where it
has one channel), and the three values are averaged.

Arguments: ``vis``, ``ir``, ``fused`` as :func:`read_stored` returns them (uint8, (H, W) or
(H, W, 3)).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crossfuse.errors import EvalError
from crossfuse.fusion.metrics.common import SOBEL, correlate3, read_stored

#: crossfuse's names, in VIFB's order (its function names: Avg_gradient, Cross_entropy,
#: Edge_intensity, Entropy, Mutinf, Psnr, Qabf, Qcb, Qcv, Rmse, Spatial_frequency, Ssim, Variance).
FUNCTIONS = {"AG": "Avg_gradient", "CE": "Cross_entropy", "EI": "Edge_intensity", "EN": "Entropy",
             "MI": "Mutinf", "PSNR": "Psnr", "Qabf": "Qabf", "Qcb": "Qcb", "Qcv": "Qcv", "RMSE": "Rmse",
             "SF": "Spatial_frequency", "SSIM": "Ssim", "SD": "Variance"}
NAMES = tuple(FUNCTIONS)

#: MATLAB rgb2gray's weights: the first row of the inverse of the NTSC YIQ matrix.
_GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]


def rgb2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2gray``: a weighted sum of R, G, B (``_GRAY``); for a uint8 image rounded
    half away from zero back to uint8 (``imlincomb``), for a double one left unrounded. A 2-D
    image is returned as it is."""
    if image.ndim == 2:
        return image
    gray = image[..., 0] * _GRAY[0] + image[..., 1] * _GRAY[1] + image[..., 2] * _GRAY[2]
    if image.dtype == np.uint8:
        return np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)
    return gray


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def _dispatch(single: Callable[[np.ndarray, np.ndarray, np.ndarray], float], vis: np.ndarray, ir: np.ndarray,
              fused: np.ndarray, *, double_sources: bool = False) -> float:
    """VIFB's per-channel dispatch (see the module docstring). ``fused`` becomes double first;
    ``double_sources``: so do the sources (Rmse and Psnr do; the others keep them uint8, which
    matters where ``rgb2gray`` rounds)."""
    fused = fused.astype(np.float64)
    if double_sources:
        vis, ir = vis.astype(np.float64), ir.astype(np.float64)
    if _channels(fused) == 1:
        return float(single(vis, ir, fused))
    values = [single(vis[..., k], ir if _channels(ir) == 1 else ir[..., k], fused[..., k])
              for k in range(fused.shape[2])]
    return float(np.mean(values))


def _histogram(gray: np.ndarray) -> np.ndarray:
    """Probabilities of the 256 integer levels of a gray image (values floored)."""
    counts = np.bincount(np.floor(gray).astype(np.int64).ravel(), minlength=256)[:256]
    return counts / float(gray.size)


def ag(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Avg_gradient: per channel of the fused image, MATLAB ``gradient`` (central differences,
    one-sided at the borders), ``sum(sqrt((dx^2 + dy^2) / 2)) / ((H - 1)(W - 1))`` (the sum is
    over all H x W pixels, the divisor is not), averaged over channels. Sources unused."""
    f = fused.astype(np.float64)
    bands = [f] if f.ndim == 2 else [f[..., k] for k in range(f.shape[2])]
    values = []
    for band in bands:
        dy, dx = np.gradient(band)
        r, c = band.shape
        values.append(np.sum(np.sqrt((dx ** 2 + dy ** 2) / 2.0)) / ((r - 1) * (c - 1)))
    return float(np.mean(values))


def _cross_entropy(source: np.ndarray, fused: np.ndarray) -> float:
    """sum over levels where both are non-zero of P_src log2(P_src / P_fused): the relative
    entropy, skipping levels the fused image lacks."""
    p1, p2 = _histogram(rgb2gray(source).astype(np.float64)), _histogram(rgb2gray(fused).astype(np.float64))
    both = (p1 != 0) & (p2 != 0)
    return float(np.sum(p1[both] * np.log2(p1[both] / p2[both])))


def ce(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Cross_entropy: the mean of the visible's and the infrared's "cross entropy" with the fused
    image, which is their relative entropy (KL, bits) over levels present in both."""
    return _dispatch(lambda a, b, f: (_cross_entropy(a, f) + _cross_entropy(b, f)) / 2.0, vis, ir, fused)


def ei(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Edge_intensity: the mean over pixels and channels of the Sobel gradient magnitude of the
    fused image, filtered with ``imfilter(..., 'replicate')``. Sources unused."""
    f = fused.astype(np.float64)
    bands = [f] if f.ndim == 2 else [f[..., k] for k in range(f.shape[2])]
    values = [np.mean(np.hypot(correlate3(b, SOBEL, pad="edge"), correlate3(b, SOBEL.T, pad="edge"))) for b in bands]
    return float(np.mean(values))


def en(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Entropy: Shannon entropy (bits) of the fused image's 256-level histogram, per channel."""
    def single(_a: np.ndarray, _b: np.ndarray, f: np.ndarray) -> float:
        p = _histogram(f)
        p = p[p != 0]
        return float(-np.sum(p * np.log2(p)))

    return _dispatch(single, vis, ir, fused)


def _mutinf(a: np.ndarray, b: np.ndarray) -> float:
    """MI (nats) of two images after each is min-max rescaled to 0..255 and rounded as MATLAB's
    ``int16`` does (half away from zero); a constant image becomes all zeros."""
    def levels(x: np.ndarray) -> np.ndarray:
        x = rgb2gray(x).astype(np.float64)
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo) if hi != lo else np.zeros_like(x)
        return np.floor(x * 255.0 + 0.5).astype(np.int64)

    la, lb = levels(a), levels(b)
    joint = np.bincount((la * 256 + lb).ravel(), minlength=256 * 256).astype(np.float64)

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts != 0] / counts.sum()
        return float(np.sum(-p * np.log(p)))

    return entropy(np.bincount(la.ravel(), minlength=256)) + entropy(np.bincount(lb.ravel(), minlength=256)) \
        - entropy(joint)


def mi(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Mutinf: MI(visible, fused) + MI(infrared, fused), in nats, each image first min-max
    rescaled to 0-255 (:func:`_mutinf`): a sum, so up to twice one MI."""
    return _dispatch(lambda a, b, f: _mutinf(a, f) + _mutinf(b, f), vis, ir, fused)


def _vifb_mse(a: np.ndarray, b: np.ndarray) -> float:
    """VIFB's own "mse": ``sqrt(sum((a - b)^2)) / (H W)``, the root of the summed squares over
    the pixel count (not a mean square error: it shrinks with the image's size)."""
    a, b = rgb2gray(a), rgb2gray(b)
    return float(np.sqrt(np.sum((a - b) ** 2)) / a.size)


def psnr(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Psnr: ``20 log10(255 / sqrt(m))`` with m the mean of VIFB's "mse" (:func:`_vifb_mse`) of the
    fused image to each source: far above a true PSNR."""
    return _dispatch(lambda a, b, f: 20.0 * np.log10(255.0 / np.sqrt((_vifb_mse(a, f) + _vifb_mse(b, f)) / 2.0)),
                     vis, ir, fused, double_sources=True)


def rmse(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Rmse: the mean of VIFB's "mse" (:func:`_vifb_mse`) of the fused image to each source."""
    return _dispatch(lambda a, b, f: (_vifb_mse(a, f) + _vifb_mse(b, f)) / 2.0, vis, ir, fused,
                     double_sources=True)


def sf(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Spatial_frequency: ``sqrt(RF + CF)``, RF and CF the summed squared horizontal and vertical
    differences over H x W. Quirk: the code sizes the image with ``[m, n] = size(fused)``, which for a
    colour image gives n = 3W and indexes it as the three channels side by side, so one image of
    H x 3W is scored, differences across the channels' seams included. Sources unused."""
    f = fused.astype(np.float64)
    if f.ndim == 3:
        f = np.concatenate([f[..., k] for k in range(f.shape[2])], axis=1)
    rf = np.sum(np.diff(f, axis=1) ** 2) / f.size
    cf = np.sum(np.diff(f, axis=0) ** 2) / f.size
    return float(np.sqrt(rf + cf))


def _gaussian11() -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', 11, 1.5)`` as a normalised 1-D factor (it is separable)."""
    x = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(x ** 2) / (2 * 1.5 ** 2))
    return g / g.sum()


def _valid(stack: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``filter2(w, image, 'valid')`` of each image of ``stack`` (n, H, W) for the separable
    window ``outer(g, g)``: two passes of 1-D windows times ``g``."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows = sliding_window_view(stack, len(g), axis=1) @ g   # (n, H - 10, W)
    return sliding_window_view(rows, len(g), axis=2) @ g    # (n, H - 10, W - 10)


def _ssim(a: np.ndarray, f: np.ndarray) -> float:
    """SSIM with an 11 x 11 Gaussian window (sigma 1.5), L = 255, over 'valid' windows."""
    a, f = rgb2gray(a).astype(np.float64), rgb2gray(f).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ua, ub, aa, ff, af = _valid(np.stack([a, f, a * a, f * f, a * f]), _gaussian11())
    siga, sigb, sigab = aa - ua * ua, ff - ub * ub, af - ua * ub
    ssim_map = ((2 * ua * ub + c1) * (2 * sigab + c2)) / ((ua * ua + ub * ub + c1) * (siga + sigb + c2))
    return float(np.mean(ssim_map))


def ssim(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Ssim: SSIM(visible, fused) + SSIM(infrared, fused) (:func:`_ssim`): a sum, up to 2."""
    return _dispatch(lambda a, b, f: _ssim(a, f) + _ssim(b, f), vis, ir, fused)


def sd(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Variance: despite its name a standard deviation, ``sqrt(mean((F - mean F)^2))``, per channel."""
    return _dispatch(lambda _a, _b, f: float(np.sqrt(np.mean((f - f.mean()) ** 2))), vis, ir, fused)


def _conv_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(image, kernel, 'same')`` for a 3 x 3 kernel (zeros outside the image)."""
    return correlate3(image, kernel[::-1, ::-1], pad="constant")


def _qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Xydeas-Petrovic Q^AB/F with Sobel responses by ``conv2(..., 'same')`` (zero borders), as
    VIFB's code has it. Quirks: a colour image goes gray unrounded (it is double by then), every
    image is multiplied by 255 once more (``255 * im2double`` of a double), and where a source's
    gradient strength equals the fused one's the relative strength is taken as the fused
    strength itself instead of 1."""
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    h1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
    h3 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])

    def strength_angle(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = 255.0 * rgb2gray(x.astype(np.float64))
        sx, sy = _conv_same(x, h3), _conv_same(x, h1)
        with np.errstate(divide="ignore", invalid="ignore"):
            angle = np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1.0, sx)))
        return np.sqrt(sx ** 2 + sy ** 2), angle

    ga, aa = strength_angle(a)
    gb, ab = strength_angle(b)
    gf, af = strength_angle(f)

    def preservation(gs: np.ndarray, as_: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(gs > gf, gf / np.where(gs > gf, gs, 1.0),
                           np.where(gs == gf, gf, gs / np.where(gf == 0, 1.0, gf)))
        orient = 1 - np.abs(as_ - af) / (np.pi / 2)
        return tg / (1 + np.exp(kg * (rel - dg))) * (ta / (1 + np.exp(ka * (orient - da))))

    return float(np.sum(preservation(ga, aa) * ga + preservation(gb, ab) * gb) / np.sum(ga + gb))


def qabf(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qabf: Q^AB/F of the fused image against both sources (:func:`_qabf`), per channel."""
    return _dispatch(_qabf, vis, ir, fused)


def _per_channel_only(name: str, *images: np.ndarray) -> None:
    """Qcb and Qcv never turn an image gray: VIFB's code fails on a gray fused image with colour
    sources (its 2-D filters get 3-D input), and so do these, saying so."""
    if any(x.ndim != 2 for x in images):
        raise EvalError(f"VIFB's {name} is computed per channel; a gray fused image with colour sources fails in its "
                        "MATLAB code too. Score a 3-channel fused image, or use --protocol cddfuse.")


def _normalize1(x: np.ndarray) -> np.ndarray:
    """Z. Liu's ``normalize1``: min-max to 0-255, rounded half away from zero (an all-zero image
    stays as it is)."""
    x = x.astype(np.float64)
    hi, lo = x.max(), x.min()
    if hi == 0 and lo == 0:
        return x
    return np.floor((x - lo) / (hi - lo) * 255.0 + 0.5)


def _freqspace(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``freqspace([rows, cols], 'meshgrid')``: (u, v) grids, u along columns."""
    fx = (np.arange(cols) - cols // 2) * (2.0 / cols)
    fy = (np.arange(rows) - rows // 2) * (2.0 / rows)
    return np.meshgrid(fx, fy)


def _csf(image: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``ifft2(ifftshift(fftshift(fft2(image)) .* response))``: real, as MATLAB returns it for a
    conjugate-symmetric spectrum."""
    spectrum = np.fft.fftshift(np.fft.fft2(image)) * response
    return np.real(np.fft.ifft2(np.fft.ifftshift(spectrum)))


def _contrast_filters(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The spectra of Chen-Blum's two 31 x 31 Gaussians (sigma 2 and 4, unnormalised) for an image
    of ``shape``, zero-padded for a linear (not circular) filter, and the padded shape."""
    x, y = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))
    padded = (shape[0] + 30, shape[1] + 30)

    def spectrum(sigma: float) -> np.ndarray:
        g = np.exp(-(x * x + y * y) / (2 * sigma * sigma)) / (2 * np.pi * sigma * sigma)
        return np.fft.rfft2(g, padded)

    return spectrum(2.0), spectrum(4.0), padded


def _local_contrast(image: np.ndarray, filters: tuple[np.ndarray, np.ndarray, tuple[int, int]]) -> np.ndarray:
    """``|filter2(G1, x, 'same') / filter2(G2, x, 'same') - 1|`` (zero borders), through FFTs,
    then Chen-Blum's masking ``C^3 / (C^2 + 1e-4)``."""
    g1, g2, padded = filters
    h, w = image.shape
    spectrum = np.fft.rfft2(image, padded)
    near = np.fft.irfft2(spectrum * g1, padded)[15:15 + h, 15:15 + w]
    far = np.fft.irfft2(spectrum * g2, padded)[15:15 + h, 15:15 + w]
    c = np.abs(near / far - 1)
    return c ** 3 / (c ** 2 + 0.0001)


def _qcb(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Chen-Blum: contrast-sensitivity filtering (a difference of Gaussians in frequency, scaled by
    size / 30), local contrast from 31 x 31 Gaussians of sigma 2 and 4 (unnormalised, zero
    borders), contrast preservation weighted by each source's saliency, averaged over pixels.
    Images min-max rescaled and rounded first (:func:`_normalize1`)."""
    _per_channel_only("Qcb", a, b, f)
    a, b, f = (_normalize1(x) for x in (a, b, f))
    rows, cols = a.shape
    u, v = _freqspace(rows, cols)
    r = np.sqrt((cols / 30 * u) ** 2 + (rows / 30 * v) ** 2)
    sd = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    filters = _contrast_filters(a.shape)
    c1, c2, cf = (_local_contrast(_csf(x, sd), filters) for x in (a, b, f))
    q1 = np.where(c1 < cf, c1 / cf, cf / c1)
    q2 = np.where(c2 < cf, c2 / cf, cf / c2)
    s1, s2 = c1 * c1, c2 * c2
    return float(np.mean(s1 / (s1 + s2) * q1 + s2 / (s1 + s2) * q2))


def qcb(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qcb (Chen-Blum, :func:`_qcb`), per channel; sources as doubles (no gray conversion: with a
    gray fused image and colour sources VIFB's code fails, and so does this)."""
    return _dispatch(_qcb, vis, ir, fused, double_sources=True)


def _blocks(x: np.ndarray, size: int) -> np.ndarray:
    """MATLAB ``blkproc(x, [size size], ...)`` blocks: x zero-padded to whole blocks, as
    (rows of blocks, cols of blocks, size, size)."""
    h, w = x.shape
    padded = np.zeros((-(-h // size) * size, -(-w // size) * size), dtype=x.dtype)
    padded[:h, :w] = x
    return padded.reshape(padded.shape[0] // size, size, padded.shape[1] // size, size).swapaxes(1, 2)


def _qcv(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Chen-Varshney: per 16 x 16 block (blkproc, zero-padded), each source's saliency (sum of its
    Sobel strength to the 5th power) weights the mean squared difference to the fused image after
    a Mannos-Sakrison CSF filter (frequencies scaled by size / 8). Lower is better. Images
    min-max rescaled and rounded first; no gray conversion."""
    _per_channel_only("Qcv", a, b, f)
    a, b, f = (_normalize1(x) for x in (a, b, f))
    flt1 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    flt2 = flt1.T

    def saliency(x: np.ndarray) -> np.ndarray:
        g = np.hypot(correlate3(x, flt1, pad="constant"), correlate3(x, flt2, pad="constant"))
        return np.sum(_blocks(g, 16) ** 5, axis=(2, 3))

    rows, cols = a.shape
    u, v = _freqspace(rows, cols)
    r = np.sqrt((cols / 8 * u) ** 2 + (rows / 8 * v) ** 2)
    theta = 2.6 * (0.0192 + 0.144 * r) * np.exp(-(0.144 * r) ** 1.1)
    s1, s2 = saliency(a), saliency(b)
    d1 = np.mean(_blocks(_csf(a - f, theta), 16) ** 2, axis=(2, 3))
    d2 = np.mean(_blocks(_csf(b - f, theta), 16) ** 2, axis=(2, 3))
    return float(np.sum(s1 * d1 + s2 * d2) / np.sum(s1 + s2))


def qcv(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qcv (Chen-Varshney, :func:`_qcv`), per channel."""
    return _dispatch(_qcv, vis, ir, fused)


FUNCTIONS_BY_NAME = {"AG": ag, "CE": ce, "EI": ei, "EN": en, "MI": mi, "PSNR": psnr, "Qabf": qabf, "Qcb": qcb,
                     "Qcv": qcv, "RMSE": rmse, "SF": sf, "SSIM": ssim, "SD": sd}


def all_metrics(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """Every VIFB metric crossfuse implements, by crossfuse name."""
    return {name: FUNCTIONS_BY_NAME[name](vis, ir, fused) for name in NAMES}


def read(path: str) -> np.ndarray:
    """An image as VIFB's ``imread`` sees it."""
    return read_stored(path)
