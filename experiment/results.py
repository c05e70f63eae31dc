"""Gather an experiment's scores into ``results.csv`` (one line per variant, seed, test set and
image, every metric), ``results.md`` (led by the verdicts: each variant against the spec's
baseline, paired by seed and image, with 95% intervals (:mod:`crossfuse.experiment.stats`); then
mean +- sd over seeds of the per-seed means, per variant and test set, next to mean and max fusion
and published numbers); :func:`crossfuse.experiment.runner.gather` writes them with the plots
(:mod:`crossfuse.experiment.plots`). Whatever has been scored is gathered; what is still missing
is listed, so a partial experiment (``--only``, or one still running) reports honestly."""

from __future__ import annotations

import csv
import math
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


@dataclass(frozen=True, kw_only=True)
class Design:
    """What the analysis needs of an experiment, from its spec or from a results.csv alone:
    ``variants`` (name -> model, in order), each variant's ``baselines`` entry (the variant it is
    judged against), the test sets with their ``published`` row (or None), the ``question`` and
    the ``correction`` (:mod:`crossfuse.experiment.stats`)."""

    name: str
    source: str
    seeds: tuple[int, ...]
    variants: dict[str, str]
    baselines: dict[str, str]
    tests: dict[str, str | None]
    question: str = "images"
    correction: str = "holm"

    @classmethod
    def of(cls, spec: Spec | Design) -> Design:
        if isinstance(spec, Design):
            return spec
        return cls(name=spec.name, source=f"`{spec.path}`", seeds=spec.seeds,
                   variants={n: v.model for n, v in spec.variants.items()},
                   baselines={n: spec.baseline_for(n) for n in spec.variants},
                   tests={n: t.published for n, t in spec.tests.items()}, question=spec.question,
                   correction=spec.correction)

    @classmethod
    def from_scores(cls, scores: list[Score], *, baseline: str, name: str, source: str, question: str = "images",
                    correction: str = "holm", published: dict[str, str] | None = None) -> Design:
        """The design a results.csv implies: its variants, models, seeds and test sets in the order
        they first appear; ``baseline`` names the baseline variant (with several models, its name
        without the ``.MODEL`` suffix)."""
        variants = {s.variant: s.model for s in scores if s.seed is not None}
        crossed = any(v.endswith(f".{m}") for v, m in variants.items() if m)
        baselines = {v: f"{baseline}.{m}" if crossed else baseline for v, m in variants.items()}
        missing = sorted({b for b in baselines.values() if b not in variants})
        if missing:
            raise ValueError(f"baseline {baseline!r} is not a variant of the scores (missing {missing}); the "
                             f"variants are {', '.join(variants)}")
        return cls(name=name, source=source, seeds=tuple(sorted({s.seed for s in scores if s.seed is not None})),
                   variants=variants, baselines=baselines,
                   tests={t: (published or {}).get(t) for t in dict.fromkeys(s.dataset for s in scores)},
                   question=question, correction=correction)


def verdicts(spec: Spec | Design, scores: list[Score]) -> dict[str, dict[str, dict[str, stats.Interval]]]:
    """Per test set, variant (every one but its baseline) and metric of :data:`TABLE_METRICS`:
    the paired difference from its baseline for the design's question, its p-value adjusted over
    the whole family (every comparison of the table) by the design's correction, and the verdict
    that gives (:mod:`crossfuse.experiment.stats`). Variants or tests not yet scored are left out;
    images whose score is NaN are left out of the comparisons of that metric (:func:`nan_scores`
    names them)."""
    design = Design.of(spec)
    raw: dict[str, dict[str, dict[str, stats.Interval]]] = {}
    for test in design.tests:
        for name in design.variants:
            base = design.baselines[name]
            if name == base:
                continue
            cells = {}
            for k in TABLE_METRICS:
                diff = _finite_columns(stats.paired(scores, name, base, test, k))
                if diff.size:
                    cells[k] = stats.interval(diff, larger_is_better=better_larger(k), question=design.question)
            if cells:
                raw.setdefault(test, {})[name] = cells
    family = [(t, n, k) for t, rows in raw.items() for n, cells in rows.items() for k in cells]
    adjusted = stats.adjust([raw[t][n][k].p for t, n, k in family], design.correction)
    for (t, n, k), p in zip(family, adjusted):
        raw[t][n][k] = stats.with_adjusted(raw[t][n][k], p, better_larger(k))
    return raw


