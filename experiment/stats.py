"""A verdict, not a table of means: each variant against the spec's baseline, paired by seed and
test image, with a 95% confidence interval and a word for what it shows.

For one variant, one metric and one test set the data are the differences
``D[s, i] = variant(seed s, image i) - baseline(seed s, image i)`` over the seeds and images both
have. Its mean is the effect. The interval comes from a **crossed bootstrap** over seeds and
images: each resample draws the seeds with replacement and, independently, the images with
replacement, and takes the mean of ``D`` over that grid (seeds and images are both random
samples: other seeds would train other networks, other images would score differently). The
standard deviation of the resampled means, times ``sqrt(S / (S - 1))`` for the few seeds, is the
standard error; the interval is the mean ± ``t(0.975, S - 1)`` standard errors. Why t and not the
bootstrap's own percentiles: with four seeds a percentile interval is too narrow (in simulations
of no effect it called "better" 7-9% of the time where it should 2.5%), because the mean of four
seed effects has heavy tails that four resampled values cannot show; t with S - 1 degrees of
freedom restores them. The price is caution: when seeds agree the interval is wider than it
needs to be (tested: "better" stays at or below about 2.5% under no effect, and a real effect is
found).

The verdict: **better** when the interval lies wholly on the good side of 0 (above for metrics
read larger-is-better, below for MSE and the like), **worse** when wholly on the other side, and
**no evidence** otherwise (or with a single seed, where no interval exists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Two-sided 95% critical values of Student's t, by degrees of freedom (1-30); above 30, 1.96 plus
#: a small-sample term that meets the table.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
#: Resamples of the crossed bootstrap.
RESAMPLES = 4000


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


@dataclass(frozen=True, kw_only=True)
class Interval:
    """The paired difference (variant - baseline): its ``mean``, the 95% interval ``lo``..``hi``
    (NaN with one seed), how many ``seeds`` and ``images`` it rests on, and the ``verdict``."""

    mean: float
    lo: float
    hi: float
    seeds: int
    images: int
    verdict: str


def crossed_means(diff: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Means of ``diff`` (seeds x images) over ``resamples`` grids drawn with replacement along
    both axes independently. Computed from the draw counts (one einsum), not by copying."""
    s, i = diff.shape
    rng = np.random.default_rng(seed)
    by_seed = rng.multinomial(s, np.full(s, 1 / s), size=resamples).astype(np.float64)
    by_image = rng.multinomial(i, np.full(i, 1 / i), size=resamples).astype(np.float64)
    return np.einsum("bs,si,bi->b", by_seed, diff, by_image) / (s * i)


def interval(diff: np.ndarray, *, larger_is_better: bool = True, resamples: int = RESAMPLES,
             seed: int = 0) -> Interval:
    """The verdict on a (seeds x images) array of paired differences (see the module docstring)."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 2 or diff.size == 0:
        raise ValueError(f"expected a non-empty seeds x images array, got shape {diff.shape}")
    s, i = diff.shape
    mean = float(diff.mean())
    if s < 2:
        return Interval(mean=mean, lo=math.nan, hi=math.nan, seeds=s, images=i, verdict="no evidence (one seed)")
    se = float(crossed_means(diff, resamples=resamples, seed=seed).std()) * math.sqrt(s / (s - 1))
    half = t975(s - 1) * se
    lo, hi = mean - half, mean + half
    good, bad = (lo > 0, hi < 0) if larger_is_better else (hi < 0, lo > 0)
    verdict = "better" if good else "worse" if bad else "no evidence"
    return Interval(mean=mean, lo=lo, hi=hi, seeds=s, images=i, verdict=verdict)


def paired(scores, variant: str, baseline: str, dataset: str, metric: str) -> np.ndarray:
    """The (seeds x images) differences ``variant - baseline`` on ``dataset`` for ``metric``, over
    the seeds and images both were scored on (sorted), from :class:`results.Score` records."""
    table: dict[tuple[str, int, str], float] = {}
    for s in scores:
        if s.dataset == dataset and s.variant in (variant, baseline) and s.seed is not None:
            table[(s.variant, s.seed, s.image)] = s.metrics[metric]
    seeds = sorted({k[1] for k in table if k[0] == variant} & {k[1] for k in table if k[0] == baseline})
    images = sorted({k[2] for k in table if k[0] == variant} & {k[2] for k in table if k[0] == baseline})
    seeds = [sd for sd in seeds if all((v, sd, im) in table for v in (variant, baseline) for im in images)]
    return np.array([[table[(variant, sd, im)] - table[(baseline, sd, im)] for im in images] for sd in seeds],
                    dtype=np.float64).reshape(len(seeds), len(images))
