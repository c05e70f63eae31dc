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

import functools
from collections.abc import Callable

import numpy as np
import torch

from crossfuse.errors import EvalError
from crossfuse.fusion.metrics.common import (fast_length, gaussian_window, read_stored, rgb2gray, sobel,
                                             torch_fork_safe)

#: crossfuse's names, in VIFB's order (its function names: Avg_gradient, Cross_entropy,
#: Edge_intensity, Entropy, Mutinf, Psnr, Qabf, Qcb, Qcv, Rmse, Spatial_frequency, Ssim, Variance).
FUNCTIONS = {"AG": "Avg_gradient", "CE": "Cross_entropy", "EI": "Edge_intensity", "EN": "Entropy",
             "MI": "Mutinf", "PSNR": "Psnr", "Qabf": "Qabf", "Qcb": "Qcb", "Qcv": "Qcv", "RMSE": "Rmse",
             "SF": "Spatial_frequency", "SSIM": "Ssim", "SD": "Variance"}
NAMES = tuple(FUNCTIONS)

def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


Triplet = tuple[np.ndarray, np.ndarray, np.ndarray]


def _triplets(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray, *, double_sources: bool = False) -> list[Triplet]:
    """VIFB's per-channel dispatch (see the module docstring): the (visible, infrared, fused)
    images each value is computed on, one triplet per channel of the fused image (one of whole
    images when it is gray). ``fused`` becomes double first; ``double_sources``: so do the
    sources (Rmse, Psnr and Qcb do; the others keep them uint8, which matters where ``rgb2gray``
    rounds). A gray visible image with a colour fused one fails, as in VIFB's code."""
    fused = fused.astype(np.float64)
    if double_sources:
        vis, ir = vis.astype(np.float64), ir.astype(np.float64)
    if _channels(fused) == 1:
        return [(vis, ir, fused)]
    if _channels(vis) != fused.shape[2]:
        raise EvalError(f"VIFB scores a colour fused image channel by channel against a colour visible image; this "
                        f"visible image has {_channels(vis)} channel(s) (VIFB's MATLAB code fails here too).")
    return [(vis[..., k], ir if _channels(ir) == 1 else ir[..., k], fused[..., k]) for k in range(fused.shape[2])]


def _dispatch(single: Callable[[np.ndarray, np.ndarray, np.ndarray], float], vis: np.ndarray, ir: np.ndarray,
              fused: np.ndarray, *, double_sources: bool = False) -> float:
    """``single`` on each of :func:`_triplets`, averaged over channels."""
    return float(np.mean([single(a, b, f) for a, b, f in _triplets(vis, ir, fused, double_sources=double_sources)]))


def _bands(fused: np.ndarray) -> np.ndarray:
    """The fused image as double, one band per channel: (channels, H, W)."""
    f = fused.astype(np.float64)
    return f[None] if f.ndim == 2 else np.moveaxis(f, 2, 0)


def _histogram(gray: np.ndarray) -> np.ndarray:
    """Probabilities of the 256 integer levels of a gray image (values floored)."""
    counts = np.bincount(np.floor(gray).astype(np.int64).ravel(), minlength=256)[:256]
    return counts / float(gray.size)


