"""``crossfuse eval``: score fused images against their source pairs under a protocol's metrics.

Fused images are matched to pairs by id (a folder's stem): ``FUSED_DIR/<id>.<png|jpg|bmp|tif>``.
Images are scored in parallel worker processes; the table has a row per image and a mean row per
dataset. Protocols (:data:`PROTOCOLS`): ``cddfuse`` (the default; the CSV header is exactly
``dataset,name,EN,SD,SF,AG,MI,SCD,VIF,Qabf,SSIM,CC,PSNR,MSE``), ``vifb`` (VIFB's 13 metrics,
colour per channel), ``all`` (both, columns prefixed ``cddfuse:`` and ``vifb:``). The CSV ends
with a ``mean`` row per dataset, as the table and the JSON do.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from crossfuse import atomic
from crossfuse.errors import EvalError, OutputExistsError
from crossfuse.fusion.metrics import NAMES, all_metrics, vifb
from crossfuse.fusion.metrics.cddfuse import gray
from crossfuse.fusion.metrics.common import read_stored
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


#: The protocols ``crossfuse eval`` scores under, and each one's metric columns.
PROTOCOLS = {"cddfuse": NAMES, "vifb": vifb.NAMES,
             "all": tuple(f"cddfuse:{n}" for n in NAMES) + tuple(f"vifb:{n}" for n in vifb.NAMES)}


def _same_size(fused: str, ir: str, vis: str, f: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    if not (f.shape[:2] == a.shape[:2] == b.shape[:2]):
        raise EvalError(f"{fused} is {f.shape[1]}x{f.shape[0]} but its sources {ir} and {vis} are "
                        f"{a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}; fuse at the sources' size.")


#: The smallest image side each protocol's metrics are defined on (their SSIM windows: CDDFuse's
#: 7x7 uniform filter, VIFB's 11x11 Gaussian); tested on every size from 1 to 40.
MIN_SIDE = {"cddfuse": 7, "vifb": 11, "all": 11}


def _large_enough(fused: str, f: np.ndarray, protocol: str) -> None:
    need = MIN_SIDE[protocol]
    if min(f.shape[:2]) < need:
        raise EvalError(f"{fused} is {f.shape[1]}x{f.shape[0]}; the {protocol} protocol's metrics need images of at "
                        f"least {need}x{need} pixels (the SSIM window). Score larger images.")


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise EvalError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")


def score(fused: str, ir: str, vis: str, protocol: str = "cddfuse") -> dict[str, float]:
    """The metrics of one fused image against its infrared and visible sources (paths or URLs),
    under ``protocol`` (a key of :data:`PROTOCOLS`), by column name."""
    _check_protocol(protocol)
    f, a, b = read_stored(fused), read_stored(ir), read_stored(vis)  # each file read once, whatever the protocol
    _same_size(fused, ir, vis, f, a, b)
    _large_enough(fused, f, protocol)
    out: dict[str, float] = {}
    if protocol in ("cddfuse", "all"):
        prefix = "cddfuse:" if protocol == "all" else ""
        out.update({prefix + k: v for k, v in all_metrics(gray(f), gray(a), gray(b)).items()})
    if protocol in ("vifb", "all"):
        prefix = "vifb:" if protocol == "all" else ""
        out.update({prefix + k: v for k, v in vifb.all_metrics(b, a, f).items()})
    return out


def evaluate(fused_dir: str, datasets: list[Manifest], *, workers: int | None = None, protocol: str = "cddfuse",
             progress: Progress = no_progress) -> list[Row]:
    """Score the fused image of every pair of ``datasets`` under ``protocol`` in ``workers``
    processes (None: one per core); every file is located before any work starts."""
    _check_protocol(protocol)
    jobs = [(m.name, p.id, find_fused(fused_dir, p.id), m.source(p.ir), m.source(p.vis), protocol)
            for m in datasets for p in m.pairs]
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


def columns(rows: list[Row]) -> tuple[str, ...]:
    """The metric columns of scored rows, in their protocol's order."""
    return tuple(rows[0].metrics) if rows else NAMES


def means(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Mean of each metric per dataset, in order of first appearance."""
    out: dict[str, dict[str, float]] = {}
    for dataset in dict.fromkeys(r.dataset for r in rows):
        mine = [r.metrics for r in rows if r.dataset == dataset]
        out[dataset] = {k: float(np.mean([m[k] for m in mine])) for k in columns(rows)}
    return out


def table(rows: list[Row]) -> str:
    """A plain-text table: one row per image, then a mean row per dataset; columns aligned."""
    names = columns(rows)
    width = max([len(r.name) for r in rows] + [len(f"mean {d}") for d in means(rows)] + [4])
    cell = max(8, *(len(n) for n in names))
    head = f"{'name':<{width}}  " + "  ".join(f"{n:>{cell}}" for n in names)
    lines = [head, "-" * len(head)]
    lines += [f"{r.name:<{width}}  " + "  ".join(f"{r.metrics[n]:>{cell}.4f}" for n in names) for r in rows]
    lines.append("-" * len(head))
    lines += [f"{'mean ' + d:<{width}}  " + "  ".join(f"{m[n]:>{cell}.4f}" for n in names)
              for d, m in means(rows).items()]
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str) -> None:
    """One line per image, then one per dataset with its means (name ``mean``); header
    ``dataset,name,`` then the protocol's columns (``EN,...,MSE`` by default); full precision."""
    names = columns(rows)
    lines = [[r.dataset, r.name] + [repr(r.metrics[n]) for n in names] for r in rows]
    lines += [[dataset, "mean"] + [repr(m[n]) for n in names] for dataset, m in means(rows).items()]
    atomic.write_csv(path, ("dataset", "name") + names, lines)


def check_outputs(paths: list[str | None], *, overwrite: bool) -> None:
    """Refuse, before any scoring, to replace an existing output file unless ``overwrite``."""
    existing = [p for p in paths if p and os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose "
                               "another file.")


def write_json(rows: list[Row], path: str) -> None:
    """Per-image records and per-dataset means."""
    doc = {"images": [{"dataset": r.dataset, "name": r.name, **r.metrics} for r in rows], "means": means(rows)}
    atomic.write_text(path, json.dumps(doc, indent=1))