def _finite_columns(diff: np.ndarray) -> np.ndarray:
    """The images (columns) whose differences are finite at every seed."""
    return diff[:, np.isfinite(diff).all(axis=0)] if diff.size else diff


def nan_scores(scores: list[Score]) -> list[tuple[str, int | None, str, str, str]]:
    """(variant, seed, test set, image, metric) of every NaN score of :data:`TABLE_METRICS`."""
    return [(s.variant, s.seed, s.dataset, s.image, k) for s in scores for k in TABLE_METRICS
            if np.isnan(s.metrics.get(k, 0.0))]


def detectable_effects(spec: Spec | Design, scores: list[Score],
                       found: dict[str, dict[str, dict[str, stats.Interval]]] | None = None
                       ) -> dict[str, dict[str, tuple[float, float, float, float]]]:
    """Per test set and metric: the smallest difference the run could detect at 80% power, from the
    median standard error of its comparisons, at 5% per comparison and at 5% / F (the first step of
    Holm over the F comparisons of the family), each in the metric's units and as % of the
    baseline's mean: (units, %, units at 5%/F, % at 5%/F)."""
    design = Design.of(spec)
    found = verdicts(design, scores) if found is None else found
    family = sum(len(cells) for rows in found.values() for cells in rows.values())
    out: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    for test, rows in found.items():
        for k in TABLE_METRICS:
            ivs = [cells[k] for cells in rows.values() if k in cells and cells[k].df >= 1]
            if not ivs:
                continue
            se, df = float(np.median([iv.se for iv in ivs])), min(iv.df for iv in ivs)
            base_names = {design.baselines[n] for n in rows}
            base = [s.metrics[k] for s in scores if s.dataset == test and s.variant in base_names
                    and np.isfinite(s.metrics[k])]
            level = abs(float(np.mean(base))) if base else math.nan
            one = stats.detectable(se, df)
            fam = stats.detectable(se, df, alpha=stats.ALPHA / max(1, family))
            out.setdefault(test, {})[k] = (one, 100 * one / level, fam, 100 * fam / level)
    return out


def _stem(name: str, model: str) -> str | None:
    """A variant's name without its ``.MODEL`` suffix (None when it has none: one model)."""
    return name[:-len(model) - 1] if model and name.endswith(f".{model}") else None


def model_dependence(spec: Spec | Design, scores: list[Score],
                     found: dict[str, dict[str, dict[str, stats.Interval]]] | None = None
                     ) -> dict[str, dict[str, dict[str, list[stats.Contrast]]]]:
    """Whether each variant's effect depends on the model: per test set, variant (without its
    ``.MODEL`` suffix) and metric, for each two models that both ran it (in the design's order),
    the difference of their effects against their own baselines (:func:`stats.contrast`), adjusted
    over this family (every such difference) by the design's correction. Empty with one model."""
    design = Design.of(spec)
    found = verdicts(design, scores) if found is None else found
    models = list(dict.fromkeys(m for m in design.variants.values() if m))
    out: dict[str, dict[str, dict[str, list[stats.Contrast]]]] = {}
    for test, rows in found.items():
        stems: dict[str, dict[str, dict[str, stats.Interval]]] = {}
        for name, cells in rows.items():
            stem = _stem(name, design.variants[name])
            if stem is not None:
                stems.setdefault(stem, {})[design.variants[name]] = cells
        for stem, by_model in stems.items():
            ran = [m for m in models if m in by_model]
            for k in TABLE_METRICS:
                pairs = [(a, b) for i, a in enumerate(ran) for b in ran[i + 1:] if k in by_model[a] and k in by_model[b]]
                if pairs:
                    out.setdefault(test, {}).setdefault(stem, {})[k] = [
                        stats.contrast(by_model[a][k], by_model[b][k]) for a, b in pairs]
    family = [c for rows in out.values() for cells in rows.values() for cs in cells.values() for c in cs]
    adjusted = iter(stats.adjust([c.p for c in family], design.correction))
    for rows in out.values():
        for cells in rows.values():
            for k, cs in cells.items():
                cells[k] = [stats.with_contrast_adjusted(c, next(adjusted)) for c in cs]
    return out


