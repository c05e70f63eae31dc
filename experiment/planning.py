"""How many seeds an experiment needs, before anything is trained: from a pilot's per-image
scores (a results.csv), the spread of the per-seed mean differences from the baseline, and the
fewest seeds that detect a wanted effect with the wanted power (:func:`crossfuse.experiment.stats.seeds_needed`).

The question is the default one (images fixed: a paired t over per-seed mean differences), so the
spread that matters is that of the per-seed means, which the pilot estimates with its own seeds
(at least two). The level is 5% per comparison, and 5% / F, what Holm asks of the first of the F
comparisons of the planned recipe's family (the conservative plan when the verdicts are adjusted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crossfuse.experiment import stats
from crossfuse.experiment.results import Score


@dataclass(frozen=True, kw_only=True)
class Need:
    """One test set and metric: the pilot's spread of per-seed mean differences (``seed_sd``, the
    median over its variants, each from ``pilot_seeds`` seeds), the baseline's mean, the wanted
    ``effect`` in the metric's units, and the seeds needed at 5% and at 5% / F (None: over 1000)."""

    test: str
    metric: str
    baseline: str
    seed_sd: float
    baseline_mean: float
    effect: float
    pilot_seeds: int
    seeds: int | None
    seeds_family: int | None


def parse_effect(text: str) -> tuple[float, bool]:
    """``"2%"`` -> (0.02, True: relative to the baseline's mean); ``"0.05"`` -> (0.05, False)."""
    raw = text.strip()
    relative = raw.endswith("%")
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise ValueError(f"--effect must be a number or a percentage (2%), got {text!r}") from None
    if not value > 0:
        raise ValueError(f"--effect must be positive, got {text!r}")
    return (value / 100 if relative else value), relative


def spread(scores: list[Score], *, baseline: str, test: str, metric: str) -> tuple[float, float, int]:
    """The pilot's (median over variants of the sd of per-seed mean differences from ``baseline``,
    the baseline's mean, the fewest seeds behind one of those sds) on ``test`` for ``metric``; only
    variants trained with the baseline's model count (a difference between models is not an effect
    of the data)."""
    model = next((s.model for s in scores if s.variant == baseline), None)
    variants = sorted({s.variant for s in scores if s.seed is not None and s.variant != baseline
                       and s.model == model})
    sds, seeds = [], []
    for v in variants:
        diff = stats.paired(scores, v, baseline, test, metric)
        diff = diff[:, np.isfinite(diff).all(axis=0)] if diff.size else diff
        if diff.shape[0] >= 2 and diff.shape[1]:
            sds.append(float(diff.mean(axis=1).std(ddof=1)))
            seeds.append(diff.shape[0])
    base = [s.metrics[metric] for s in scores if s.variant == baseline and s.dataset == test
            and math.isfinite(s.metrics[metric])]
    if not sds or not base:
        raise ValueError(f"the pilot has no comparison with {baseline!r} on {test!r} over two or more seeds; a pilot "
                         "needs the baseline and another variant scored at two seeds or more")
    return float(np.median(sds)), float(np.mean(base)), min(seeds)


def plan(scores: list[Score], *, baselines: list[str], tests: list[str], metrics: list[str], effect: str,
         family: int, power: float = 0.8) -> list[Need]:
    """The seeds each (baseline, test, metric) needs to find ``effect`` with ``power`` (see the
    module); one baseline per model of the pilot."""
    value, relative = parse_effect(effect)
    out = []
    for baseline in baselines:
        for test in tests:
            for metric in metrics:
                out.append(_need(scores, baseline, test, metric, value, relative, family, power))
    return out


def _need(scores: list[Score], baseline: str, test: str, metric: str, value: float, relative: bool, family: int,
          power: float) -> Need:
    sd, mean, n = spread(scores, baseline=baseline, test=test, metric=metric)
    wanted = value * abs(mean) if relative else value
    return Need(test=test, metric=metric, baseline=baseline, seed_sd=sd, baseline_mean=mean, effect=wanted,
                pilot_seeds=n,
                seeds=stats.seeds_needed(sd, wanted, power=power),
                seeds_family=stats.seeds_needed(sd, wanted, power=power, alpha=stats.ALPHA / max(1, family)))


def table(needs: list[Need], *, family: int) -> str:
    def n(x: int | None) -> str:
        return ">1000" if x is None else str(x)

    lines = [f"| baseline | test | metric | pilot sd of seed means (seeds) | baseline mean | effect | seeds at 5% | "
             f"seeds at 5%/{family} |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {x.baseline} | {x.test} | {x.metric} | {x.seed_sd:.4g} ({x.pilot_seeds}) | {x.baseline_mean:.4g} | "
              f"{x.effect:.4g} | {n(x.seeds)} | {n(x.seeds_family)} |" for x in needs]
    return "\n".join(lines)
