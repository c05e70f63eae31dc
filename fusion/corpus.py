"""Deprecated: the public corpus reader moved to :mod:`crossfuse.corpus` (its own package, which
the trainer uses too). This module re-exports it for one release and warns on import."""

import warnings

from crossfuse.corpus import VISIBLE, Batch, Item, PatchDataset, PatchLoader

__all__ = ["Batch", "Item", "PatchDataset", "PatchLoader", "VISIBLE"]

warnings.warn("crossfuse.fusion.corpus moved to crossfuse.corpus; import it from there (this alias goes in the "
              "next release).", DeprecationWarning, stacklevel=2)