def _dependence_lines(design: Design, found: dict[str, dict[str, dict[str, stats.Interval]]],
                      scores: list[Score]) -> list[str]:
    """The section of results.md that asks whether the answer depends on the model."""
    dep = model_dependence(design, scores, found)
    if not dep:
        return []
    models = list(dict.fromkeys(m for m in design.variants.values() if m))
    family = sum(len(cs) for rows in dep.values() for cells in rows.values() for cs in cells.values())
    lines = ["## Does the answer depend on the model?", "",
             f"For each variant, metric and test set: its effect with {' and with '.join(models)} (each against its "
             "own model's baseline, as above), and the difference of the two effects with its 95% interval (Welch's "
             "t: the models' runs are independent, so seeds do not pair across models) and p raw / adjusted over the "
             f"family of all {family} such differences by {stats.CORRECTIONS[design.correction]}. **depends**: the "
             "adjusted p is below 0.05 (the variant does not do the same thing to both models); otherwise there is "
             "no evidence that it depends on the model. Effects are in the metric's units, so a model whose scores "
             "are on another level can differ in units and agree in %.", ""]
    for test, rows in dep.items():
        lines += [f"### {test}", "", "| variant | " + " | ".join(TABLE_METRICS) + " |",
                  "|---|" + "---|" * len(TABLE_METRICS)]
        for stem, cells in rows.items():
            lines.append(f"| {stem} | " + " | ".join(
                "<br>".join(_contrast_cell(c) for c in cells[k]) if k in cells else "" for k in TABLE_METRICS) + " |")
        lines.append("")
    return lines


def _contrast_cell(c: stats.Contrast) -> str:
    effects = f"{c.first.mean:+.3f} vs {c.second.mean:+.3f}"
    if np.isnan(c.lo):
        return f"{effects}: {c.mean:+.3f} ({c.verdict})"
    mark = " **depends**" if c.verdict == "depends" else ""
    return f"{effects}: {c.mean:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}] p {_p(c.p)} / {_p(c.adjusted)}{mark}"


def _verdict_cell(iv: stats.Interval, level: float = math.nan) -> str:
    """A verdict table's cell; ``level``: the baseline's mean, for the effect in % of it."""
    share = f" ({100 * iv.mean / level:+.1f}%)" if math.isfinite(level) and level != 0 else ""
    if np.isnan(iv.lo):
        return f"{iv.mean:+.3f}{share} ({iv.verdict})"
    mark = {"better": " **better**", "worse": " **worse**"}.get(iv.verdict, "")
    return f"{iv.mean:+.3f}{share} [{iv.lo:+.3f}, {iv.hi:+.3f}] p {_p(iv.p)} / {_p(iv.adjusted)}{mark}"


