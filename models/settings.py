"""Each model's network settings and training defaults, torch-free.

Config files, ``--help`` and experiment specs are checked against these without importing torch;
the networks themselves live in one module per model (:mod:`crossfuse.models.crossfuse`,
``seafusion``, ``sdnet``, ``densefuse``). :data:`SETTINGS` maps a model's name to its settings
class (the ``[network]`` table of a config), :data:`TRAIN_DEFAULTS` to the training settings its
official code uses where they differ from CrossFuse's (a config's own keys override them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: The model a config trains when it names none.
DEFAULT_MODEL = "crossfuse"


def _bounded(obj: Any, bounds: dict[str, tuple[float, float]]) -> None:
    # Bounds first: a checkpoint's settings come from a file, and dim=200000 would ask for ~480 GB.
    for name, (lo, hi) in bounds.items():
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"network {name} must lie in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Sizes of the CrossFuse network. Defaults are the paper's: ``dim`` 64 channels, ``heads`` 8,
    ``encoder_blocks``/``decoder_blocks`` 4 transformer blocks, FFN expansion 2 (1 in the base
    branch), 3 invertible detail nodes in the encoder and 1 in the detail fusion layer."""

    dim: int = 64
    heads: int = 8
    encoder_blocks: int = 4
    decoder_blocks: int = 4
    ffn_expansion: float = 2.0
    base_ffn_expansion: float = 1.0
    detail_nodes: int = 3
    fuse_detail_nodes: int = 1

    def __post_init__(self) -> None:
        _bounded(self, {"dim": (2, 1024), "heads": (1, 64), "encoder_blocks": (1, 32), "decoder_blocks": (1, 32),
                        "detail_nodes": (1, 32), "fuse_detail_nodes": (1, 32), "ffn_expansion": (0.25, 16),
                        "base_ffn_expansion": (0.25, 16)})
        if self.dim % self.heads or self.dim % 2:
            raise ValueError(f"dim ({self.dim}) must be even and divisible by heads ({self.heads})")


@dataclass(frozen=True, kw_only=True)
class SeAFusionConfig:
    """SeAFusion's fusion network has no size settings in its official code (channels 16, 32, 48
    per branch are fixed there); ``grad_weight`` is the gradient term's weight in its loss (10)."""

    grad_weight: float = 10.0

    def __post_init__(self) -> None:
        _bounded(self, {"grad_weight": (0.0, 1e6)})


#: DenseFuse's test-time fusion strategies of the encoder features.
DENSEFUSE_STRATEGIES = ("addition", "l1-norm")


@dataclass(frozen=True, kw_only=True)
class DenseFuseConfig:
    """DenseFuse: ``ssim_weight`` is lambda in ``pixel + lambda (1 - MS-SSIM)`` (the official
    training script's default, ``ssim_weight[2]`` = 100); ``strategy`` the test-time fusion of
    the two encodings: ``addition`` (the PyTorch release's, their mean) or ``l1-norm``
    (the TensorFlow release's ``fusion_l1norm.py``)."""

    ssim_weight: float = 100.0
    strategy: str = "addition"

    def __post_init__(self) -> None:
        _bounded(self, {"ssim_weight": (0.0, 1e6)})
        if self.strategy not in DENSEFUSE_STRATEGIES:
            raise ValueError(f"network strategy must be one of {', '.join(DENSEFUSE_STRATEGIES)}, "
                             f"got {self.strategy!r}")


@dataclass(frozen=True, kw_only=True)
class SDNetConfig:
    """SDNet (IR-visible): the weights of its loss ``int + grad_weight grad + sept_weight sept``
    and of the visible image in the intensity term, as its ``IR_VIS/model.py`` sets them."""

    vis_intensity_weight: float = 0.5
    grad_weight: float = 80.0
    sept_weight: float = 1.0

    def __post_init__(self) -> None:
        _bounded(self, {"vis_intensity_weight": (0.0, 1e6), "grad_weight": (0.0, 1e6), "sept_weight": (0.0, 1e6)})


#: Model name -> its settings class (the ``[network]`` table).
SETTINGS: dict[str, type] = {"crossfuse": NetworkConfig, "seafusion": SeAFusionConfig, "sdnet": SDNetConfig,
                             "densefuse": DenseFuseConfig}

#: Training settings of each model's official code that differ from CrossFuse's defaults. Single-
#: phase models have no phase I; ``clip_norm`` 0 means no clipping (none of them clips).
#: SeAFusion (``train.py``, fusion only): Adam, 10 epochs, batch 16, lr 0.001 * 0.75^(epoch - 1)
#: from epoch 0, which StepLR(1, 0.75) from 0.001 / 0.75 gives exactly. DenseFuse
#: (``args_fusion.py``): Adam 1e-4, 4 epochs, batch 4. SDNet (``IR_VIS/train.py``): Adam 1e-4,
#: 15 epochs, batch 32.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "crossfuse": {},
    "seafusion": {"epochs": 10, "phase1_epochs": 0, "batch_size": 16, "lr": 0.001 / 0.75, "lr_step": 1,
                  "lr_gamma": 0.75, "min_lr": 0.0, "clip_norm": 0.0, "consistency": False},
    "densefuse": {"epochs": 4, "phase1_epochs": 0, "batch_size": 4, "lr": 1e-4, "lr_step": 1, "lr_gamma": 1.0,
                  "min_lr": 0.0, "clip_norm": 0.0, "consistency": False},
    "sdnet": {"epochs": 15, "phase1_epochs": 0, "batch_size": 32, "lr": 1e-4, "lr_step": 1, "lr_gamma": 1.0,
              "min_lr": 0.0, "clip_norm": 0.0, "consistency": False},
}


def names() -> tuple[str, ...]:
    return tuple(SETTINGS)


def settings_class(model: str) -> type:
    """The settings class of ``model``; a ValueError listing the names for an unknown one."""
    try:
        return SETTINGS[model]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {model!r}; the models are {', '.join(SETTINGS)}") from None


def field_names(model: str) -> set[str]:
    return {f.name for f in dataclasses.fields(settings_class(model))}
