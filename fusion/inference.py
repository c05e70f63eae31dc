"""Fusing image pairs with a trained or official checkpoint, as each model's test script does.

Each model's test pipeline is its own (:meth:`crossfuse.models.base.Model.fuse_image`); for
CrossFuse the output is what the release's test script (CDDFuse's ``test_IVF.py``) writes,
pixel for pixel: the visible image's Y, Cr and Cb as OpenCV's 8-bit ``BGR2YCrCb`` computes them
(it rounds; Pillow's YCbCr truncates), the network fed Y/255 and the infrared/255, its sigmoid
output min-max normalised per image in float32, times 255, cast to uint8 by truncation, and put
back with the visible Cr and Cb through OpenCV's ``YCrCb2RGB`` arithmetic (:mod:`crossfuse.ycrcb`,
numpy only). ``round`` rounds instead of truncating (unbiased; not the release's). Gray visible
images give gray results. ``tile`` processes big images in overlapping tiles so memory stays
bounded; the network's channel attention spans the whole input, so tiled results differ
slightly from whole-image ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from crossfuse import atomic, models
from crossfuse.errors import FuseError, ManifestError, OutputExistsError, PairError
from crossfuse.imageio import read_pair
from crossfuse.models.base import FuseOptions, Model, is_gray, min_max_uint8, tiles as _tiles  # noqa: F401
from crossfuse.manifest import Manifest, is_within
from crossfuse.progress import Progress, no_progress



def _crossfuse() -> Model:
    return models.get("crossfuse")


def fuse_y(model: torch.nn.Module, *, vis_y: np.ndarray, ir: np.ndarray, device: torch.device,
           options: FuseOptions = FuseOptions()) -> np.ndarray:
    """The CrossFuse network's raw output (H, W) float32 in (0, 1) for visible Y and infrared
    (H, W) uint8 (:meth:`crossfuse.models.base.Model.fuse_y` on [0, 1] inputs)."""
    return _crossfuse().fuse_y(model, vis_y=vis_y.astype(np.float32) / 255.0, ir=ir.astype(np.float32) / 255.0,
                               device=device, options=options)


#: CrossFuse's output conversion (the release's): min-max normalised, truncated to uint8.
to_uint8 = min_max_uint8


def fuse_images(model: torch.nn.Module, *, vis_rgb: np.ndarray, ir: np.ndarray, device: torch.device,
                options: FuseOptions = FuseOptions(), fusion_model: Model | None = None) -> Image.Image:
    """Fuse a visible (H, W, 3) uint8 RGB image with an infrared (H, W) uint8 one through network
    ``model`` of ``fusion_model`` (None: CrossFuse), by that model's test pipeline; returns the
    colour result (or gray when ``options.gray`` or the visible image is gray)."""
    return (fusion_model or _crossfuse()).fuse_image(model, vis_rgb=vis_rgb, ir=ir, device=device, options=options)


#: The record of how a folder's fused images were made, kept beside them for ``resume``.
RECORD = ".crossfuse-fuse.json"


@dataclass(frozen=True, kw_only=True)
class FuseResult:
    """``written``: paths fused by this call; ``kept``: pairs already fused by an earlier run of the
    same settings (``resume``); ``skipped``: ``{"id", "path", "error"}`` of bad pairs (``skip_bad``)."""

    written: list[str]
    kept: list[str]
    skipped: list[dict]


def _record(checkpoint_sha256: str | None, options: FuseOptions, fusion_model: Model, net: torch.nn.Module) -> dict:
    """What decides a fused image's pixels (device and layout change them by float rounding only)."""
    record = {"checkpoint_sha256": checkpoint_sha256, "gray": options.gray, "round": options.round,
              "tile": options.tile, "overlap": options.overlap if options.tile else None, "bf16": options.bf16}
    if fusion_model.name != "crossfuse":
        record["model"] = fusion_model.name
    if getattr(net, "strategy", None) is not None:
        record["strategy"] = net.strategy
    return record


def output_path(out_dir: str, pair_id: str) -> str:
    """Where the fused image of ``pair_id`` goes (ids are plain names: they stay under ``out_dir``)."""
    return os.path.join(out_dir, f"{pair_id}.png")


def _check_inside(out_dir: str, path: str) -> None:
    """Refuse an output whose folder resolves outside ``out_dir`` (a sub-folder that is a symlink
    to elsewhere): ids are plain names, but the folders under --out may not be."""
    folder = os.path.dirname(path)
    if not is_within(folder, out_dir):
        raise FuseError(f"{path} would be written outside --out {out_dir}: {folder} leads to "
                        f"{os.path.realpath(folder)} (a symlink). Remove the link, or choose another --out.")


