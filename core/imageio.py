"""Reading IR/VIS pairs as uint8 arrays, with the checks every consumer needs.

Visible images come back as RGB (H, W, 3) uint8; a gray visible image is repeated into
R = G = B. Infrared images come back as one channel (H, W) uint8; an RGB infrared file
(many datasets store gray IR as 24-bit) is converted with Pillow's ITU-R 601 luma, which
leaves R = G = B images unchanged. 16-bit and float images are refused with a clear error
rather than silently rescaled: convert them to 8 bits first. The depth is the file's own (the
decoder's raw mode), not Pillow's mode: a 48-bit colour PNG opens as mode RGB holding only the
high byte of each sample.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass

import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from crossfuse.errors import ImageError, ManifestError, PairError
from crossfuse.manifest import Manifest, Pair

_HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S")
#: Raw (file) modes of 16-bit samples behind an 8-bit Pillow mode: "RGB;16B" (48-bit PNG),
#: "RGBA;16B", "LA;16B", "RGB;16N" (TIFF)...; not "BGR;16" (BMP's 5-6-5 pixels, 8 bits or fewer).
_HIGH_DEPTH_RAW = re.compile(r";16[BLNS]$|^[IF];")


@dataclass(frozen=True, kw_only=True)
class LoadedPair:
    """A decoded pair: ``vis`` (H, W, 3) uint8 RGB, ``ir`` (H, W) uint8, and file checksums."""

    vis: np.ndarray
    ir: np.ndarray
    vis_sha256: str
    ir_sha256: str


def read_bytes(url: str, *, pair_id: str) -> bytes:
    """All bytes of a local file or fsspec URL; a missing or unreadable file is a PairError."""
    try:
        with fsspec.open(url, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise PairError(f"pair {pair_id!r}: cannot read {url} ({exc.__class__.__name__}: {exc}).",
                        pair_id=pair_id, path=url) from exc


#: Images above this many pixels are refused (decompression bombs; images too large to fuse whole).
DEFAULT_MAX_PIXELS = 50_000_000


def max_pixels() -> int:
    """The pixel limit: ``CROSSFUSE_MAX_PIXELS`` when set (read in every process, Dask workers
    included), else :data:`DEFAULT_MAX_PIXELS`. Pillow's own ceiling (about 179 million) applies too."""
    value = os.environ.get("CROSSFUSE_MAX_PIXELS", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_PIXELS


def _raw_mode(im: Image.Image) -> str:
    """How the file stores its pixels (the decoder's raw mode, e.g. "RGB;16B" for a 48-bit PNG that
    Pillow opens as mode "RGB" by dropping the low bytes), or "" when Pillow does not say."""
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str):
            return raw
    return ""


def load_image(data: bytes, *, url: str) -> Image.Image:
    """Decode the bytes of ``url`` to a loaded 8-bit Pillow image, checking its size from the
    header before decoding. Raises :class:`ImageError` naming the file: not an image, truncated,
    16-bit or float, or more pixels than :func:`max_pixels`."""
    limit = max_pixels()
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{url} is too large to decode safely ({exc}); if the file is trusted, raise the limit "
                         "with CROSSFUSE_MAX_PIXELS=N.") from exc
    except UnidentifiedImageError as exc:
        # Pillow's own message names our in-memory buffer (<_io.BytesIO object at 0x...>), not the file
        raise ImageError(f"{url} is not an image file Pillow can read; replace it with the image it should "
                         "be (PNG, JPEG, BMP or TIFF).") from exc
    width, height = im.size
    if width * height > limit:
        raise ImageError(f"{url} is {width}x{height}, {width * height / 1e6:.0f} million pixels, above the limit of "
                         f"{limit / 1e6:.0f} million (a decompression bomb, or too large to fuse whole); if the file "
                         "is trusted, raise the limit with CROSSFUSE_MAX_PIXELS=N.")
    raw = _raw_mode(im)
    if im.mode in _HIGH_DEPTH_MODES or _HIGH_DEPTH_RAW.search(raw):
        depth = "float" if im.mode == "F" or raw.startswith("F") else "16-bit"
        stored = f"{im.mode}, stored as {raw}" if raw and raw != im.mode else im.mode
        raise ImageError(f"{url} is a {depth} image ({stored}); crossfuse reads 8-bit images only. Convert it to 8 "
                         "bits per channel (choosing your own scaling) and try again.")
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{url} is unreadable or truncated ({exc}); copy the file again from its source.") from exc
    return im


def decode(data: bytes, *, mode: str, url: str, pair_id: str) -> np.ndarray:
    """Decode image bytes to uint8: ``mode`` "RGB" gives (H, W, 3), "L" gives (H, W)."""
    try:
        im = load_image(data, url=url)
    except ImageError as exc:
        raise PairError(f"pair {pair_id!r}: {exc} Replace the file or drop the pair.", pair_id=pair_id,
                        path=url) from exc
    with im:
        if mode == "RGB" and im.mode == "L":
            return np.repeat(np.asarray(im)[:, :, None], 3, axis=2)
        return np.asarray(im if im.mode == mode else im.convert(mode))


def read_pair(manifest: Manifest, pair: Pair) -> LoadedPair:
    """Read, checksum, decode and cross-check one pair of ``manifest``.

    Raises :class:`PairError` for a missing partner, an unreadable or truncated file, a sha256
    different from the manifest's, or infrared and visible images of different sizes.
    """
    for side, rel in (("infrared", pair.ir), ("visible", pair.vis)):
        if not rel:
            raise PairError(f"pair {pair.id!r} in {manifest.origin} has no {side} partner; add the "
                            f"{side} image with the same stem or remove the other one.",
                            pair_id=pair.id, path=manifest.url(pair.vis or pair.ir))
    images = {}
    shas = {}
    for side, rel, expected, mode in (("vis", pair.vis, pair.vis_sha256, "RGB"),
                                      ("ir", pair.ir, pair.ir_sha256, "L")):
        try:
            url = manifest.source(rel)
        except ManifestError as exc:
            raise PairError(f"pair {pair.id!r}: {exc}", pair_id=pair.id, path=manifest.url(rel)) from exc
        data = read_bytes(url, pair_id=pair.id)
        shas[side] = hashlib.sha256(data).hexdigest()
        if expected and expected.lower() != shas[side]:
            raise PairError(f"pair {pair.id!r}: sha256 of {url} is {shas[side]}, the manifest "
                            f"{manifest.origin} says {expected}. The file changed; restore it or "
                            "update the manifest.", pair_id=pair.id, path=url)
        images[side] = decode(data, mode=mode, url=url, pair_id=pair.id)
    if images["vis"].shape[:2] != images["ir"].shape[:2]:
        vh, vw = images["vis"].shape[:2]
        ih, iw = images["ir"].shape[:2]
        raise PairError(f"pair {pair.id!r}: visible {manifest.url(pair.vis)} is {vw}x{vh} but infrared "
                        f"{manifest.url(pair.ir)} is {iw}x{ih}; a pair must be registered to the same size.",
                        pair_id=pair.id, path=manifest.url(pair.vis))
    return LoadedPair(vis=images["vis"], ir=images["ir"], vis_sha256=shas["vis"], ir_sha256=shas["ir"])
