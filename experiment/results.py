"""Gather an experiment's scores into ``results.csv`` (one line per variant, seed, test set and
image, every metric), ``results.md`` (led by the verdicts: each variant against the spec's
baseline, paired by seed and image, with 95% intervals (:mod:`crossfuse.experiment.stats`); then
mean +- sd over seeds of the per-seed means, per variant and test set, next to mean and max fusion
and published numbers); :func:`crossfuse.experiment.runner.gather` writes them with the plots
(:mod:`crossfuse.experiment.plots`). Whatever has been scored is gathered; what is still missing
is listed, so a partial experiment (``--only``, or one still running) reports honestly."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from crossfuse import atomic
from crossfuse.experiment.published import METRICS as PUBLISHED_METRICS
from crossfuse.experiment.published import PUBLISHED, SOURCE
from crossfuse.experiment import stats
from crossfuse.experiment.layout import BASELINES, Layout
from crossfuse.experiment.spec import Spec
from crossfuse.fusion.leaderboard import better_larger
from crossfuse.fusion.metrics import NAMES

#: The columns of results.md (the paper's table: CDDFuse's eight, plus AG and CC).
TABLE_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC")


@dataclass(frozen=True, kw_only=True)
class Score:
    """One scored image: ``variant`` (or ``baseline:mean``), ``seed`` (None for baselines)."""

    variant: str
    seed: int | None
    model: str = ""  # the variant's model ("" for the mean/max baselines)
    dataset: str
    image: str
    metrics: dict[str, float]


def read_scores(path: str, *, variant: str, seed: int | None, dataset: str, model: str = "") -> list[Score]:
    """The per-image lines of a score file written by ``crossfuse eval`` (mean lines skipped)."""
    with open(path, newline="") as fh:
        return [Score(variant=variant, seed=seed, dataset=dataset, image=row["name"], model=model,
                      metrics={k: float(row[k]) for k in NAMES})
                for row in csv.DictReader(fh) if row["name"] != "mean"]


def collect(spec: Spec, layout: Layout) -> tuple[list[Score], list[str]]:
    """Every score present, and the (variant, seed, test) stages still missing, as text."""
    scores: list[Score] = []
    missing: list[str] = []
    for name in BASELINES:
        for test in spec.tests:
            path = layout.baseline_scores(name, test)
            if os.path.exists(path):
                scores += read_scores(path, variant=f"{name} fusion", seed=None, dataset=test)
    for variant in spec.variants:
        for seed in spec.seeds:
            for test in spec.tests:
                path = layout.scores(variant, seed, test)
                if os.path.exists(path):
                    scores += read_scores(path, variant=variant, seed=seed, dataset=test,
                                          model=spec.variants[variant].model)
                else:
                    missing.append(f"{variant} seed {seed} on {test}")
    return scores, missing


def write_csv(scores: list[Score], path: str) -> None:
    atomic.write_csv(path, ("model", "variant", "seed", "dataset", "image") + NAMES,
                     ([s.model, s.variant, "" if s.seed is None else s.seed, s.dataset, s.image]
                      + [repr(s.metrics[k]) for k in NAMES] for s in scores))


@dataclass(frozen=True, kw_only=True)
class Summary:
    """A variant's result on one test set: per metric the mean over seeds of each seed's mean over
    images, the sample sd of those seed means (NaN with one seed), and how many seeds."""

    mean: dict[str, float]
    sd: dict[str, float]
    seeds: int


def summarise(scores: list[Score], variant: str, dataset: str) -> Summary | None:
    mine = [s for s in scores if s.variant == variant and s.dataset == dataset]
    if not mine:
        return None
    seeds = sorted({s.seed for s in mine}, key=lambda x: -1 if x is None else x)
    per_seed = {k: [float(np.mean([s.metrics[k] for s in mine if s.seed == seed])) for seed in seeds] for k in NAMES}
    return Summary(mean={k: float(np.mean(v)) for k, v in per_seed.items()},
                   sd={k: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in per_seed.items()},
                   seeds=len(seeds))


def _cell(summary: Summary, k: str) -> str:
    if np.isnan(summary.sd[k]):
        return f"{summary.mean[k]:.3f}"
    return f"{summary.mean[k]:.3f} ± {summary.sd[k]:.3f}"


def markdown(spec: Spec, scores: list[Score], missing: list[str]) -> str:
    """results.md: a table per test set (rows: variants, then the baselines and published numbers)."""
    lines = [f"# Experiment {spec.name}", "", f"Spec: `{spec.path}`; seeds {', '.join(map(str, spec.seeds))}.", ""]
    lines += _differences(spec, scores)
    lines += ["## Means", "", "Each cell: mean over seeds of the seed's mean over the test images, ± the sample "
              "standard deviation of those seed means. Higher is better for every metric shown.", ""]
    for test in spec.tests.values():
        count = len({s.image for s in scores if s.dataset == test.name})
        lines += [f"## {test.name} ({count} images)", "",
                  "| variant | seeds | " + " | ".join(TABLE_METRICS) + " |",
                  "|---|---|" + "---|" * len(TABLE_METRICS)]
        for variant in list(spec.variants) + [f"{b} fusion" for b in BASELINES]:
            summary = summarise(scores, variant, test.name)
            if summary is not None:
                lines.append(f"| {variant} | {summary.seeds if variant in spec.variants else '-'} | "
                             + " | ".join(_cell(summary, k) for k in TABLE_METRICS) + " |")
        if test.published:
            row = PUBLISHED[test.published]
            lines.append(f"| {SOURCE} ({test.published}) | - | "
                         + " | ".join(f"{row[k]:.2f}" if k in PUBLISHED_METRICS else "" for k in TABLE_METRICS)
                         + " |")
        lines.append("")
    if missing:
        lines += ["## Not yet scored", ""] + [f"- {m}" for m in missing] + [""]
    return "\n".join(lines)


def verdicts(spec: Spec, scores: list[Score]) -> dict[str, dict[str, dict[str, stats.Interval]]]:
    """Per test set, variant (every one but the baseline) and metric of :data:`TABLE_METRICS`:
    the paired difference from the spec's baseline with its interval and verdict
    (:mod:`crossfuse.experiment.stats`). Variants or tests not yet scored are left out."""
    out: dict[str, dict[str, dict[str, stats.Interval]]] = {}
    for test in spec.tests:
        for name in spec.variants:
            if name == spec.baseline_for(name):
                continue
            cells = {}
            for k in TABLE_METRICS:
                diff = stats.paired(scores, name, spec.baseline_for(name), test, k)
                if diff.size:
                    cells[k] = stats.interval(diff, larger_is_better=better_larger(k))
            if cells:
                out.setdefault(test, {})[name] = cells
    return out


def _verdict_cell(iv: stats.Interval) -> str:
    if np.isnan(iv.lo):
        return f"{iv.mean:+.3f} ({iv.verdict})"
    mark = {"better": " **better**", "worse": " **worse**"}.get(iv.verdict, "")
    return f"{iv.mean:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]{mark}"


def _differences(spec: Spec, scores: list[Score]) -> list[str]:
    """The verdict tables that lead results.md: each variant minus the baseline, paired by seed
    and image, with its 95% interval; **better**/**worse** where the interval excludes 0."""
    found = verdicts(spec, scores)
    if not found:
        return []
    lines = [f"## Verdicts: each variant against {spec.baseline}", "",
             f"Each cell: the mean of (variant - {spec.baseline}) paired by seed and test image, and its 95% "
             "interval from a crossed bootstrap over seeds and images (standard error x t with seeds - 1 degrees "
             "of freedom; see `crossfuse/experiment/stats.py`). **better** / **worse**: the interval excludes 0 "
             "on that side; otherwise there is no evidence either way.", ""]
    for test, rows in found.items():
        first = next(iter(next(iter(rows.values())).values()))
        lines += [f"### {test} ({first.seeds} seeds x {first.images} images)", "",
                  "| variant | " + " | ".join(TABLE_METRICS) + " |", "|---|" + "---|" * len(TABLE_METRICS)]
        for name, cells in rows.items():
            lines.append(f"| {name} | " + " | ".join(_verdict_cell(cells[k]) if k in cells else "" for k in TABLE_METRICS)
                         + " |")
        lines.append("")
    return lines
