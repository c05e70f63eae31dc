"""What the metric protocols share: reading an image as it is stored, Sobel responses, Gaussian
windows, direct separable filtering, FFT lengths, and running torch safely in a forked process."""

from __future__ import annotations

import os

import numpy as np
import torch

from crossfuse.errors import EvalError, ImageError
from crossfuse.imageio import load_image


def read_stored(path: str) -> np.ndarray:
    """An image as its file stores it, as MATLAB's ``imread`` returns it: (H, W) for a gray image
    (with or without alpha), (H, W, 3) for a colour one (alpha dropped), uint8. Refuses anything but 8-bit gray or RGB with an error
    naming the file."""
    import fsspec

    try:
        with fsspec.open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise EvalError(f"cannot read {path} ({exc}).") from exc
    try:
        im = load_image(data, url=path)
    except ImageError as exc:
        raise EvalError(str(exc)) from exc  # the message names the file and what to do
    with im:
        if im.mode in ("L", "LA"):  # imread gives a gray image with alpha as the gray image alone
            return np.asarray(im.convert("L") if im.mode == "LA" else im, dtype=np.uint8)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


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


def sobel(stack: np.ndarray, *, pad: str) -> tuple[np.ndarray, np.ndarray]:
    """Sobel responses of each image (float64, (..., H, W)), same size: the correlations with
    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` (dx, left to right) and with its transpose (dy, top to
    bottom), as two separable passes. ``pad``: "edge" (MATLAB imfilter's 'replicate') or
    "constant" (zeros, filter2's and conv2's 'same'). Exact for integer-valued images."""
    p = np.pad(stack, [(0, 0)] * (stack.ndim - 2) + [(1, 1), (1, 1)], mode=pad)
    across = p[..., 2:] - p[..., :-2]                 # (H + 2, W): right minus left
    dx = across[..., :-2, :] + 2 * across[..., 1:-1, :] + across[..., 2:, :]
    smooth = p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]
    dy = smooth[..., 2:, :] - smooth[..., :-2, :]     # bottom minus top
    return dx, dy


def conv2_sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``conv2(img, h3, 'same')`` and ``conv2(img, h1, 'same')`` of ``analysis_Qabf.m``:
    h3 = [-1 0 1; -2 0 2; -1 0 1], h1 = [1 2 1; 0 0 0; -1 -2 -1], zeros outside. A convolution
    flips the kernel, so Sx is left minus right and Sy bottom minus top. Exact for integer-valued
    images."""
    p = np.pad(img, 1)
    rows = p[:-2] + 2 * p[1:-1] + p[2:]          # vertical [1, 2, 1]
    cols = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # horizontal [1, 2, 1]
    return rows[:, :-2] - rows[:, 2:], cols[2:] - cols[:-2]


def strength_angle(sx: np.ndarray, sy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Xydeas-Petrovic edge strength ``sqrt(Sx^2 + Sy^2)`` and orientation ``atan(Sy / Sx)``, pi/2
    where Sx == 0 (as ``analysis_Qabf.m`` and CDDFuse's port of it write them)."""
    zero = sx == 0
    angle = np.where(zero, 1.0, sx)
    np.divide(sy, angle, out=angle)
    np.arctan(angle, out=angle)
    np.copyto(angle, np.pi / 2, where=zero)
    strength = sx * sx
    strength += sy * sy
    return np.sqrt(strength), angle


