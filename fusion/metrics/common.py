"""What the metric protocols share: reading an image as it is stored, and 3x3 filtering."""

from __future__ import annotations

import numpy as np

from crossfuse.errors import EvalError, ImageError
from crossfuse.imageio import load_image


def read_stored(path: str) -> np.ndarray:
    """An image as its file stores it, as MATLAB's ``imread`` returns it: (H, W) for a gray image,
    (H, W, 3) for a colour one, uint8. Refuses anything but 8-bit gray or RGB with an error
    naming the file."""
    import fsspec

    try:
        with fsspec.open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise EvalError(f"cannot read {path} ({exc}).") from exc
    try:
        im = load_image(data, url=path)
    except ImageError as exc:
        raise EvalError(f"{exc} The protocol scores 8-bit images; write or convert it as one.") from exc
    with im:
        if im.mode == "L":
            return np.asarray(im, dtype=np.uint8)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def correlate3(image: np.ndarray, kernel: np.ndarray, *, pad: str) -> np.ndarray:
    """``image`` (H, W) float64 correlated with a 3x3 ``kernel``, same size: ``pad`` "edge"
    (MATLAB imfilter's 'replicate') or "constant" (zeros, filter2's 'same')."""
    padded = np.pad(image, 1, mode=pad)
    h, w = image.shape
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            if kernel[i, j]:
                out += kernel[i, j] * padded[i:i + h, j:j + w]
    return out


#: MATLAB's ``fspecial('sobel')``: responds to horizontal edges (its transpose to vertical ones).
SOBEL = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
