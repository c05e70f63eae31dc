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

Two questions, each named where it is used (:data:`QUESTIONS`):

- ``images`` ("on these test images"): the test images are fixed, seeds are the only sample. The
  paired t interval over the per-seed mean differences ``m_s = mean_i D[s, i]``: standard error
  ``sd(m) / sqrt(S)``, ``S - 1`` degrees of freedom. The default: a published table is a claim
  about its test set.
- ``population`` ("on images like these"): the crossed bootstrap above, seeds and images both
  random.

Each gives a mean, a standard error and ``S - 1`` degrees of freedom, hence a two-sided p-value
from Student's t. A recipe's comparisons form one family (variants x metrics x test sets x models);
:func:`adjust` controls it by Holm (the family-wise error) or Benjamini-Hochberg (the false
discovery rate), and the verdict reads the adjusted p: **better** when it is below 0.05 and the
difference lies on the metric's good side (larger for most metrics, smaller for MSE and the
like), **worse** on the other side, **no evidence** otherwise (or with one seed, where no interval
exists). Whether an effect depends on the model is a second family: for each variant, metric and
test set, the difference between two models' effects (:func:`contrast`, Welch's t on the two
independent effects: different models share no training, so their seeds do not pair). Power: :func:`detectable` is the smallest true difference a comparison with that standard
error finds at 80% power (two-sided, the normal-shift approximation with t quantiles), and
:func:`seeds_needed` how many seeds make it as small as a wanted effect.

Student's t distribution is computed here (the regularised incomplete beta function by its
continued fraction, quantiles by bisection), so the package needs no scipy; the tests check it
against tabulated values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

#: Resamples of the crossed bootstrap.
RESAMPLES = 4000
#: The two questions a comparison answers (see the module docstring), by name: their words in results.md.
QUESTIONS = {"images": "on these test images (images fixed; paired t over the per-seed mean differences, "
                       "seeds - 1 degrees of freedom)",
             "population": "on images like these (crossed bootstrap over seeds and images, its standard error "
                           "with t, seeds - 1 degrees of freedom)"}
#: Multiplicity corrections over a recipe's family of comparisons.
CORRECTIONS = {"holm": "Holm (family-wise error rate 5%)", "bh": "Benjamini-Hochberg (false discovery rate 5%)",
               "none": "no correction (each comparison at 5%)"}
