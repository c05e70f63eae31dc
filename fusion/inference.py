"""Fusing image pairs with a trained or official checkpoint, as the paper's test script does.

By default the output is what the release's test script (CDDFuse's ``test_IVF.py``) writes,
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

from crossfuse import atomic, ycrcb
from crossfuse.errors import FuseError, ManifestError, OutputExistsError, PairError, ParameterError
from crossfuse.fusion.network import CrossFuse
from crossfuse.imageio import read_pair
from crossfuse.manifest import Manifest, is_within
from crossfuse.progress import Progress, no_progress



@dataclass(frozen=True, kw_only=True)
class FuseOptions:
    """``tile``: tile size in pixels (0: whole image); ``overlap``: pixels shared by neighbouring
    tiles; ``bf16``: bfloat16 autocast; ``gray``: write the fused Y alone; ``round``: round the
    normalised output to uint8 instead of truncating it as the release does; ``channels_last``:
    run the convolutions in NHWC layout (1.3-1.5x faster on the CPU here, same numbers to 1e-5)."""

    tile: int = 0
    overlap: int = 32
    bf16: bool = False
    gray: bool = False
    round: bool = False
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.tile < 0 or self.overlap < 0:
            raise ParameterError(f"tile ({self.tile}) and overlap ({self.overlap}) must be >= 0.")
        if self.tile and self.tile <= 2 * self.overlap:
            raise ParameterError(f"--tile {self.tile} must exceed twice --overlap ({self.overlap}).")


def _tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(read_start, read_stop, keep_start, keep_stop) along one axis; kept parts tile [0, length)."""
    if tile <= 0 or tile >= length:
        return [(0, length, 0, length)]
    step = tile - 2 * overlap
    if step <= 0:
        raise ValueError(f"tile {tile} must exceed twice the overlap {overlap}")
    out = []
    for keep in range(0, length, step):
        keep_stop = min(length, keep + step)
        start = max(0, min(keep - overlap, length - tile))
        out.append((start, min(length, start + tile), keep, keep_stop))
    return out


@torch.no_grad()
def fuse_y(model: CrossFuse, *, vis_y: np.ndarray, ir: np.ndarray, device: torch.device,
           options: FuseOptions = FuseOptions()) -> np.ndarray:
    """The network's raw output (H, W) float32 in (0, 1) for visible Y and infrared (H, W) uint8."""
    h, w = ir.shape
    out = np.empty((h, w), dtype=np.float32)
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)  # in place; converting an already converted model is free
    for ys, ye, ks, ke in _tiles(h, options.tile, options.overlap):
        for xs, xe, ls, le in _tiles(w, options.tile, options.overlap):
            v = torch.from_numpy(vis_y[ys:ye, xs:xe].astype(np.float32) / 255.0)[None, None].to(device)
            i = torch.from_numpy(ir[ys:ye, xs:xe].astype(np.float32) / 255.0)[None, None].to(device)
            v, i = (t.contiguous(memory_format=layout) for t in (v, i))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
                f = model(i, v).float()[0, 0].cpu().numpy()
            out[ks:ke, ls:le] = f[ks - ys:ke - ys, ls - xs:le - xs]
    return out


def to_uint8(fused: np.ndarray, *, round: bool = False) -> np.ndarray:
    """(H, W) float32 network output -> uint8 as the release saves it: ``(f - min) / (max - min)``
    then ``* 255`` in float32, cast by truncation (``round``: rounded to nearest instead).
    A constant image (max = min, where the release divides by zero) becomes 0."""
    fused = np.asarray(fused, dtype=np.float32)
    lo, hi = fused.min(), fused.max()
    if not hi > lo:
        return np.zeros(fused.shape, dtype=np.uint8)
    scaled = (fused - lo) / (hi - lo) * np.float32(255.0)
    if round:
        scaled = np.rint(scaled)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def is_gray(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image has R = G = B everywhere (a gray visible image)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def fuse_images(model: CrossFuse, *, vis_rgb: np.ndarray, ir: np.ndarray, device: torch.device,
                options: FuseOptions = FuseOptions()) -> Image.Image:
    """Fuse a visible (H, W, 3) uint8 RGB image with an infrared (H, W) uint8 one; returns the
    colour result (or gray when ``options.gray`` or the visible image is gray)."""
    ycc = ycrcb.rgb_to_ycrcb(vis_rgb)  # a gray image gives Y = R = G = B and Cr = Cb = 128
    fused = to_uint8(fuse_y(model, vis_y=ycc[..., 0], ir=ir, device=device, options=options), round=options.round)
    if options.gray or is_gray(vis_rgb):
        return Image.fromarray(fused, "L")
    return Image.fromarray(ycrcb.ycrcb_to_rgb(np.dstack([fused, ycc[..., 1], ycc[..., 2]])), "RGB")


#: The record of how a folder's fused images were made, kept beside them for ``resume``.
RECORD = ".crossfuse-fuse.json"


@dataclass(frozen=True, kw_only=True)
class FuseResult:
    """``written``: paths fused by this call; ``kept``: pairs already fused by an earlier run of the
    same settings (``resume``); ``skipped``: ``{"id", "path", "error"}`` of bad pairs (``skip_bad``)."""

    written: list[str]
    kept: list[str]
    skipped: list[dict]


def _record(checkpoint_sha256: str | None, options: FuseOptions) -> dict:
    """What decides a fused image's pixels (device and layout change them by float rounding only)."""
    return {"checkpoint_sha256": checkpoint_sha256, "gray": options.gray, "round": options.round,
            "tile": options.tile, "overlap": options.overlap if options.tile else None, "bf16": options.bf16}


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


def fuse_dataset(model: CrossFuse, dataset: Manifest, out_dir: str, *, device: torch.device,
                 options: FuseOptions = FuseOptions(), overwrite: bool = False, resume: bool = False,
                 skip_bad: bool = False, checkpoint_sha256: str | None = None,
                 progress: Progress = no_progress) -> FuseResult:
    """Fuse every pair of a manifest into ``out_dir/<id>.png``, each written whole (temporary file,
    then rename). Existing images are replaced only with ``overwrite``; ``resume`` fuses only the
    missing ones when the folder's record says they were made with the same checkpoint and
    options; ``skip_bad`` lists unreadable or mismatched pairs instead of stopping at the first."""
    if not dataset.pairs:
        raise ManifestError(f"{dataset.origin} lists no image pairs to fuse.")
    record = _record(checkpoint_sha256, options)
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
            image = fuse_images(model, vis_rgb=loaded.vis, ir=loaded.ir, device=device, options=options)
            path = output_path(out_dir, pair.id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _check_inside(out_dir, path)
            with atomic.replacing(path) as tmp:
                image.save(tmp, format="PNG")
            written.append(path)
            advance(1, pair.id)
    return FuseResult(written=written, kept=sorted(done), skipped=skipped)
