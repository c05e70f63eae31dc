"""``crossfuse eval``: score fused images against their source pairs under a protocol's metrics.

Fused images are matched to pairs by id (a folder's stem): ``FUSED_DIR/<id>.<png|jpg|bmp|tif>``.
Images are scored in parallel worker processes; the table has a row per image and a mean row per
dataset. Protocols (:data:`PROTOCOLS`): ``cddfuse`` (the default; the CSV header is exactly
``dataset,name,EN,SD,SF,AG,MI,SCD,VIF,Qabf,SSIM,CC,PSNR,MSE``), ``vifb`` (VIFB's 13 metrics,
colour per channel), ``tang`` and ``tang2022`` (Tang's MATLAB toolbox today and in its 2022
version, 11 metrics), ``all`` (every one, columns prefixed ``cddfuse:``, ``vifb:``, ``tang:`` and
``tang2022:``). The CSV ends with a ``mean`` row per dataset, as the table and the JSON do.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from crossfuse import atomic
from crossfuse.errors import EvalError, OutputExistsError
from crossfuse.fusion.metrics import NAMES, all_metrics, tang, vifb
from crossfuse.fusion.metrics.cddfuse import gray
from crossfuse.fusion.metrics.common import read_stored, rgb2gray
from crossfuse.manifest import IMAGE_SUFFIXES, Manifest
from crossfuse.progress import Progress, no_progress
from crossfuse.system import available_cores



@dataclass(frozen=True, kw_only=True)
class Row:
    """Scores of one fused image (``name`` = the pair id) of dataset ``dataset``."""

    dataset: str
    name: str
    metrics: dict[str, float]


def _candidates(fused_dir: str, pair_id: str) -> list[str]:
    """Every file in ``fused_dir`` that could be the fused image of ``pair_id``: ``<id>.<suffix>``
    for each image suffix, in either case."""
    folder, stem = os.path.split(os.path.join(fused_dir, pair_id))
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(os.path.join(folder, n) for n in names if os.path.splitext(n)[0] == stem
                  and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES and os.path.isfile(os.path.join(folder, n)))


def find_fused(fused_dir: str, pair_id: str, *, missing_ok: bool = False) -> str | None:
    """The fused image of ``pair_id`` in ``fused_dir``. Two candidates (``X.png`` and ``X.jpg``)
    are an EvalError naming both; none is an EvalError naming what was expected, or None when
    ``missing_ok``."""
    found = _candidates(fused_dir, pair_id)
    if len(found) > 1:
        raise EvalError(f"{' and '.join(found)} are both a fused image of pair {pair_id!r}; crossfuse will not guess "
                        "which to score. Keep one (move the other out of the folder).")
    if found:
        return found[0]
    if missing_ok:
        return None
    raise EvalError(f"no fused image for pair {pair_id!r}: expected {os.path.join(fused_dir, pair_id)}.png "
                    f"(or {', '.join(IMAGE_SUFFIXES[1:])}). Fuse it first, or evaluate the pairs you have.")


@dataclass(frozen=True, kw_only=True)
class Missing:
    """A pair without a fused image: its ``dataset`` and ``name`` (the pair id)."""

    dataset: str
    name: str


def missing(fused_dir: str, datasets: list[Manifest]) -> list[Missing]:
    """The pairs of ``datasets`` with no fused image in ``fused_dir`` (an ambiguous one is an EvalError)."""
    return [Missing(dataset=m.name, name=p.id) for m in datasets for p in m.pairs
            if find_fused(fused_dir, p.id, missing_ok=True) is None]


def refuse_missing(where: str, gone: list[Missing], total: int) -> None:
    """An EvalError naming every pair of ``gone`` (up to 20, then a count) and the two ways on."""
    if not gone:
        return
    shown = ", ".join(g.name for g in gone[:20]) + (f" and {len(gone) - 20} more" if len(gone) > 20 else "")
    raise EvalError(f"{where}: no fused image for {len(gone)} of {total} pairs: {shown} (each is looked for as "
                    f"<pair id>.png, or {', '.join(IMAGE_SUFFIXES[1:])}). Fuse them first, or pass "
                    "--skip-missing to score the pairs present (the skipped ids are printed and recorded in "
                    "--json and --markdown).")


def _single_threaded() -> None:
    """Worker processes share the cores: one torch thread each, or they oversubscribe."""
    import torch

    torch.set_num_threads(1)


def _cddfuse(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> dict[str, float]:
    return all_metrics(ir=gray(a), vis=gray(b), fused=gray(f))


def _vifb(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> dict[str, float]:
    return vifb.all_metrics(ir=a, vis=b, fused=f)


def _tang(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> dict[str, float]:
    return tang.all_metrics(ir=rgb2gray(a), vis=rgb2gray(b), fused=rgb2gray(f))


def _tang2022(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> dict[str, float]:
    return tang.all_metrics_2022(ir=rgb2gray(a), vis=rgb2gray(b), fused=rgb2gray(f))


#: Each single protocol: its metric columns, and its metrics of images as stored (each protocol
#: reads them its own way: CDDFuse's gray, VIFB's as they are, Tang's drivers' ``rgb2gray``).
SINGLE = {"cddfuse": (NAMES, _cddfuse), "vifb": (vifb.NAMES, _vifb), "tang": (tang.NAMES, _tang),
          "tang2022": (tang.NAMES, _tang2022)}

#: The protocols ``crossfuse eval`` scores under, and each one's metric columns; ``all`` is every
#: single protocol, its columns prefixed with the protocol's name.
PROTOCOLS = {name: names for name, (names, _) in SINGLE.items()}
PROTOCOLS["all"] = tuple(f"{p}:{n}" for p, names in PROTOCOLS.items() for n in names)


def _same_size(fused: str, ir: str, vis: str, f: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    if not (f.shape[:2] == a.shape[:2] == b.shape[:2]):
        raise EvalError(f"{fused} is {f.shape[1]}x{f.shape[0]} but its sources {ir} and {vis} are "
                        f"{a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}; fuse at the sources' size.")


#: The smallest image side each protocol's metrics are defined on, and why: CDDFuse's 7x7 SSIM
#: window, VIFB's 11x11 one, the 17x17 window of VIF's first scale in Tang's toolbox (smaller, it
#: has no valid pixel and VIF is 0 / 0). Its 2022 version squares uint8 images at that scale, which
#: saturate and leave no variance there, so its VIF needs the second scale: 25 pixels (a 9x9 window
#: on the filtered, decimated image). Tested on every size from 1 to 40.
MIN_SIDE = {"cddfuse": (7, "the SSIM window"), "vifb": (11, "the SSIM window"), "tang": (17, "VIF's window"),
            "tang2022": (25, "VIF's second scale")}
MIN_SIDE["all"] = max(MIN_SIDE.values())


def _large_enough(fused: str, f: np.ndarray, protocol: str) -> None:
    need, why = MIN_SIDE[protocol]
    if min(f.shape[:2]) < need:
        raise EvalError(f"{fused} is {f.shape[1]}x{f.shape[0]}; the {protocol} protocol's metrics need images of at "
                        f"least {need}x{need} pixels ({why}). Score larger images.")


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise EvalError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")


def score(*, ir: str, vis: str, fused: str, protocol: str = "cddfuse") -> dict[str, float]:
    """The metrics of one ``fused`` image against its ``ir`` and ``vis`` sources (paths or URLs;
    keyword-only, since a swap would run and give wrong numbers), under ``protocol`` (a key of
    :data:`PROTOCOLS`), by column name."""
    _check_protocol(protocol)
    f, a, b = read_stored(fused), read_stored(ir), read_stored(vis)  # each file read once, whatever the protocol
    _same_size(fused, ir, vis, f, a, b)
    _large_enough(fused, f, protocol)
    if protocol in ("vifb", "all") and f.ndim == 2 and (a.ndim == 3 or b.ndim == 3):
        colour = " and ".join(p for p, x in ((ir, a), (vis, b)) if x.ndim == 3)
        raise EvalError(f"{fused} is a gray image but {colour} is in colour: VIFB's Qcb and Qcv are computed per "
                        "channel and its MATLAB code fails on that mix. Score a 3-channel fused image, or use "
                        "--protocol cddfuse.")
    if protocol != "all":
        return SINGLE[protocol][1](a, b, f)
    return {f"{name}:{k}": v for name, (_, metrics) in SINGLE.items() for k, v in metrics(a, b, f).items()}


def _score_job(job: tuple[str, str, str, str]) -> dict[str, float]:
    fused, ir, vis, protocol = job
    return score(ir=ir, vis=vis, fused=fused, protocol=protocol)


def evaluate(fused_dir: str, datasets: list[Manifest], *, workers: int | None = None, protocol: str = "cddfuse",
             progress: Progress = no_progress, skip: frozenset[tuple[str, str]] = frozenset(),
             label: str = "evaluate") -> list[Row]:
    """Score the fused image of every pair of ``datasets`` under ``protocol`` in ``workers``
    processes (None: one per core); every file is located before any work starts, and every
    missing one is named (:func:`refuse_missing`). Pairs in ``skip`` ((dataset, id)) are left
    out: ``--skip-missing`` passes those :func:`missing` found."""
    _check_protocol(protocol)
    wanted = [(m, p) for m in datasets for p in m.pairs if (m.name, p.id) not in skip]
    located = [find_fused(fused_dir, p.id, missing_ok=True) for _, p in wanted]  # each file found once
    refuse_missing(fused_dir, [Missing(dataset=m.name, name=p.id) for (m, p), f in zip(wanted, located) if f is None],
                   sum(len(m.pairs) for m in datasets))
    jobs = [(m.name, p.id, f, m.source(p.ir), m.source(p.vis), protocol) for (m, p), f in zip(wanted, located)]
    if not jobs:
        if wanted or not skip:
            raise EvalError("the given pairs list no images to evaluate.")
        raise EvalError(f"nothing is left to score in {fused_dir}: every pair of the given lists lacks a fused image "
                        "there (or in another method's folder, with --skip-missing, which scores every method on the "
                        "same pairs). Fuse the pairs into it, or leave the empty method folder out.")
    workers = min(workers or available_cores(), len(jobs))
    rows: list[Row] = []
    with progress(label, len(jobs)) as advance:
        if workers <= 1:
            results = (_score_job(job[2:]) for job in jobs)
            for job, metrics in zip(jobs, results):
                rows.append(Row(dataset=job[0], name=job[1], metrics=metrics))
                advance(1, job[1])
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded) as pool:
                for job, metrics in zip(jobs, pool.map(_score_job, [j[2:] for j in jobs])):
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


#: The widest table printed as it is; a wider one (``--protocol all``) is printed as the means
#: alone, one metric per line, and the whole table is left to --csv/--json.
MAX_WIDTH = 160


def table(rows: list[Row]) -> str:
    """A plain-text table: one row per image, then a mean row per dataset; columns aligned. When
    that would be wider than :data:`MAX_WIDTH`, the per-dataset means alone, transposed."""
    names = columns(rows)
    width = max([len(r.name) for r in rows] + [len(f"mean {d}") for d in means(rows)] + [4])
    cell = max(8, *(len(n) for n in names))
    head = f"{'name':<{width}}  " + "  ".join(f"{n:>{cell}}" for n in names)
    if len(head) > MAX_WIDTH:
        return transposed_means(rows)
    lines = [head, "-" * len(head)]
    lines += [f"{r.name:<{width}}  " + "  ".join(f"{r.metrics[n]:>{cell}.4f}" for n in names) for r in rows]
    lines.append("-" * len(head))
    lines += [f"{'mean ' + d:<{width}}  " + "  ".join(f"{m[n]:>{cell}.4f}" for n in names)
              for d, m in means(rows).items()]
    return "\n".join(lines)


def transposed_means(rows: list[Row]) -> str:
    """The mean of each metric per dataset, one metric per line (a narrow summary of a wide table)."""
    names, by_dataset = columns(rows), means(rows)
    counts = {d: sum(1 for r in rows if r.dataset == d) for d in by_dataset}
    titles = [f"mean {d} ({counts[d]})" for d in by_dataset]
    width = max(len(n) for n in names + ("metric",))
    cells = [max(12, len(t)) for t in titles]
    head = f"{'metric':<{width}}  " + "  ".join(f"{t:>{c}}" for t, c in zip(titles, cells))
    lines = [head, "-" * len(head)]
    lines += [f"{n:<{width}}  " + "  ".join(f"{m[n]:>{c}.4f}" for m, c in zip(by_dataset.values(), cells))
              for n in names]
    lines.append("(per-image scores: write them with --csv or --json)")
    return "\n".join(lines)


def missing_note(gone: list[Missing]) -> str:
    """One line naming the pairs skipped for want of a fused image (empty when none were)."""
    if not gone:
        return ""
    return f"skipped {len(gone)} pair(s) with no fused image (--skip-missing): " + ", ".join(
        f"{g.dataset}/{g.name}" for g in gone)


def write_csv(rows: list[Row], path: str) -> None:
    """One line per image, then one per dataset with its means (name ``mean``); header
    ``dataset,name,`` then the protocol's columns (``EN,...,MSE`` by default); full precision."""
    names = columns(rows)
    lines = [[r.dataset, r.name] + [repr(r.metrics[n]) for n in names] for r in rows]
    lines += [[dataset, "mean"] + [repr(m[n]) for n in names] for dataset, m in means(rows).items()]
    atomic.write_csv(path, ("dataset", "name") + names, lines)


def check_outputs(paths: list[str | None], *, overwrite: bool) -> None:
    """Refuse, before any work, an output file whose folder does not exist (or is a file), one that
    is a folder, and (unless ``overwrite``) one that exists."""
    for p in paths:
        if not p:
            continue
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            what = "is a file" if os.path.exists(parent) else "does not exist"
            raise OutputExistsError(f"{p} cannot be written: its folder {parent} {what}. Create the folder, or choose "
                                    "another path.")
        if os.path.isdir(p):
            raise OutputExistsError(f"{p} is a folder; give a file name.")
    existing = [p for p in paths if p and os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose "
                               "another file.")


def write_json(rows: list[Row], path: str, *, skipped: list[Missing] = ()) -> None:
    """Per-image records and per-dataset means; with ``skipped`` (``--skip-missing``) also the
    pairs left out for want of a fused image."""
    doc = {"images": [{"dataset": r.dataset, "name": r.name, **r.metrics} for r in rows], "means": means(rows)}
    if skipped:
        doc["skipped_missing"] = [{"dataset": g.dataset, "name": g.name} for g in skipped]
    atomic.write_json(path, doc)  # strict JSON: a NaN or infinite value is null
