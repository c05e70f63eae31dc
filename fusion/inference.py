"""Fusing image pairs with a trained or official checkpoint.

The network sees the visible image's Y (Pillow's YCbCr, as the release reads it through OpenCV)
and the infrared, both divided by 255. Its sigmoid output is min-max normalised per image to
0-255 and rounded (the release truncates; rounding is unbiased), then either written as a gray
image or put back with the visible image's Cb/Cr to give colour. ``tile`` processes big images
in overlapping tiles so memory stays bounded; the network's channel attention spans the whole
input, so tiled results differ slightly from whole-image ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from crossfuse.errors import StoreExistsError
from crossfuse.fusion.network import CrossFuse
from crossfuse.imageio import read_pair
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress, no_progress


@dataclass(frozen=True, kw_only=True)
class FuseOptions:
    """``tile``: tile size in pixels (0: whole image); ``overlap``: pixels shared by neighbouring
    tiles; ``bf16``: bfloat16 autocast; ``gray``: write the fused Y alone; ``channels_last``: run
    the convolutions in NHWC layout (1.3-1.5x faster on the CPU here, same numbers to 1e-6)."""

    tile: int = 0
    overlap: int = 32
    bf16: bool = False
    gray: bool = False
    channels_last: bool = True


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
def fuse_y(model: CrossFuse, vis_y: np.ndarray, ir: np.ndarray, *, device: torch.device,
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


def to_uint8(fused: np.ndarray) -> np.ndarray:
    """Min-max normalise to 0-255 and round; a constant image becomes 0."""
    lo, hi = float(fused.min()), float(fused.max())
    scaled = (fused - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(fused)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def fuse_images(model: CrossFuse, vis_rgb: np.ndarray, ir: np.ndarray, *, device: torch.device,
                options: FuseOptions = FuseOptions()) -> Image.Image:
    """Fuse a visible (H, W, 3) uint8 RGB image with an infrared (H, W) uint8 one; returns the
    colour result (or gray when ``options.gray`` or the visible image is gray)."""
    is_gray = bool(np.array_equal(vis_rgb[..., 0], vis_rgb[..., 1]) and np.array_equal(vis_rgb[..., 1], vis_rgb[..., 2]))
    ycbcr = np.asarray(Image.fromarray(vis_rgb, "RGB").convert("YCbCr"))
    vis_y = vis_rgb[..., 0] if is_gray else ycbcr[..., 0]
    fused = to_uint8(fuse_y(model, vis_y, ir, device=device, options=options))
    if options.gray or is_gray:
        return Image.fromarray(fused, "L")
    merged = np.dstack([fused, ycbcr[..., 1], ycbcr[..., 2]])
    return Image.fromarray(merged, "YCbCr").convert("RGB")


def fuse_dataset(model: CrossFuse, dataset: Manifest, out_dir: str, *, device: torch.device,
                 options: FuseOptions = FuseOptions(), overwrite: bool = False,
                 progress: Progress = no_progress) -> list[str]:
    """Fuse every pair of a manifest into ``out_dir/<id>.png``; returns the written paths.
    Existing files are replaced only with ``overwrite`` (checked before any work)."""
    existing = [p.id for p in dataset.pairs if os.path.exists(os.path.join(out_dir, f"{p.id}.png"))]
    if existing and not overwrite:
        raise StoreExistsError(f"{out_dir} already holds fused images for {len(existing)} pair(s) "
                               f"({', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}); "
                               "pass --overwrite to replace them or choose another --out.")
    model = model.to(device).eval()
    written = []
    with progress("fuse", len(dataset.pairs)) as advance:
        for pair in dataset.pairs:
            loaded = read_pair(dataset, pair)
            image = fuse_images(model, loaded.vis, loaded.ir, device=device, options=options)
            path = os.path.join(out_dir, f"{pair.id}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            image.save(path)
            written.append(path)
            advance(1, pair.id)
    return written
