"""An experiment's plots: the verdicts per test set (each variant minus the baseline with its 95%
interval, one panel per metric), each metric against K per test set (the aligned variants at each
K, with the other variants as horizontal lines), and a comparison sheet per test set (IR | VIS |
mean fusion | max fusion | each variant, seed 0 or the first seed, a few pairs)."""

from __future__ import annotations

import os

import numpy as np

from crossfuse import manifest
from crossfuse.experiment.results import TABLE_METRICS, Score, summarise, verdicts
from crossfuse.experiment.layout import Layout
from crossfuse.experiment.spec import Spec
from crossfuse.fusion.inference import output_path
from crossfuse.fusion.metrics import read_gray
from crossfuse.plotting import comparison_sheet, image_for_sheet, pyplot, save_figure


def _families_with_k(spec: Spec) -> dict[str, list[tuple[int, str]]]:
    """Variant families that were expanded over several K: family -> [(K, variant name)]."""
    out: dict[str, list[tuple[int, str]]] = {}
    for v in spec.variants.values():
        if v.k is not None and v.name != v.family:
            out.setdefault(v.family, []).append((v.k, v.name))
    return {f: sorted(ks) for f, ks in out.items()}


def metric_vs_k(spec: Spec, scores: list[Score], test: str, path: str) -> bool:
    """One panel per metric: mean +- sd over seeds against K; False when no variant varies K."""
    families = _families_with_k(spec)
    if not families:
        return False
    plt = pyplot()
    cols = 5
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.0), squeeze=False)
    flat_lines = [v for v in spec.variants if not any(v in [n for _, n in ks] for ks in families.values())]
    # The plain fusions are in results.md, not here: far off, they would flatten the variants' differences.
    for ax, metric in zip(axes.flat, TABLE_METRICS):
        ax.set_xscale("log")
        for family, ks in families.items():
            pts = [(k, summarise(scores, name, test)) for k, name in ks]
            pts = [(k, s) for k, s in pts if s is not None]
            if pts:
                xs = [k for k, _ in pts]
                ax.errorbar(xs, [s.mean[metric] for _, s in pts], yerr=[np.nan_to_num(s.sd[metric]) for _, s in pts],
                            marker="o", capsize=3, label=f"{family} (at each K)")
                ax.set_xticks(xs, [str(k) for k in xs])
                ax.minorticks_off()
        for i, name in enumerate(flat_lines):
            s = summarise(scores, name, test)
            if s is not None:
                ax.axhline(s.mean[metric], linestyle="--", linewidth=1.2, color=f"C{(i + len(families)) % 10}",
                           label=f"{name} (no K)")
        ax.set_xlabel("K (patches retrieved)")
        ax.set_ylabel(f"{metric}, mean of {test}", fontsize=8)
        ax.set_title(metric, fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.suptitle(f"{spec.name}: metrics on {test} against K (error bars: sd over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return True


#: Colours of the three verdicts in the plot.
VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red"}


def verdict_plot(spec: Spec, scores: list[Score], test: str, path: str) -> bool:
    """One panel per metric: each variant's difference from the baseline (a dot) and its 95%
    interval (a bar), green where better, red where worse, grey where there is no evidence; a
    line at 0. False when there is nothing to compare (one variant, or nothing scored)."""
    rows = verdicts(spec, scores).get(test)
    if not rows:
        return False
    plt = pyplot()
    cols = 5
    names = list(rows)
    fig, axes = plt.subplots(2, cols, figsize=(3.4 * cols, 1.2 + 0.42 * len(names) * 2), squeeze=False)
    for ax, metric in zip(axes.flat, TABLE_METRICS):
        for y, name in enumerate(names):
            iv = rows[name].get(metric)
            if iv is None:
                continue
            colour = VERDICT_COLOURS.get(iv.verdict, "0.45")
            if np.isfinite(iv.lo):
                ax.plot([iv.lo, iv.hi], [y, y], color=colour, linewidth=2.2)
            ax.plot([iv.mean], [y], "o", color=colour)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(names)), names if ax in axes[:, 0] else [""] * len(names), fontsize=8)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
    first = next(iter(next(iter(rows.values())).values()))
    fig.suptitle(f"{spec.name} on {test}: variant - {spec.baseline}, 95% interval ({first.seeds} seeds x "
                 f"{first.images} images; green better, red worse, grey no evidence)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return True


def sheet(spec: Spec, layout: Layout, test: str, path: str) -> bool:
    """IR | VIS | baselines | each variant (its first seed) for the first ``sheet_pairs`` pairs."""
    dataset = manifest.load(spec.tests[test].pairs)
    seed = spec.seeds[0]
    columns = [("mean fusion", layout.baseline_fused("mean", test)), ("max fusion", layout.baseline_fused("max", test))]
    columns += [(f"{v} (seed {seed})", layout.fused(v, seed, test)) for v in spec.variants]
    rows = []
    for pair in dataset.pairs[:spec.sheet_pairs]:
        present = [(t, output_path(d, pair.id)) for t, d in columns if os.path.exists(output_path(d, pair.id))]
        images = [read_gray(dataset.url(pair.ir)).astype(np.uint8), image_for_sheet(dataset.url(pair.vis))]
        titles = ["IR", "VIS"] + [t for t, _ in present]
        rows.append((pair.id, images + [image_for_sheet(p) for _, p in present], titles))
    titles = max((r[2] for r in rows), key=len, default=[])
    rows = [(label, images) for label, images, t in rows if len(t) == len(titles)]
    if not rows:
        return False
    comparison_sheet(rows, titles, path, suptitle=f"{spec.name}: {test}")
    return True


def draw(spec: Spec, layout: Layout, scores: list[Score]) -> list[str]:
    """Every plot the scores allow; returns the paths written."""
    folder = os.path.join(layout.root, "plots")
    os.makedirs(folder, exist_ok=True)
    written = []
    for test in spec.tests:
        path = os.path.join(folder, f"verdicts_{test}.png")
        if verdict_plot(spec, scores, test, path):
            written.append(path)
        path = os.path.join(folder, f"metrics_vs_k_{test}.png")
        if metric_vs_k(spec, scores, test, path):
            written.append(path)
        path = os.path.join(folder, f"sheet_{test}.png")
        if sheet(spec, layout, test, path):
            written.append(path)
    return written
