"""The alignment pipeline: auxiliary IR/VIS pairs -> Top-K aligned patches in a Zarr corpus.

Public entry points: :func:`build` (aligned corpus), :func:`pack` (a dataset as it is),
:func:`describe` and :func:`verify` (read an existing corpus). This package never imports
torch or :mod:`crossfuse.fusion`. The names are loaded on first use (PEP 562), so that importing
one light module (``crossfuse.align.config``, as ``crossfuse-align --help`` does) does not import
zarr, Dask and FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BuildParams", "EngineConfig", "BuildSummary", "Description", "VerifyReport", "build", "pack", "describe",
           "verify"]

# describe is light (numpy and core), and it must be imported here: a submodule of the same name
# as the function would otherwise shadow it once anything imported ``crossfuse.align.describe``.
from crossfuse.align.describe import Description, VerifyReport, describe, verify  # noqa: E402

_WHERE = {"BuildParams": "config", "EngineConfig": "config", "BuildSummary": "pipeline", "build": "pipeline",
          "pack": "pipeline"}

if TYPE_CHECKING:
    from crossfuse.align.config import BuildParams, EngineConfig
    from crossfuse.align.pipeline import BuildSummary, build, pack


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'crossfuse.align' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"crossfuse.align.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
