"""Model name -> the module that implements it, imported on first use (torch-free until then)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from crossfuse.models.settings import SETTINGS

if TYPE_CHECKING:
    from crossfuse.models.base import Model

#: The module of each model; each defines ``MODEL``, an instance of :class:`crossfuse.models.base.Model`.
MODULES = {"crossfuse": "crossfuse.models.crossfuse", "seafusion": "crossfuse.models.seafusion",
           "sdnet": "crossfuse.models.sdnet", "densefuse": "crossfuse.models.densefuse"}
assert set(MODULES) == set(SETTINGS), "every model has settings and a module"


def names() -> tuple[str, ...]:
    return tuple(MODULES)


def get(name: str) -> Model:
    """The model called ``name``; a ValueError listing the names for an unknown one."""
    if name not in MODULES:
        raise ValueError(f"unknown model {name!r}; the models are {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name]).MODEL