ALPHA = 0.05


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf` to 1e-10; cached: a results
    table asks for the same few quantiles hundreds of times)."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return t_quantile(0.975, df)


def two_sided_p(mean: float, se: float, df: int) -> float:
    """The two-sided p-value of ``mean / se`` under Student's t with ``df`` degrees of freedom
    (1 when both are 0: no difference at all)."""
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return 2 * t_cdf(-abs(mean / se), df)


def adjust(pvalues: list[float], method: str) -> list[float]:
    """``pvalues`` adjusted over their family: ``holm`` (step-down, family-wise), ``bh``
    (Benjamini-Hochberg step-up, false discovery rate) or ``none``. NaN stays NaN and does not
    count towards the family."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0 or method == "none":
        out[ok] = p[ok]
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    out[order] = adj
    return out.tolist()


def detectable(se: float, df: int, *, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at ``alpha`` finds with probability ``power``
    when its estimate has standard error ``se`` and ``df`` degrees of freedom:
    ``(t(1 - alpha/2, df) + t(power, df)) * se``."""
    if df < 1 or not math.isfinite(se):
        return math.nan
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se


def seeds_needed(seed_sd: float, effect: float, *, alpha: float = ALPHA, power: float = 0.8,
                 most: int = 1000) -> int | None:
    """The fewest seeds S (at least 2) whose per-seed mean differences, of standard deviation
    ``seed_sd``, detect ``effect`` at ``alpha`` with ``power``: the smallest S with
    ``detectable(seed_sd / sqrt(S), S - 1) <= |effect|``; None above ``most``."""
    if not math.isfinite(seed_sd) or effect == 0:
        return None
    for s in range(2, most + 1):
        if detectable(seed_sd / math.sqrt(s), s - 1, alpha=alpha, power=power) <= abs(effect):
            return s
    return None


@dataclass(frozen=True, kw_only=True)
class Interval:
    """The paired difference (variant - baseline): its ``mean``, the 95% interval ``lo``..``hi``
    (NaN with one seed), how many ``seeds`` and ``images`` it rests on, the ``verdict``, and the
    ``se``, degrees of freedom ``df``, raw two-sided ``p`` and the family-``adjusted`` p (the
    raw one until :func:`adjust` has been applied) of the ``question`` asked."""

    mean: float
    lo: float
    hi: float
    seeds: int
    images: int
    verdict: str
    se: float = math.nan
    df: int = 0
    p: float = math.nan
    adjusted: float = math.nan
    question: str = "population"


def crossed_means(diff: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Means of ``diff`` (seeds x images) over ``resamples`` grids drawn with replacement along
    both axes independently. Computed from the draw counts (one einsum), not by copying."""
    s, i = diff.shape
    rng = np.random.default_rng(seed)
    by_seed = rng.multinomial(s, np.full(s, 1 / s), size=resamples).astype(np.float64)
    by_image = rng.multinomial(i, np.full(i, 1 / i), size=resamples).astype(np.float64)
    return np.einsum("bs,si,bi->b", by_seed, diff, by_image) / (s * i)


def interval(diff: np.ndarray, *, larger_is_better: bool = True, resamples: int = RESAMPLES,
             seed: int = 0, question: str = "population") -> Interval:
    """The verdict on a (seeds x images) array of paired differences, for ``question`` (see the
    module docstring); unadjusted (its ``adjusted`` is its raw ``p``, see :func:`with_adjusted`)."""
    if question not in QUESTIONS:
        raise ValueError(f"question must be one of {', '.join(QUESTIONS)}, got {question!r}")
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 2 or diff.size == 0:
        raise ValueError(f"expected a non-empty seeds x images array, got shape {diff.shape}")
    s, i = diff.shape
    mean = float(diff.mean())
    if s < 2:
        return Interval(mean=mean, lo=math.nan, hi=math.nan, seeds=s, images=i, verdict="no evidence (one seed)",
                        question=question)
    if question == "images":
        se = float(diff.mean(axis=1).std(ddof=1)) / math.sqrt(s)
    else:
        se = float(crossed_means(diff, resamples=resamples, seed=seed).std()) * math.sqrt(s / (s - 1))
    half = t975(s - 1) * se
    p = two_sided_p(mean, se, s - 1)
    return with_adjusted(Interval(mean=mean, lo=mean - half, hi=mean + half, seeds=s, images=i, verdict="",
                                  se=se, df=s - 1, p=p, adjusted=p, question=question), p, larger_is_better)


def with_adjusted(iv: Interval, adjusted: float, larger_is_better: bool, *, alpha: float = ALPHA) -> Interval:
    """``iv`` with its family-adjusted p and the verdict that p gives (see the module docstring)."""
    if iv.seeds < 2 or math.isnan(adjusted):
        return dataclasses.replace(iv, adjusted=adjusted)
    significant = adjusted < alpha
    good = iv.mean > 0 if larger_is_better else iv.mean < 0
    verdict = ("better" if good else "worse") if significant else "no evidence"
    return dataclasses.replace(iv, adjusted=adjusted, verdict=verdict)


@dataclass(frozen=True, kw_only=True)
class Contrast:
    """Whether an effect depends on the model: ``first`` minus ``second``, two independent effects
    (:class:`Interval`, each a variant against its own model's baseline), compared as Welch does:
    ``mean`` the difference of their means, standard error ``sqrt(se1^2 + se2^2)``, degrees of
    freedom by Welch-Satterthwaite from each one's, the 95% interval ``lo``..``hi``, raw two-sided
    ``p`` and the family-``adjusted`` p; ``verdict`` "depends" where the adjusted p is below 0.05,
    else "no evidence" (NaN everywhere where either effect rests on one seed)."""

    first: Interval
    second: Interval
    mean: float
    lo: float
    hi: float
    se: float
    df: float
    p: float
    adjusted: float
    verdict: str


def contrast(first: Interval, second: Interval) -> Contrast:
    """The difference of two independent effects (see :class:`Contrast`), unadjusted."""
    mean = first.mean - second.mean
    if first.df < 1 or second.df < 1:
        return Contrast(first=first, second=second, mean=mean, lo=math.nan, hi=math.nan, se=math.nan, df=math.nan,
                        p=math.nan, adjusted=math.nan, verdict="no evidence (one seed)")
    v1, v2 = first.se ** 2, second.se ** 2
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / first.df + v2 ** 2 / second.df) if se > 0 else float(first.df + second.df)
    half = t_quantile(0.975, df) * se
    p = two_sided_p(mean, se, df)
    return with_contrast_adjusted(Contrast(first=first, second=second, mean=mean, lo=mean - half, hi=mean + half,
                                           se=se, df=df, p=p, adjusted=p, verdict=""), p)


def with_contrast_adjusted(c: Contrast, adjusted: float, *, alpha: float = ALPHA) -> Contrast:
    """``c`` with its family-adjusted p and the verdict that p gives."""
    if math.isnan(adjusted):
        return dataclasses.replace(c, adjusted=adjusted)
    return dataclasses.replace(c, adjusted=adjusted, verdict="depends" if adjusted < alpha else "no evidence")


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
