"""Deterministic weights and inputs shared by the model tests and the scratch scripts that ran the
official code to make ``tests/data/*_oracle.npz`` (the same function there and here, so that the
official network and ours get the same weights without the weights being stored).

Each tensor is drawn from its own generator, seeded by the CRC-32 of its name, so the weights do
not depend on the order of a state dict: normal with std ``scale / sqrt(fan_in)`` for
convolution kernels (``fan_in`` from ``layout``: OIHW for PyTorch, HWIO for TensorFlow), ``0.05``
for vectors (biases, batch-norm affine), zero for integer counters.
"""

from __future__ import annotations

import math
import zlib

import numpy as np


def oracle_weights(shapes: dict[str, tuple[int, ...]], *, layout: str = "OIHW", scale: float = 1.0
                   ) -> dict[str, np.ndarray]:
    out = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        if name.endswith("num_batches_tracked"):
            out[name] = np.zeros(shape, dtype=np.int64)
        elif len(shape) == 4:
            fan_in = math.prod(shape[1:]) if layout == "OIHW" else math.prod(shape[:3])
            out[name] = (rng.standard_normal(shape) * scale / math.sqrt(fan_in)).astype(np.float32)
        else:
            out[name] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    return out


def sample_crop(root: str) -> tuple[np.ndarray, np.ndarray]:
    """An awkward-size (69 x 122) crop of the bundled sample pair FLIR_00006: visible RGB and
    infrared, uint8 (H, W, 3) and (H, W), the infrared as Pillow's L of its file."""
    from PIL import Image

    vis = np.asarray(Image.open(f"{root}/vis/FLIR_00006.jpg").convert("RGB"))[40:109, 30:152]
    ir = np.asarray(Image.open(f"{root}/ir/FLIR_00006.jpg").convert("L"))[40:109, 30:152]
    return np.ascontiguousarray(vis), np.ascontiguousarray(ir)
