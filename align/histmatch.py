"""``--transform cdf``: per-channel histogram matching as exact 1-D optimal transport.

A transform is a lookup table per channel (256 entries, uint8 -> uint8) applied to every chosen
patch. For one channel with source histogram ``p`` (the selection's pixels) and target histogram
``q`` (the target's pixels), :func:`match` returns the **monotone** (non-decreasing) table whose
output histogram is closest to ``q`` in W1 (the 1-D Wasserstein distance over grey levels, unit
spacing).

Why this is a small dynamic programme: a monotone table sends source levels ``0..t`` to output
levels ``<= w`` for some cut ``t = j(w)`` that does not decrease with ``w``. So the output
histogram's cumulative distribution at ``w`` is ``F_p(j(w))``, and

    W1 = sum_w |F_p(j(w)) - F_q(w)|,

to be minimised over non-decreasing ``j`` with ``j(255) = 255`` (all the mass placed). Each
term depends on ``j(w)`` alone, so a table of ``min_{j' <= j}`` running minima gives the
optimum in 256 x 257 steps per channel. Ties (levels that hold no pixel make several tables
equal) go to the smallest cut, so the result is deterministic. The table is then
``L(v) = min{w : j(w) >= v}``. Tested against every monotone table of small histograms.
"""

from __future__ import annotations

import numpy as np


def w1(hist: np.ndarray, target: np.ndarray) -> float:
    """W1 between two histograms over the same levels (each normalised to mass 1), unit spacing."""
    a = np.cumsum(np.asarray(hist, dtype=np.float64) / np.sum(hist))
    b = np.cumsum(np.asarray(target, dtype=np.float64) / np.sum(target))
    return float(np.abs(a - b).sum())


def apply(lut: np.ndarray, hist: np.ndarray, levels: int | None = None) -> np.ndarray:
    """The output histogram of ``hist`` through ``lut``."""
    return np.bincount(np.asarray(lut, dtype=np.int64), weights=np.asarray(hist, dtype=np.float64),
                       minlength=levels or len(hist))


def match(hist: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The monotone table (``len(hist)`` entries, values < ``len(target)``) whose output
    histogram of ``hist`` is closest in W1 to ``target`` (see the module docstring)."""
    p = np.asarray(hist, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("both histograms need some mass")
    fp = np.concatenate([[0.0], np.cumsum(p / p.sum())])  # F_p at cut j = -1 .. n-1 (index j + 1)
    fp[-1] = 1.0
    fq = np.cumsum(q / q.sum())
    fq[-1] = 1.0
    n, m = len(p), len(q)
    # cost[w, j + 1] = |F_p(j) - F_q(w)|; best[w, j + 1] = the least total through w with j(w) = j.
    cost = np.abs(fp[None, :] - fq[:, None])
    best = np.empty((m, n + 1))
    arg = np.empty((m, n + 1), dtype=np.int64)  # for each (w, j): the j' <= j that the prefix minimum took
    best[0] = cost[0]
    for w in range(1, m):
        prev = best[w - 1]
        run = np.minimum.accumulate(prev)
        # the first index at which the running minimum is reached (ties: the smallest cut)
        first = np.zeros(n + 1, dtype=np.int64)
        for j in range(1, n + 1):
            first[j] = j if prev[j] < run[j - 1] else first[j - 1]
        arg[w] = first
        best[w] = cost[w] + run
    cuts = np.empty(m, dtype=np.int64)
    cuts[m - 1] = n  # all the mass placed by the last level
    for w in range(m - 1, 0, -1):
        cuts[w - 1] = arg[w][cuts[w]]
    # L(v) = the first w whose cut covers v (cut index j + 1 > v)
    return np.searchsorted(cuts, np.arange(n) + 1, side="left").astype(np.int64)


def luts(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(C, 256) uint8 tables matching each channel of ``source`` (C, 256) counts to ``target``'s."""
    return np.stack([match(s, t) for s, t in zip(source, target)]).astype(np.uint8)
