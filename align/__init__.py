"""The alignment pipeline: auxiliary IR/VIS pairs -> Top-K aligned patches in a Zarr corpus.

Public entry points: :func:`build` (aligned corpus), :func:`pack` (a dataset as it is),
:func:`describe` and :func:`verify` (read an existing corpus). This package never imports
torch or :mod:`crossfuse.fusion`.
"""

from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.describe import Description, VerifyReport, describe, verify
from crossfuse.align.pipeline import BuildSummary, build, pack

__all__ = ["BuildParams", "EngineConfig", "BuildSummary", "Description", "VerifyReport", "build", "pack", "describe", "verify"]
