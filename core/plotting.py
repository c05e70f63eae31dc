"""Plotting shared by every part: matplotlib on the Agg backend (:func:`pyplot`), and
comparison sheets: a grid of images with a title per column and a label per row, as a PNG
(matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, *, dpi: int) -> None:
    """Save a matplotlib figure as a PNG, whole or not at all (:func:`crossfuse.atomic.replacing`)."""
    from crossfuse import atomic

    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def image_for_sheet(path: str) -> np.ndarray:
    """An image file as a sheet cell shows it: gray (H, W) stays gray, anything else (H, W, 3) RGB."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))


def comparison_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray]]], titles: Sequence[str], path: str, *,
                     cell_inches: float = 2.6, suptitle: str | None = None) -> None:
    """Write a grid to ``path``: one row per ``(label, images)``, one column per title. Images are
    (H, W) gray or (H, W, 3) RGB uint8, shown at their aspect ratio without resampling tricks."""
    plt = pyplot()
    n_rows, n_cols = len(rows), len(titles)
    aspect = max(img.shape[0] / img.shape[1] for _, images in rows for img in images) if rows else 1.0
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_inches * n_cols, cell_inches * aspect * n_rows + 0.6),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, img in enumerate(images):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