def _p(p: float) -> str:
    return "-" if np.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _differences(spec: Spec | Design, scores: list[Score]) -> list[str]:
    """The verdict tables that lead results.md: each variant minus its baseline, paired by seed
    and image, its 95% interval and p-values raw / adjusted over the family; then the effects the
    run could detect, and the NaN scores left out."""
    design = Design.of(spec)
    found = verdicts(design, scores)
    if not found:
        return []
    family = sum(len(cells) for rows in found.values() for cells in rows.values())
    baselines = sorted(set(design.baselines.values()))
    lines = [f"## Verdicts: each variant against {' / '.join(baselines)}", "",
             f"The question: {stats.QUESTIONS[design.question]}. Each cell: the mean of (variant - baseline) "
             "paired by seed and test image (in brackets: as % of the baseline's mean), its 95% interval, and the two-sided p-value raw / adjusted over the "
             f"family of all {family} comparisons below by {stats.CORRECTIONS[design.correction]} "
             "(`crossfuse/experiment/stats.py`). **better** / **worse**: the adjusted p is below 0.05, on that "
             "side; otherwise there is no evidence either way.", ""]
    for test, rows in found.items():
        first = next(iter(next(iter(rows.values())).values()))
        lines += [f"### {test} ({first.seeds} seeds x {first.images} images)", "",
                  "| variant | " + " | ".join(TABLE_METRICS) + " |", "|---|" + "---|" * len(TABLE_METRICS)]
        for name, cells in rows.items():
            base = summarise(scores, design.baselines[name], test)
            lines.append(f"| {name} | " + " | ".join(
                _verdict_cell(cells[k], base.mean[k] if base else math.nan) if k in cells else "" for k in TABLE_METRICS)
                         + " |")
        lines.append("")
    effects = detectable_effects(design, scores, found)
    if effects:
        lines += ["## What this run could detect", "",
                  "Per test set and metric: the smallest true difference from the baseline that a comparison finds "
                  "with 80% power, from the median standard error of its comparisons (the question above): at 5% per "
                  f"comparison, and at 5% / {family} (what Holm asks of the first comparison of this family); in the "
                  "metric's units and as % of the baseline's mean.", "",
                  "| test | " + " | ".join(TABLE_METRICS) + " |", "|---|" + "---|" * len(TABLE_METRICS)]
        for test, cells in effects.items():
            lines.append(f"| {test} | " + " | ".join(
                f"{cells[k][0]:.3g} ({cells[k][1]:.1f}%); {cells[k][2]:.3g} ({cells[k][3]:.1f}%)" if k in cells else ""
                for k in TABLE_METRICS) + " |")
        lines.append("")
    lines += _dependence_lines(design, found, scores)
    nans = nan_scores([s for s in scores if s.seed is not None])
    if nans:
        lines += ["## NaN scores (left out of their metric's comparisons)", "",
                  "| variant | seed | test | image | metric |", "|---|---|---|---|---|"]
        lines += [f"| {v} | {sd} | {t} | {im} | {k} |" for v, sd, t, im, k in nans] + [""]
    return lines


def markdown(spec: Spec | Design, scores: list[Score], missing: list[str]) -> str:
    """results.md: the verdicts, what the run could detect, then a table of means per test set
    (rows: variants, then the plain fusions and published numbers)."""
    design = Design.of(spec)
    lines = [f"# Experiment {design.name}", "", f"Spec: {design.source}; seeds {', '.join(map(str, design.seeds))}.",
             ""]
    lines += _differences(design, scores)
    lines += ["## Means", "", "Each cell: mean over seeds of the seed's mean over the test images, ± the sample "
              "standard deviation of those seed means.", ""]
    for test, published in design.tests.items():
        count = len({s.image for s in scores if s.dataset == test})
        lines += [f"## {test} ({count} images)", "",
                  "| variant | seeds | " + " | ".join(TABLE_METRICS) + " |",
                  "|---|---|" + "---|" * len(TABLE_METRICS)]
        for variant in list(design.variants) + [f"{b} fusion" for b in BASELINES]:
            summary = summarise(scores, variant, test)
            if summary is not None:
                lines.append(f"| {variant} | {summary.seeds if variant in design.variants else '-'} | "
                             + " | ".join(_cell(summary, k) for k in TABLE_METRICS) + " |")
        if published:
            row = PUBLISHED[published]
            lines.append(f"| {SOURCE} ({published}) | - | "
                         + " | ".join(f"{row[k]:.2f}" if k in PUBLISHED_METRICS else "" for k in TABLE_METRICS)
                         + " |")
        lines.append("")
    if missing:
        lines += ["## Not yet scored", ""] + [f"- {m}" for m in missing] + [""]
    return "\n".join(lines)


def read_csv(path: str) -> list[Score]:
    """The scores of a results.csv (:func:`write_csv`'s columns; a file without the ``model``
    column, from before there was one, reads as model crossfuse)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"variant", "seed", "dataset", "image"} <= set(rows[0]):
        raise ValueError(f"{path} is not an experiment's results.csv (it needs the columns model, variant, seed, "
                         "dataset, image and the metrics)")
    return [Score(variant=r["variant"], seed=int(r["seed"]) if r["seed"] else None, dataset=r["dataset"],
                  image=r["image"], model=r.get("model", "crossfuse" if r["seed"] else ""),
                  metrics={k: float(r[k]) for k in NAMES if k in r}) for r in rows]
