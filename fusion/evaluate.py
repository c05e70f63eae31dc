"""``crossfuse eval``: score fused images against their source pairs with the protocol's metrics.

Fused images are matched to pairs by id (a folder's stem): ``FUSED_DIR/<id>.<png|jpg|bmp|tif>``.
Images are scored in parallel worker processes; the table has a row per image and a mean row per
dataset; the CSV header is exactly ``dataset,name,EN,SD,SF,AG,MI,SCD,VIF,Qabf,SSIM,CC,PSNR,MSE``
and it ends with a ``mean`` row per dataset, as the table and the JSON do.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from crossfuse.errors import EvalError, OutputExistsError
from crossfuse.fusion.metrics import NAMES, all_metrics, read_gray
from crossfuse.manifest import IMAGE_SUFFIXES, Manifest
from crossfuse.progress import Progress, no_progress
from crossfuse.system import available_cores



@dataclass(frozen=True, kw_only=True)
class Row:
    """Scores of one fused image (``name`` = the pair id) of dataset ``dataset``."""

    dataset: str
    name: str
    metrics: dict[str, float]


def find_fused(fused_dir: str, pair_id: str) -> str:
    """The fused image of ``pair_id`` in ``fused_dir``, or an EvalError naming what was expected."""
    for suffix in IMAGE_SUFFIXES:
        path = os.path.join(fused_dir, pair_id + suffix)
        if os.path.isfile(path):
            return path
    raise EvalError(f"no fused image for pair {pair_id!r}: expected {os.path.join(fused_dir, pair_id)}.png "
                    f"(or {', '.join(IMAGE_SUFFIXES[1:])}). Fuse it first, or evaluate the pairs you have.")


def _single_threaded() -> None:
    """Worker processes share the cores: one torch thread each, or they oversubscribe."""
    import torch

    torch.set_num_threads(1)


def score(fused: str, ir: str, vis: str) -> dict[str, float]:
    """All metrics of one fused image against its infrared and visible sources (paths or URLs)."""
    f, a, b = read_gray(fused), read_gray(ir), read_gray(vis)
    if not (f.shape == a.shape == b.shape):
        raise EvalError(f"{fused} is {f.shape[1]}x{f.shape[0]} but its sources {ir} and {vis} are "
                        f"{a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}; fuse at the sources' size.")
    return all_metrics(f, a, b)


def evaluate(fused_dir: str, datasets: list[Manifest], *, workers: int | None = None,
             progress: Progress = no_progress) -> list[Row]:
    """Score the fused image of every pair of ``datasets`` in ``workers`` processes (None: one per
    core); every file is located before any work starts."""
    jobs = [(m.name, p.id, find_fused(fused_dir, p.id), m.url(p.ir), m.url(p.vis)) for m in datasets for p in m.pairs]
    if not jobs:
        raise EvalError("the given pairs list no images to evaluate.")
    workers = min(workers or available_cores(), len(jobs))
    rows: list[Row] = []
    with progress("evaluate", len(jobs)) as advance:
        if workers <= 1:
            results = (score(*job[2:]) for job in jobs)
            for job, metrics in zip(jobs, results):
                rows.append(Row(dataset=job[0], name=job[1], metrics=metrics))
                advance(1, job[1])
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded) as pool:
                for job, metrics in zip(jobs, pool.map(score, *zip(*[j[2:] for j in jobs]))):
                    rows.append(Row(dataset=job[0], name=job[1], metrics=metrics))
                    advance(1, job[1])
    return rows


def means(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Mean of each metric per dataset, in order of first appearance."""
    out: dict[str, dict[str, float]] = {}
    for dataset in dict.fromkeys(r.dataset for r in rows):
        mine = [r.metrics for r in rows if r.dataset == dataset]
        out[dataset] = {k: float(np.mean([m[k] for m in mine])) for k in NAMES}
    return out


def table(rows: list[Row]) -> str:
    """A plain-text table: one row per image, then a mean row per dataset; columns aligned."""
    width = max([len(r.name) for r in rows] + [len(f"mean {d}") for d in means(rows)] + [4])
    head = f"{'name':<{width}}  " + "  ".join(f"{n:>8}" for n in NAMES)
    lines = [head, "-" * len(head)]
    lines += [f"{r.name:<{width}}  " + "  ".join(f"{r.metrics[n]:>8.4f}" for n in NAMES) for r in rows]
    lines.append("-" * len(head))
    lines += [f"{'mean ' + d:<{width}}  " + "  ".join(f"{m[n]:>8.4f}" for n in NAMES) for d, m in means(rows).items()]
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str) -> None:
    """One line per image, then one per dataset with its means (name ``mean``); header
    ``dataset,name,EN,...,MSE``; full precision."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("dataset", "name") + NAMES)
        for r in rows:
            w.writerow([r.dataset, r.name] + [repr(r.metrics[n]) for n in NAMES])
        for dataset, m in means(rows).items():
            w.writerow([dataset, "mean"] + [repr(m[n]) for n in NAMES])


def check_outputs(paths: list[str | None], *, overwrite: bool) -> None:
    """Refuse, before any scoring, to replace an existing output file unless ``overwrite``."""
    existing = [p for p in paths if p and os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose "
                               "another file.")


def write_json(rows: list[Row], path: str) -> None:
    """Per-image records and per-dataset means."""
    doc = {"images": [{"dataset": r.dataset, "name": r.name, **r.metrics} for r in rows], "means": means(rows)}
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
