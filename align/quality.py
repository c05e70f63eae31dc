"""How well a selection matches its target, as numbers: per channel, the 1-D Wasserstein
distance W1 between the target's distribution of patch means and (a) the whole auxiliary pool,
(b) the selection as retrieved, (c) the selection after the gamma correction (0-255 units: how
far, on average, the mass of one distribution must move in intensity to become the other).

W1 of two empirical distributions is ``integral |F_a(x) - F_b(x)| dx`` over the merged sorted
sample values, computed exactly (the formula of scipy.stats.wasserstein_distance).
"""

from __future__ import annotations

import numpy as np

from crossfuse.schema import Distances


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between the 1-D samples ``a`` and ``b`` (each non-empty), in their units."""
    a = np.sort(np.asarray(a, dtype=np.float64))
    b = np.sort(np.asarray(b, dtype=np.float64))
    if not len(a) or not len(b):
        raise ValueError("W1 needs two non-empty samples")
    values = np.concatenate([a, b])
    values.sort(kind="mergesort")
    deltas = np.diff(values)
    cdf_a = np.searchsorted(a, values[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, values[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * deltas))


def per_patch_counts(patches: np.ndarray) -> np.ndarray:
    """256-bin histogram of each channel of each patch: (n, C, P, P) uint8 -> (n, C, 256) int64."""
    n, c = patches.shape[:2]
    offsets = (np.arange(n * c, dtype=np.int64) * 256).reshape(n, c, 1)
    flat = (patches.reshape(n, c, -1).astype(np.int64) + offsets).ravel()
    return np.bincount(flat, minlength=n * c * 256).reshape(n, c, 256)


def corrected_means(counts: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """Each patch's channel means after its channels pass through ``luts`` (C, 256):
    (n, C, 256) counts -> (n, C) float64, 0-255."""
    return np.einsum("ncv,cv->nc", counts, luts.astype(np.float64)) / counts.sum(axis=2)


def alignment_distances(target: np.ndarray, pool: np.ndarray, before: np.ndarray,
                        after: np.ndarray) -> Distances:
    """W1 per channel of (n, 3) patch means: target against pool, selection before and after."""

    def per_channel(other: np.ndarray) -> tuple[float, float, float]:
        return tuple(wasserstein1(target[:, c], other[:, c]) for c in range(3))  # type: ignore[return-value]

    return Distances(pool=per_channel(pool), before=per_channel(before), after=per_channel(after))
