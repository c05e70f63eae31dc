"""Per-channel gamma fit (paper, Section III-C.1, step 5), solved exactly.

The correction is the uint8 lookup ``out = floor(255 * (v / 255) ** (1 / gamma))``. The mean of
a channel after the lookup, ``m(gamma) = sum_v h[v] * lut_gamma[v] / sum_v h[v]`` for the
channel's 256-bin histogram ``h`` over the selected patches, is a non-decreasing step function
of gamma. The paper minimises ``sum_c |m_c(gamma_c) - t_c|`` with Nelder-Mead from 0.5,
re-applying the lookup to every patch at each step; since the sum separates by channel and each
term is monotone, each channel is a 1-D solve: bisect for the step where ``m`` crosses the target,
keep the closer of the two plateaus around it, and return the middle of that plateau.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Search range for gamma; means outside m(LOW)..m(HIGH) are reported as unreachable.
GAMMA_LOW, GAMMA_HIGH = 1e-2, 1e2
_LEVELS = np.arange(256, dtype=np.float64)
_BISECT_STEPS = 80


def lut(gamma: float) -> np.ndarray:
    """The paper's uint8 lookup for ``gamma``: (256,) uint8, ``floor(255 * (v/255) ** (1/gamma))``."""
    return np.floor(((_LEVELS / 255.0) ** (1.0 / gamma)) * 255.0).astype(np.uint8)


def mean_after(hist: np.ndarray, gamma: float) -> float:
    """Mean grey level of a channel with histogram ``hist`` (256,) after the lookup for ``gamma``."""
    return float(hist @ lut(gamma).astype(np.float64) / hist.sum())


@dataclass(frozen=True, kw_only=True)
class ChannelFit:
    """Result for one channel: ``gamma``, means (0-255) before and after, and ``reachable``:
    False when the target lies outside what any gamma in [GAMMA_LOW, GAMMA_HIGH] can give."""

    gamma: float
    mean_before: float
    mean_after: float
    target: float
    reachable: bool


def _first_at_least(hist: np.ndarray, value: float, lo: float, hi: float) -> float:
    """Smallest gamma in (lo, hi] (to bisection precision, in log space) with m(gamma) >= value."""
    a, b = np.log(lo), np.log(hi)
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (a + b)
        if mean_after(hist, float(np.exp(mid))) >= value:
            b = mid
        else:
            a = mid
    return float(np.exp(b))


def _last_at_most(hist: np.ndarray, value: float, lo: float, hi: float) -> float:
    """Largest gamma in [lo, hi) with m(gamma) <= value."""
    a, b = np.log(lo), np.log(hi)
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (a + b)
        if mean_after(hist, float(np.exp(mid))) <= value:
            a = mid
        else:
            b = mid
    return float(np.exp(a))


def fit_channel(hist: np.ndarray, target: float) -> ChannelFit:
    """Gamma bringing the mean of histogram ``hist`` (256,) as close to ``target`` as the lookup allows."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.shape != (256,) or hist.sum() <= 0:
        raise ValueError(f"expected a non-empty 256-bin histogram, got shape {hist.shape}")
    before = float(hist @ _LEVELS / hist.sum())
    low_mean, high_mean = mean_after(hist, GAMMA_LOW), mean_after(hist, GAMMA_HIGH)
    if target <= low_mean or target >= high_mean:
        gamma = GAMMA_LOW if target <= low_mean else GAMMA_HIGH
        return ChannelFit(gamma=gamma, mean_before=before, mean_after=mean_after(hist, gamma),
                          target=target, reachable=False)
    upper = _first_at_least(hist, target, GAMMA_LOW, GAMMA_HIGH)  # first gamma at or above target
    upper_mean = mean_after(hist, upper)
    lower = upper * (1.0 - 1e-12)  # last gamma below the crossing
    lower_mean = mean_after(hist, lower)
    best = upper_mean if abs(upper_mean - target) <= abs(lower_mean - target) else lower_mean
    # The plateau of m at `best`: every gamma in it gives the same lookup output on this histogram.
    left = _first_at_least(hist, best, GAMMA_LOW, GAMMA_HIGH)
    right = _last_at_most(hist, best, GAMMA_LOW, GAMMA_HIGH)
    gamma = 0.5 * (left + right)
    return ChannelFit(gamma=gamma, mean_before=before, mean_after=mean_after(hist, gamma),
                      target=target, reachable=True)


def fit(hists: np.ndarray, targets: np.ndarray) -> tuple[ChannelFit, ...]:
    """Fit each channel: ``hists`` (C, 256) counts of the selection, ``targets`` (C,) means."""
    return tuple(fit_channel(h, float(t)) for h, t in zip(hists, targets))
