"""A loss curve as a PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def loss_curve(values: Sequence[float], path: str, *, title: str, size: tuple[int, int] = (640, 360)) -> None:
    """Plot ``values`` (one per step; a running mean over ~1/50 of them is drawn over the raw ones)."""
    w, h = size
    left, right, top, bottom = 60, 16, 28, 36
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 8), title, fill="black")
    y = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    if len(y) >= 2:
        lo, hi = float(y.min()), float(y.max())
        hi = hi if hi > lo else lo + 1.0
        xs = left + (w - left - right) * np.arange(len(y)) / (len(y) - 1)

        def ys(v: np.ndarray) -> np.ndarray:
            return top + (h - top - bottom) * (1 - (v - lo) / (hi - lo))

        draw.line(list(zip(xs, ys(y))), fill=(170, 190, 230), width=1)
        k = max(1, len(y) // 50)
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        draw.line(list(zip(xs[k - 1:], ys(smooth))), fill=(20, 60, 160), width=2)
        draw.text((4, top), f"{hi:.4g}", fill="black")
        draw.text((4, h - bottom - 10), f"{lo:.4g}", fill="black")
        draw.text((left, h - bottom + 8), "step 1", fill="black")
        draw.text((w - right - 60, h - bottom + 8), f"step {len(y)}", fill="black")
    img.save(path)
