"""RGB <-> YCrCb on uint8 images exactly as OpenCV's ``cvtColor`` computes them, in numpy.

The paper's test script reads the visible image with OpenCV and converts it with
``cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)``; after fusing Y it converts back with
``COLOR_YCrCb2RGB``. OpenCV does both in 14-bit fixed point with rounding and saturation;
Pillow's YCbCr truncates instead, which puts its Y one level below OpenCV's on about half of
the pixels of real images. These functions reproduce OpenCV's integer arithmetic
(``modules/imgproc/src/color_yuv.simd.hpp``, ``RGB2YCrCb_i`` and ``YCrCb2RGB_i``) so that
crossfuse needs no OpenCV at run time; the tests compare them with OpenCV pixel for pixel.
"""

from __future__ import annotations

import numpy as np

_SHIFT = 14
_HALF = 1 << (_SHIFT - 1)
_DELTA = 128 << _SHIFT
# Y = 0.299 R + 0.587 G + 0.114 B; Cr = 0.713 (R - Y) + 128; Cb = 0.564 (B - Y) + 128, times 2^14.
_R2Y, _G2Y, _B2Y, _CR, _CB = 4899, 9617, 1868, 11682, 9241
# R = Y + 1.403 (Cr-128); G = Y - 0.714 (Cr-128) - 0.344 (Cb-128); B = Y + 1.773 (Cb-128), times 2^14.
_CR2R, _CR2G, _CB2G, _CB2B = 22987, -11698, -5636, 29049


def _descale(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``CV_DESCALE(x, 14)``: ``(x + 2^13) >> 14`` (an arithmetic shift: floor)."""
    return (x + _HALF) >> _SHIFT


def _saturate(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


def _check(image: np.ndarray, what: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")


def rgb_to_ycrcb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 Y, Cr, Cb, equal to OpenCV's
    ``cvtColor(bgr, COLOR_BGR2YCrCb)`` (or ``cvtColor(rgb, COLOR_RGB2YCrCb)``) on every pixel:
    ``Y = (4899 R + 9617 G + 1868 B + 2^13) >> 14``, ``Cr = ((R - Y) 11682 + 128 * 2^14 + 2^13) >> 14``,
    ``Cb = ((B - Y) 9241 + 128 * 2^14 + 2^13) >> 14``, each saturated to 0..255."""
    _check(rgb, "rgb")
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = _descale(r * _R2Y + g * _G2Y + b * _B2Y)
    cr = _descale((r - y) * _CR + _DELTA)
    cb = _descale((b - y) * _CB + _DELTA)
    return np.stack([_saturate(y), _saturate(cr), _saturate(cb)], axis=-1)


def ycrcb_to_rgb(ycrcb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 Y, Cr, Cb -> (H, W, 3) uint8 RGB, equal to OpenCV's
    ``cvtColor(ycrcb, COLOR_YCrCb2RGB)`` on every pixel: with cr = Cr - 128, cb = Cb - 128,
    ``R = Y + ((22987 cr + 2^13) >> 14)``, ``G = Y + ((-11698 cr - 5636 cb + 2^13) >> 14)``,
    ``B = Y + ((29049 cb + 2^13) >> 14)``, each saturated to 0..255."""
    _check(ycrcb, "ycrcb")
    y, cr, cb = (ycrcb[..., i].astype(np.int32) for i in range(3))
    cr, cb = cr - 128, cb - 128
    r = y + _descale(cr * _CR2R)
    g = y + _descale(cr * _CR2G + cb * _CB2G)
    b = y + _descale(cb * _CB2B)
    return np.stack([_saturate(r), _saturate(g), _saturate(b)], axis=-1)


def luma(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit Y of an (H, W, 3) uint8 RGB image, (H, W) uint8 (``rgb_to_ycrcb(rgb)[..., 0]``)."""
    return rgb_to_ycrcb(rgb)[..., 0]
