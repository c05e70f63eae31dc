"""A faithful re-implementation of the paper's released alignment script, as the baseline.

Every patch lives in Python lists, per-patch channel means are computed in loops, the
differences are fully sorted, the gammas are fitted by Nelder-Mead from (0.5, 0.5, 0.5)
re-applying the lookups to every selected patch at each step, and each selected patch is
written as its own PNG. (Pillow replaces OpenCV for reading and writing; the work is the same.)
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy.optimize import minimize


def _patches(manifest, patch: int, stride: int, with_ir: bool):
    vis_list, ir_list = [], []
    for pair in manifest.pairs:
        vis = np.array(Image.open(manifest.url(pair.vis)).convert("RGB"))
        ir = np.array(Image.open(manifest.url(pair.ir)).convert("L")) if with_ir else None
        h, w = vis.shape[:2]
        for i in range(0, h - patch + 1, stride):
            for j in range(0, w - patch + 1, stride):
                vis_list.append(vis[i:i + patch, j:j + patch])
                if with_ir:
                    ir_list.append(ir[i:i + patch, j:j + patch])
    return vis_list, ir_list


def _lut(gamma: float) -> np.ndarray:
    inv = 1.0 / gamma
    return np.array([((i / 255.0) ** inv) * 255 for i in np.arange(0, 256)]).astype("uint8")


def run(target, aux, out_dir: str, *, patch: int = 64, stride: int = 200, k: int = 800) -> np.ndarray:
    """Align ``aux`` to ``target`` as the released script does; returns the fitted gammas (R, G, B)."""
    target_vis, _ = _patches(target, patch, stride, with_ir=False)
    means = []
    for p in target_vis:
        means.append([np.mean(p[:, :, c]) for c in range(3)])
    target_means = [sum(m[c] for m in means) / len(means) for c in range(3)]
    aux_vis, aux_ir = _patches(aux, patch, stride, with_ir=True)
    diffs = []
    for p in aux_vis:
        diffs.append(sum(abs(np.mean(p[:, :, c]) - target_means[c]) for c in range(3)))
    order = sorted(range(len(diffs)), key=lambda i: diffs[i])[:k]
    selected = [aux_vis[i] for i in order]

    def loss(gammas):
        total = 0.0
        for c in range(3):
            if gammas[c] <= 0:
                return 1e9
            lut = _lut(gammas[c])
            total += abs(np.mean([np.mean(lut[p[:, :, c]]) for p in selected]) - target_means[c])
        return total

    gammas = minimize(loss, x0=[0.5, 0.5, 0.5], method="Nelder-Mead").x
    luts = [_lut(g) for g in gammas]
    os.makedirs(os.path.join(out_dir, "vis"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "ir"), exist_ok=True)
    for n, i in enumerate(order):
        corrected = np.stack([luts[c][aux_vis[i][:, :, c]] for c in range(3)], axis=2)
        Image.fromarray(corrected).save(os.path.join(out_dir, "vis", f"{n}.png"))
        Image.fromarray(aux_ir[i]).save(os.path.join(out_dir, "ir", f"{n}.png"))
    return np.asarray(gammas)
