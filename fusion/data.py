"""Deprecated: the corpus reading engine moved to :mod:`crossfuse.corpus.reading`. This module
re-exports it for one release and warns on import."""

import warnings

from crossfuse.corpus.reading import (FIELDS, LUMA, PIXELS, Block, Corpora, EpochPlan, PatchBatches, fixed_patches,
                                      plan_epoch, to_model_inputs)

__all__ = ["FIELDS", "LUMA", "PIXELS", "Block", "Corpora", "EpochPlan", "PatchBatches", "fixed_patches", "plan_epoch",
           "to_model_inputs"]

warnings.warn("crossfuse.fusion.data moved to crossfuse.corpus.reading; import it from there (this alias goes in "
              "the next release).", DeprecationWarning, stacklevel=2)