def edge_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Q_XF per pixel: Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (A - Da))), Tg = 0.9994,
    kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8; G = g_F/g_X where g_X > g_F, g_X/g_F where
    g_X < g_F and **g_F** where they are equal (the MATLAB code's quirk), A = 1 - |a_X - a_F| / (pi/2).
    The same operations in the same order as written, in place (one division for G: the smaller
    over the larger)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        qg = np.minimum(g_src, g_f)
        qg /= np.maximum(g_src, g_f)
    np.copyto(qg, g_f, where=g_src == g_f)
    qg -= 0.5
    qg *= -15
    np.exp(qg, out=qg)
    qg += 1
    np.divide(0.9994, qg, out=qg)
    qa = np.subtract(a_src, a_f)
    np.abs(qa, out=qa)
    qa /= np.pi / 2
    np.subtract(1, qa, out=qa)
    qa -= 0.8
    qa *= -22
    np.exp(qa, out=qa)
    qa += 1
    np.divide(0.9879, qa, out=qa)
    qg *= qa
    return qg


def gaussian_window(n: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB's ``fspecial('gaussian', n, sigma)``, normalised (no entry of the 2-D
    window falls below eps * max for the sizes the protocols use, so the 2-D window is exactly
    this outer product)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


#: Output rows filtered at a time: a block of the widest images scored (~640 columns) and its
#: window's rows stay in a 1-2 MiB cache (measured fastest of 32, 64, 96 and 128 rows, and of
#: whole images).
BLOCK_ROWS = 64


def filter_rows(image: torch.Tensor, taps: list[float], top: int, out: torch.Tensor, buffer: torch.Tensor,
                step: int = 1) -> torch.Tensor:
    """Output rows ``top`` .. ``top + len(out)`` of :func:`filter_valid`, written into ``out``
    (``buffer``: scratch of at least ``len(out)`` rows of the image's width)."""
    n, rows, out_w = len(taps), out.shape[0], out.shape[1]
    span_h, span_w = (rows - 1) * step + 1, (out_w - 1) * step + 1
    band = image[top * step: top * step + span_h + n - 1]
    down = torch.mul(band[0:span_h:step], taps[0], out=buffer[:rows])  # along each column: rows k, k + step, ...
    for k in range(1, n):
        down.add_(band[k:k + span_h:step], alpha=taps[k])
    across = torch.mul(down[:, 0:span_w:step], taps[0], out=out)  # then along each row
    for k in range(1, n):
        across.add_(down[:, k:k + span_w:step], alpha=taps[k])
    return across


def valid_shape(shape: tuple[int, int], n: int, step: int = 1) -> tuple[int, int]:
    """The size of a 'valid' filtering by an n x n window of an image of ``shape``, keeping every
    ``step``-th output; (0, 0) where the image is smaller than the window."""
    h, w = (max(0, (side - n) // step + 1) for side in shape)
    return (h, w) if h and w else (0, 0)


def filter_valid(image: torch.Tensor, win: np.ndarray, step: int = 1) -> torch.Tensor:
    """'valid' filtering of one (H, W) float64 image by the symmetric window ``outer(win, win)``
    (correlation and convolution agree, as in MATLAB's ``filter2``), keeping every ``step``-th
    output along each axis: down the columns first, then along the rows, each a sum of
    ``len(win)`` shifted (strided) views weighted by the taps, in blocks of :data:`BLOCK_ROWS`
    output rows (:func:`filter_rows`). Empty where the image is smaller than the window."""
    taps = [float(v) for v in win]
    out = torch.empty(valid_shape(tuple(image.shape), len(taps), step), dtype=image.dtype)
    buffer = torch.empty((min(out.shape[0], BLOCK_ROWS), image.shape[1]), dtype=image.dtype)
    for top in range(0, out.shape[0], BLOCK_ROWS):
        filter_rows(image, taps, top, out[top:top + BLOCK_ROWS], buffer, step)
    return out


def fast_length(n: int) -> int:
    """The smallest 5-smooth number >= n (FFTs of such lengths are fast); 1 for n < 1 (an empty
    axis: 0 is divisible by every prime, so the search below would never end)."""
    if n < 1:
        return 1
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def torch_fork_safe() -> None:
    """Call before a metric's torch work. torch's CPU thread pool does not survive ``fork``: a
    forked process (a ``multiprocessing`` or ``ProcessPoolExecutor`` worker on Linux) that runs
    torch on several threads after its parent did can hang for ever. In a forked process this
    sets torch to one thread, once, as torch's DataLoader workers and ``crossfuse eval``'s do;
    elsewhere it does nothing."""
    global _forked
    if _forked:
        _forked = False
        import torch

        torch.set_num_threads(1)