def _check_outputs(dataset: Manifest, out_dir: str, record: dict, *, overwrite: bool, resume: bool) -> set[str]:
    """Ids whose output exists; refuses (before any work) when that would replace or mix results."""
    if overwrite and resume:
        raise FuseError("--resume keeps finished images and --overwrite replaces them; pass one of them.")
    existing = {p.id for p in dataset.pairs if os.path.exists(output_path(out_dir, p.id))}
    if not existing:
        return set()
    if overwrite:
        # Every image left in the folder must have been made with the record about to be written,
        # or a --resume after a kill would keep stale ones.
        for pair_id in existing:
            os.remove(output_path(out_dir, pair_id))
        return set()
    if not resume:
        some = sorted(existing)[:3]
        raise OutputExistsError(f"{out_dir} already holds fused images for {len(existing)} pair(s) "
                               f"({', '.join(some)}{' ...' if len(existing) > 3 else ''}); pass --resume to fuse only "
                               "the missing ones, --overwrite to replace them, or choose another --out.")
    try:
        with open(os.path.join(out_dir, RECORD)) as fh:
            before = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        before = None
    if before != record:
        raise FuseError(f"--resume: the images in {out_dir} were made with other settings ({before} there, "
                        f"{record} now); pass the same checkpoint and options, or --overwrite.")
    return existing


#: The smallest image side the network takes (its reflection padding needs 2; 3 keeps a 3x3 window).
MIN_SIDE = 3


def _check_fusable(dataset: Manifest, pair, shape: tuple[int, int]) -> None:
    if min(shape) < MIN_SIDE:
        url = dataset.url(pair.vis)
        raise PairError(f"pair {pair.id!r}: {url} is {shape[1]}x{shape[0]}; the network fuses images of at least "
                        f"{MIN_SIDE}x{MIN_SIDE} pixels.", pair_id=pair.id, path=url)


def fuse_dataset(model: torch.nn.Module, dataset: Manifest, out_dir: str, *, device: torch.device,
                 options: FuseOptions = FuseOptions(), overwrite: bool = False, resume: bool = False,
                 skip_bad: bool = False, checkpoint_sha256: str | None = None, fusion_model: Model | None = None,
                 progress: Progress = no_progress) -> FuseResult:
    """Fuse every pair of a manifest with network ``model`` of ``fusion_model`` (None: CrossFuse)
    into ``out_dir/<id>.png``, each written whole (temporary file,
    then rename). Existing images are replaced only with ``overwrite``; ``resume`` fuses only the
    missing ones when the folder's record says they were made with the same checkpoint and
    options; ``skip_bad`` lists unreadable or mismatched pairs instead of stopping at the first."""
    if not dataset.pairs:
        raise ManifestError(f"{dataset.origin} lists no image pairs to fuse.")
    fusion_model = fusion_model or _crossfuse()
    record = _record(checkpoint_sha256, options, fusion_model, model)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputExistsError(f"--out {out_dir} is a file; fused images go into a folder: choose another --out.")
    done = _check_outputs(dataset, out_dir, record, overwrite=overwrite, resume=resume)
    os.makedirs(out_dir, exist_ok=True)
    atomic.write_text(os.path.join(out_dir, RECORD), json.dumps(record))
    model = model.to(device).eval()
    written: list[str] = []
    skipped: list[dict] = []
    with progress("fuse", len(dataset.pairs)) as advance:
        advance(len(done))
        for pair in dataset.pairs:
            if pair.id in done:
                continue
            try:
                loaded = read_pair(dataset, pair)
                _check_fusable(dataset, pair, loaded.ir.shape)
            except PairError as exc:
                if not skip_bad:
                    raise PairError(f"{exc} Pass --skip-bad to skip bad pairs and list them.",
                                    pair_id=exc.pair_id, path=exc.path) from exc
                skipped.append({"id": exc.pair_id, "path": exc.path, "error": str(exc)})
                advance(1, f"skipped {pair.id}")
                continue
            image = fuse_images(model, vis_rgb=loaded.vis, ir=loaded.ir, device=device, options=options,
                                fusion_model=fusion_model)
            path = output_path(out_dir, pair.id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _check_inside(out_dir, path)
            with atomic.replacing(path) as tmp:
                image.save(tmp, format="PNG")
            written.append(path)
            advance(1, pair.id)
    return FuseResult(written=written, kept=sorted(done), skipped=skipped)
