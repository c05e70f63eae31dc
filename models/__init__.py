"""Fusion models behind one interface: CrossFuse (the default), SeAFusion, SDNet and DenseFuse.

One module per model holds its network, losses, training phases, test pipeline and the
conversion of its official checkpoints; :mod:`crossfuse.models.settings` (torch-free) holds every
model's settings and training defaults, and :mod:`crossfuse.models.base` the interface the
trainer, ``fuse`` and the experiment runner call. Adding a model is adding a module and a line in
:data:`crossfuse.models.registry.MODULES`. Imports torch, core and corpus; never align.

    from crossfuse import models
    model = models.get("seafusion")          # a crossfuse.models.base.Model
    net = model.build(model.settings())      # an nn.Module with the official layout
"""

from __future__ import annotations

from crossfuse.models.registry import get, names

__all__ = ["get", "names"]