def ag(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Avg_gradient: per channel of the fused image, MATLAB ``gradient`` (central differences,
    one-sided at the borders), ``sum(sqrt((dx^2 + dy^2) / 2)) / ((H - 1)(W - 1))`` (the sum is
    over all H x W pixels, the divisor is not), averaged over channels. Sources unused."""
    values = []
    for band in _bands(fused):
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


def ce(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Cross_entropy: the mean of the visible's and the infrared's "cross entropy" with the fused
    image, which is their relative entropy (KL, bits) over levels present in both."""
    return _dispatch(lambda a, b, f: (_cross_entropy(a, f) + _cross_entropy(b, f)) / 2.0, vis, ir, fused)


def ei(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Edge_intensity: the mean over pixels and channels of the Sobel gradient magnitude of the
    fused image, filtered with ``imfilter(..., 'replicate')``. Sources unused."""
    dx, dy = sobel(_bands(fused), pad="edge")
    return float(np.mean([np.mean(band) for band in np.sqrt(dx * dx + dy * dy)]))


def en(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
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


def mi(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Mutinf: MI(visible, fused) + MI(infrared, fused), in nats, each image first min-max
    rescaled to 0-255 (:func:`_mutinf`): a sum, so up to twice one MI."""
    return _dispatch(lambda a, b, f: _mutinf(a, f) + _mutinf(b, f), vis, ir, fused)


def _vifb_mse(a: np.ndarray, b: np.ndarray) -> float:
    """VIFB's own "mse": ``sqrt(sum((a - b)^2)) / (H W)``, the root of the summed squares over
    the pixel count (not a mean square error: it shrinks with the image's size)."""
    a, b = rgb2gray(a), rgb2gray(b)
    return float(np.sqrt(np.sum((a - b) ** 2)) / a.size)


def psnr(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Psnr: ``20 log10(255 / sqrt(m))`` with m the mean of VIFB's "mse" (:func:`_vifb_mse`) of the
    fused image to each source: far above a true PSNR."""
    return _dispatch(lambda a, b, f: 20.0 * np.log10(255.0 / np.sqrt((_vifb_mse(a, f) + _vifb_mse(b, f)) / 2.0)),
                     vis, ir, fused, double_sources=True)


def rmse(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Rmse: the mean of VIFB's "mse" (:func:`_vifb_mse`) of the fused image to each source."""
    return _dispatch(lambda a, b, f: (_vifb_mse(a, f) + _vifb_mse(b, f)) / 2.0, vis, ir, fused,
                     double_sources=True)


def sf(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
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


def _valid(stack: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``filter2(w, image, 'valid')`` of each image of ``stack`` (n, H, W) for the separable
    window ``outer(g, g)``: two passes of 1-D windows times ``g``."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows = sliding_window_view(stack, len(g), axis=1) @ g   # (n, H - 10, W)
    return sliding_window_view(rows, len(g), axis=2) @ g    # (n, H - 10, W - 10)


def _ssim_map_mean(mu_x: np.ndarray, mu_f: np.ndarray, xx: np.ndarray, ff: np.ndarray, xf: np.ndarray) -> float:
    """The mean SSIM map, L = 255, from the windowed means of x, f, x^2, f^2 and x f."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    sig_x, sig_f, sig_xf = xx - mu_x * mu_x, ff - mu_f * mu_f, xf - mu_x * mu_f
    ssim_map = ((2 * mu_x * mu_f + c1) * (2 * sig_xf + c2)) / ((mu_x * mu_x + mu_f * mu_f + c1) * (sig_x + sig_f + c2))
    return float(np.mean(ssim_map))


def _ssim_pair(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """SSIM(a, f) + SSIM(b, f), each with an 11 x 11 Gaussian window (sigma 1.5), L = 255, over
    'valid' windows; the fused image's windowed moments computed once for both."""
    a, b, f = (rgb2gray(x).astype(np.float64) for x in (a, b, f))
    mu_a, mu_b, mu_f, aa, bb, ff, af, bf = _valid(np.stack([a, b, f, a * a, b * b, f * f, a * f, b * f]),
                                                    gaussian_window(11, 1.5))
    return _ssim_map_mean(mu_a, mu_f, aa, ff, af) + _ssim_map_mean(mu_b, mu_f, bb, ff, bf)


def ssim(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Ssim: SSIM(visible, fused) + SSIM(infrared, fused) (:func:`_ssim_pair`): a sum, up to 2."""
    return _dispatch(_ssim_pair, vis, ir, fused)


def sd(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Variance: despite its name a standard deviation, ``sqrt(mean((F - mean F)^2))``, per channel."""
    return _dispatch(lambda _a, _b, f: float(np.sqrt(np.mean((f - f.mean()) ** 2))), vis, ir, fused)


def _strength_angle(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q^AB/F's Sobel strength and angle of each image, as VIFB computes them with ``conv2(x, h,
    'same')`` (zero borders): a true convolution, so its x response is minus :func:`sobel`'s dx."""
    dx, dy = sobel(stack, pad="constant")
    sx, sy = -dx, dy
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1.0, sx)))
    return np.sqrt(sx ** 2 + sy ** 2), angle


def _qabf(strength: np.ndarray, angle: np.ndarray) -> float:
    """Xydeas-Petrovic Q^AB/F from the strengths and angles of (a, b, f). Quirk: where a source's
    gradient strength equals the fused one's, the relative strength is taken as the fused
    strength itself instead of 1."""
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    (ga, gb, gf), (aa, ab, af) = strength, angle

    def preservation(gs: np.ndarray, as_: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(gs > gf, gf / np.where(gs > gf, gs, 1.0),
                           np.where(gs == gf, gf, gs / np.where(gf == 0, 1.0, gf)))
        orient = 1 - np.abs(as_ - af) / (np.pi / 2)
        return tg / (1 + np.exp(kg * (rel - dg))) * (ta / (1 + np.exp(ka * (orient - da))))

    return float(np.sum(preservation(ga, aa) * ga + preservation(gb, ab) * gb) / np.sum(ga + gb))


def qabf(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qabf: Q^AB/F of the fused image against both sources (:func:`_qabf`), per channel, with
    Sobel responses by ``conv2(..., 'same')`` (zero borders), as VIFB's code has it. Quirks: a
    colour image goes gray unrounded (it is double by then), and every image is multiplied by
    255 once more (``255 * im2double`` of a double)."""
    triplets = _triplets(vis, ir, fused)
    strength, angle = _strength_angle(np.stack([255.0 * rgb2gray(x.astype(np.float64)) for t in triplets for x in t]))
    return float(np.mean([_qabf(strength[3 * k:3 * k + 3], angle[3 * k:3 * k + 3]) for k in range(len(triplets))]))


def _per_channel_only(name: str, *images: np.ndarray) -> None:
    """Qcb and Qcv never turn an image gray: VIFB's code fails on a gray fused image with colour
    sources (its 2-D filters get 3-D input), and so do these, saying so."""
    if any(x.ndim != 2 for x in images):
        raise EvalError(f"VIFB's {name} is computed per channel; a gray fused image with colour sources fails in its "
                        "MATLAB code too. Score a 3-channel fused image, or use --protocol cddfuse.")


def _normalized(name: str, triplets: list[Triplet]) -> np.ndarray:
    """Each image of each triplet after Z. Liu's ``normalize1`` (:func:`_normalize1`), stacked
    (3 per channel: a, b, f)."""
    _per_channel_only(name, *triplets[0])
    return np.stack([_normalize1(x) for triplet in triplets for x in triplet])


def _normalize1(x: np.ndarray) -> np.ndarray:
    """Z. Liu's ``normalize1``: min-max to 0-255, rounded half away from zero (an all-zero image
    stays as it is)."""
    x = x.astype(np.float64)
    hi, lo = x.max(), x.min()
    if hi == 0 and lo == 0:
        return x
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant image: NaN, as MATLAB's 0/0
        return np.floor((x - lo) / (hi - lo) * 255.0 + 0.5)


def _freqspace(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``freqspace([rows, cols], 'meshgrid')``: (u, v) grids, u along columns."""
    fx = (np.arange(cols) - cols // 2) * (2.0 / cols)
    fy = (np.arange(rows) - rows // 2) * (2.0 / rows)
    return np.meshgrid(fx, fy)


def _half_spectrum(response: np.ndarray) -> torch.Tensor:
    """A filter's frequency response laid out on ``freqspace``'s centred grid, as the half spectrum
    ``rfft2`` gives. The CSF responses depend on |u| and |v| only, so they are even in both
    frequencies and filtering a real image through real FFTs equals MATLAB's
    ``real(ifft2(ifftshift(fftshift(fft2(x)) .* response)))``."""
    cols = response.shape[1]
    return torch.from_numpy(np.ascontiguousarray(np.fft.ifftshift(response)[:, :cols // 2 + 1]))


def _csf(stack: np.ndarray, half: torch.Tensor) -> np.ndarray:
    """Each image of ``stack`` (n, H, W) filtered by the response whose :func:`_half_spectrum` is
    ``half`` (a circular filter, as MATLAB's FFTs make it)."""
    x = torch.from_numpy(stack)
    return torch.fft.irfft2(torch.fft.rfft2(x) * half, s=stack.shape[-2:]).numpy()


@functools.lru_cache(maxsize=4)
def _chen_blum_filters(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """For images of (rows, cols): Chen-Blum's contrast-sensitivity response (a difference of
    Gaussians in frequency, scaled by size / 30) as a :func:`_half_spectrum`, and the spectra of
    its two 31 x 31 Gaussians (sigma 2 and 4, unnormalised) zero-padded to a fast size of at
    least (rows + 30, cols + 30), so that filtering through them is linear, not circular."""
    u, v = _freqspace(rows, cols)
    r = np.sqrt((cols / 30 * u) ** 2 + (rows / 30 * v) ** 2)
    sd = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    x, y = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))
    padded = (fast_length(rows + 30), fast_length(cols + 30))

    def spectrum(sigma: float) -> torch.Tensor:
        g = np.exp(-(x * x + y * y) / (2 * sigma * sigma)) / (2 * np.pi * sigma * sigma)
        return torch.fft.rfft2(torch.from_numpy(g), s=padded)

    return _half_spectrum(sd), spectrum(2.0), spectrum(4.0), padded


def _local_contrast(stack: np.ndarray, near: torch.Tensor, far: torch.Tensor, padded: tuple[int, int]) -> np.ndarray:
    """``|filter2(G1, x, 'same') / filter2(G2, x, 'same') - 1|`` of each image (zero borders),
    through FFTs of the ``padded`` size, then Chen-Blum's masking ``C^3 / (C^2 + 1e-4)``."""
    h, w = stack.shape[-2:]
    spectrum = torch.fft.rfft2(torch.from_numpy(stack), s=padded)
    g1 = torch.fft.irfft2(spectrum * near, s=padded)[..., 15:15 + h, 15:15 + w]
    g2 = torch.fft.irfft2(spectrum * far, s=padded)[..., 15:15 + h, 15:15 + w]
    c = (g1 / g2 - 1).abs().numpy()
    c2 = c * c
    return c2 * c / (c2 + 0.0001)


def _chen_blum(c1: np.ndarray, c2: np.ndarray, cf: np.ndarray) -> float:
    """Contrast preservation of each source in the fused image (the smaller contrast over the
    larger), weighted by each source's saliency (its contrast squared), averaged over pixels."""
    q1 = np.minimum(c1, cf) / np.maximum(c1, cf)
    q2 = np.minimum(c2, cf) / np.maximum(c2, cf)
    s1, s2 = c1 * c1, c2 * c2
    return float(np.mean(s1 / (s1 + s2) * q1 + s2 / (s1 + s2) * q2))


def qcb(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qcb (Chen-Blum), per channel: images min-max rescaled and rounded (:func:`_normalize1`),
    contrast-sensitivity filtered, their local contrast from two Gaussians
    (:func:`_chen_blum_filters`, :func:`_local_contrast`) and its preservation
    (:func:`_chen_blum`). Sources as doubles; no gray conversion (with a gray fused image and
    colour sources VIFB's code fails, and so does this). All channels' images go through the
    FFTs together."""
    torch_fork_safe()
    triplets = _triplets(vis, ir, fused, double_sources=True)
    stack = _normalized("Qcb", triplets)
    csf, near, far, padded = _chen_blum_filters(*stack.shape[-2:])
    contrast = _local_contrast(_csf(stack, csf), near, far, padded)
    return float(np.mean([_chen_blum(*contrast[3 * k:3 * k + 3]) for k in range(len(triplets))]))


def _block_sums(stack: np.ndarray, size: int) -> np.ndarray:
    """MATLAB ``blkproc(x, [size size], @(b) sum(b(:)))`` of each image of ``stack`` (n, H, W):
    x zero-padded to whole blocks, one sum per block, (n, rows of blocks, cols of blocks)."""
    n, h, w = stack.shape
    padded = np.zeros((n, -(-h // size) * size, -(-w // size) * size), dtype=stack.dtype)
    padded[:, :h, :w] = stack
    return padded.reshape(n, padded.shape[1] // size, size, padded.shape[2] // size, size).sum(axis=(2, 4))


@functools.lru_cache(maxsize=4)
def _mannos_sakrison(rows: int, cols: int) -> torch.Tensor:
    """Chen-Varshney's CSF, Mannos-Sakrison's filter with frequencies scaled by size / 8, as a
    :func:`_half_spectrum`."""
    u, v = _freqspace(rows, cols)
    r = np.sqrt((cols / 8 * u) ** 2 + (rows / 8 * v) ** 2)
    return _half_spectrum(2.6 * (0.0192 + 0.144 * r) * np.exp(-(0.144 * r) ** 1.1))


def qcv(*, vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qcv (Chen-Varshney), per channel: per 16 x 16 block (blkproc, zero-padded), each source's
    saliency (the sum of its Sobel strength to the 5th power, zero borders) weights the mean
    squared difference to the fused image after a CSF filter (:func:`_mannos_sakrison`). Lower is
    better. Images min-max rescaled and rounded first (:func:`_normalize1`); no gray conversion.
    All channels' images go through the filters together."""
    torch_fork_safe()
    triplets = _triplets(vis, ir, fused)
    images = _normalized("Qcv", triplets).reshape(len(triplets), 3, *triplets[0][2].shape)
    sources, fused_ = images[:, :2], images[:, 2:]                      # (channels, 2, H, W), (channels, 1, H, W)
    dx, dy = sobel(sources.reshape(-1, *sources.shape[2:]), pad="constant")
    strength = np.sqrt(dx * dx + dy * dy)
    square = strength * strength
    saliency = _block_sums(square * square * strength, 16)
    diffs = (sources - fused_).reshape(-1, *sources.shape[2:])
    error = _block_sums(_csf(diffs, _mannos_sakrison(*diffs.shape[-2:])) ** 2, 16) / 256.0
    values = [np.sum(saliency[k] * error[k] + saliency[k + 1] * error[k + 1]) / np.sum(saliency[k] + saliency[k + 1])
              for k in range(0, len(saliency), 2)]
    return float(np.mean(values))


FUNCTIONS_BY_NAME = {"AG": ag, "CE": ce, "EI": ei, "EN": en, "MI": mi, "PSNR": psnr, "Qabf": qabf, "Qcb": qcb,
                     "Qcv": qcv, "RMSE": rmse, "SF": sf, "SSIM": ssim, "SD": sd}


def all_metrics(*, ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """Every VIFB metric crossfuse implements, by crossfuse name (keyword-only: a swap would run
    and give wrong numbers)."""
    return {name: FUNCTIONS_BY_NAME[name](vis=vis, ir=ir, fused=fused) for name in NAMES}


def read(path: str) -> np.ndarray:
    """An image as VIFB's ``imread`` sees it."""
    return read_stored(path)
