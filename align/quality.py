"""How well a selection matches its target, as numbers: per channel, the 1-D Wasserstein
distance W1 between the target's distribution of patch means and (a) the whole auxiliary pool
(from its exact histogram, :class:`MeanHistogram`, so that no build holds one value per patch),
(b) the selection as retrieved, (c) the selection after the gamma correction (0-255 units: how
far, on average, the mass of one distribution must move in intensity to become the other).

W1 of two empirical distributions is ``integral |F_a(x) - F_b(x)| dx`` over the merged sorted
sample values, computed exactly (the formula of scipy.stats.wasserstein_distance).
"""

from __future__ import annotations

import numpy as np

from crossfuse.schema import Distances


def wasserstein1(a: np.ndarray, b: np.ndarray, *, b_counts: np.ndarray | None = None) -> float:
    """W1 between the 1-D samples ``a`` and ``b`` (each non-empty), in their units. With
    ``b_counts``, ``b`` holds distinct values and ``b_counts`` how often each occurs (a histogram:
    how the build passes the auxiliary pool, whose patch means it never gathers). Either way the
    samples become (distinct values, counts) first, so both forms give the same float."""
    va, ca = np.unique(np.asarray(a, dtype=np.float64), return_counts=True)
    if b_counts is None:
        vb, cb = np.unique(np.asarray(b, dtype=np.float64), return_counts=True)
    else:
        vb, cb = _combine(np.asarray(b, dtype=np.float64), np.asarray(b_counts, dtype=np.int64))
    if not len(va) or not len(vb):
        raise ValueError("W1 needs two non-empty samples")
    values = np.union1d(va, vb)
    deltas = np.diff(values)
    cdf_a = _cdf(va, ca, values[:-1])
    cdf_b = _cdf(vb, cb, values[:-1])
    return float(np.sum(np.abs(cdf_a - cdf_b) * deltas))


def _combine(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, summed counts) of a histogram whose values may repeat, zero counts dropped."""
    keep = counts > 0
    distinct, inverse = np.unique(values[keep], return_inverse=True)
    return distinct, np.bincount(inverse, weights=counts[keep], minlength=len(distinct)).astype(np.int64)


def _cdf(values: np.ndarray, counts: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The empirical CDF of the histogram (sorted distinct ``values``, ``counts``) at ``at``."""
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    return cumulative[np.searchsorted(values, at, side="right")] / float(cumulative[-1])


class MeanHistogram:
    """The exact distribution of the auxiliary pool's patch means per channel, without holding
    one value per patch: a patch mean is ``sum / P^2`` with an integer ``sum`` in
    ``0..255 * P^2``, so the histogram of sums is exact, and it has at most that many bins (at P
    64, about a million per channel) however large the pool. Tasks add (sums, counts) pairs;
    :meth:`add` merges them, consolidating as they pile up."""

    def __init__(self, patch: int) -> None:
        self.area = patch * patch
        self._parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(3)]
        self._size = [0, 0, 0]
        self._held = [0, 0, 0]

    def add(self, channel: int, sums: np.ndarray, counts: np.ndarray) -> None:
        self._parts[channel].append((np.asarray(sums, dtype=np.int64), np.asarray(counts, dtype=np.int64)))
        self._held[channel] += len(sums)
        if self._held[channel] > 4 * max(self._size[channel], 65536):
            self._consolidate(channel)

    def _consolidate(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        parts = self._parts[channel]
        if len(parts) != 1:
            sums = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
            counts = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
            parts[:] = [_combine(sums, counts)]
        self._size[channel] = self._held[channel] = len(parts[0][0])
        return parts[0]

    def sums(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """(distinct channel sums, how many patches have each), as added."""
        return self._consolidate(channel)

    def channel(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """(distinct patch means, 0-255, as float64 exactly as ``patches.channel_means`` gives them;
        how many patches have each)."""
        sums, counts = self._consolidate(channel)
        return sums / float(self.area), counts

    @property
    def patches(self) -> int:
        return int(self.channel(0)[1].sum())


def per_patch_counts(patches: np.ndarray) -> np.ndarray:
    """256-bin histogram of each channel of each patch: (n, C, P, P) uint8 -> (n, C, 256) int64."""
    n, c = patches.shape[:2]
    offsets = (np.arange(n * c, dtype=np.int64) * 256).reshape(n, c, 1)
    flat = (patches.reshape(n, c, -1).astype(np.int64) + offsets).ravel()
    return np.bincount(flat, minlength=n * c * 256).reshape(n, c, 256)


#: Luma weights (ITU-R 601), as the network sees the visible image.
_LUMA = np.array([0.299, 0.587, 0.114])


def luma_histogram(vis: np.ndarray, lut: np.ndarray | None = None) -> np.ndarray:
    """256-bin histogram of the luma Y = 0.299 R + 0.587 G + 0.114 B of every pixel of (n, 3, P, P)
    uint8 patches (after the (3, 256) tables ``lut`` when given), Y rounded to the nearest level:
    the distribution the network is shown. (256,) int64."""
    if lut is not None:
        vis = np.stack([lut[c][vis[:, c]] for c in range(3)], axis=1)
    y = np.einsum("c,ncij->nij", _LUMA, vis.astype(np.float64))
    return np.bincount(np.floor(y + 0.5).astype(np.int64).ravel(), minlength=256)[:256]


def histogram_w1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 (levels, unit spacing) between two histograms over the same 256 levels."""
    ca = np.cumsum(a / a.sum())
    cb = np.cumsum(b / b.sum())
    return float(np.abs(ca - cb).sum())


def corrected_means(counts: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """Each patch's channel means after its channels pass through ``luts`` (C, 256):
    (n, C, 256) counts -> (n, C) float64, 0-255."""
    return np.einsum("ncv,cv->nc", counts, luts.astype(np.float64)) / counts.sum(axis=2)


def alignment_distances(target: np.ndarray, pool: MeanHistogram, before: np.ndarray,
                        after: np.ndarray) -> Distances:
    """W1 per channel of (n, 3) patch means: target against the pool (its exact histogram), and the
    selection before and after."""
    def per_channel(other: np.ndarray) -> tuple[float, float, float]:
        return tuple(wasserstein1(target[:, c], other[:, c]) for c in range(3))  # type: ignore[return-value]

    def to_pool(c: int) -> float:
        values, counts = pool.channel(c)
        return wasserstein1(target[:, c], values, b_counts=counts)

    return Distances(pool=(to_pool(0), to_pool(1), to_pool(2)), before=per_channel(before), after=per_channel(after))
