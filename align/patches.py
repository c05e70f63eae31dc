"""The patch grid and per-patch statistics.

Patches are ``P x P`` windows with top-left corners at ``range(0, H - P + 1, S)`` x
``range(0, W - P + 1, S)`` in row-major order, as the paper's released script cuts them.
"""

from __future__ import annotations

import numpy as np


def grid(height: int, width: int, patch: int, stride: int) -> np.ndarray:
    """Top-left corners (y, x) of every patch of an image, shape (n, 2) int32, row-major."""
    ys = np.arange(0, height - patch + 1, stride, dtype=np.int32)
    xs = np.arange(0, width - patch + 1, stride, dtype=np.int32)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def extract(image: np.ndarray, origins: np.ndarray, patch: int) -> np.ndarray:
    """Cut patches out of ``image`` (H, W) or (H, W, C) uint8: returns (n, C, P, P), C = 1 for 2-D."""
    if image.ndim == 2:
        image = image[:, :, None]
    out = np.empty((len(origins), image.shape[2], patch, patch), dtype=image.dtype)
    for i, (y, x) in enumerate(origins):
        out[i] = image[y:y + patch, x:x + patch].transpose(2, 0, 1)
    return out


#: CDDFuse's ``is_low_contrast`` (skimage's): a patch whose (p90 - p10) / p90 of intensity is
#: below this is dropped by ``--drop-low-contrast``.
LOW_CONTRAST = 0.1


def _low(images: np.ndarray) -> np.ndarray:
    """Per image of (n, H, W) float32: ``(p90 - p10) / p90 < 0.1`` with numpy's linear
    percentiles, as their function computes it (a black image gives 0/0 = NaN: not low)."""
    limits = np.percentile(images.reshape(len(images), -1), [10, 90], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (limits[1] - limits[0]) / limits[1]
    return ratio < LOW_CONTRAST


def low_contrast(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Which patches CDDFuse's data preparation drops: either the visible luma (their ``rgb2y``
    of float32 RGB / 255) or the infrared (/ 255) is low contrast. ``vis`` (n, 3, P, P) and
    ``ir`` (n, 1, P, P) uint8; returns (n,) bool."""
    x = vis.astype(np.float32) / 255.
    y = x[:, 0] * 0.299 + x[:, 1] * 0.587 + x[:, 2] * 0.114
    return _low(y) | _low(ir[:, 0].astype(np.float32) / 255.)


def luma_stats(patches: np.ndarray) -> np.ndarray:
    """Each patch's luma descriptor: the mean and the (population) standard deviation of
    Y = 0.299 R + 0.587 G + 0.114 B over its pixels, (n, 3, P, P) uint8 -> (n, 2) float64, 0-255."""
    if not len(patches):
        return np.zeros((0, 2))
    y = np.einsum("c,ncij->nij", np.array([0.299, 0.587, 0.114]), patches.astype(np.float64))
    flat = y.reshape(len(y), -1)
    return np.stack([flat.mean(axis=1), flat.std(axis=1)], axis=1)


def channel_means(patches: np.ndarray) -> np.ndarray:
    """Mean of each channel of each patch: (n, C, P, P) uint8 -> (n, C) float64, 0-255 scale."""
    n, c, h, w = patches.shape
    return patches.reshape(n, c, h * w).sum(axis=2, dtype=np.int64) / float(h * w)

