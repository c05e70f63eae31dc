"""Where everything of an experiment lives, and what both the runner and the results need: the
folder :class:`Layout`, the plain fusions scored beside the variants (:data:`BASELINES`), and a
whole-file text writer. Imported by ``runner``, ``results`` and ``plots``; imports none of them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crossfuse import atomic

#: The plain fusions scored next to the variants: name -> f(visible gray, infrared), 0-255 float.
BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": lambda v, i: np.floor((v + i) / 2 + 0.5),
    "max": np.maximum,
}


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where everything of an experiment lives under ``root``."""

    root: str

    def corpus(self, name: str) -> str:
        return os.path.join(self.root, "corpora", f"{name}.zarr")

    def run(self, variant: str, seed: int) -> str:
        return os.path.join(self.root, "runs", variant, f"seed{seed}")

    def fused(self, variant: str, seed: int, test: str) -> str:
        return os.path.join(self.run(variant, seed), "fused", test)

    def scores(self, variant: str, seed: int, test: str) -> str:
        return os.path.join(self.run(variant, seed), "scores", f"{test}.csv")

    def baseline_fused(self, name: str, test: str) -> str:
        return os.path.join(self.root, "baselines", name, "fused", test)

    def baseline_scores(self, name: str, test: str) -> str:
        return os.path.join(self.root, "baselines", name, "scores", f"{test}.csv")


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole (a process-private temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic.write_text(path, text)
