"""Checkpoints in the official format (four state dicts) plus crossfuse's trainer state.

A file holds ``DIDF_Encoder``, ``DIDF_Decoder``, ``BaseFuseLayer`` and ``DetailFuseLayer`` (keys
prefixed ``module.`` as the release saves them, so its scripts load ours) and, in ours, a
``crossfuse`` entry with the network and training config, optimiser, scheduler, RNG states, epoch
and step. Everything loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from crossfuse.errors import CrossfuseError
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse, NetworkConfig


class CheckpointError(CrossfuseError, ValueError):
    """A checkpoint file that cannot be read or is not a CrossFuse checkpoint."""


def save(path: str, model: CrossFuse, state: dict[str, Any] | None = None) -> None:
    """Write atomically (temporary file, then rename), so a kill never leaves half a checkpoint.
    Weights that are not all finite are refused: a NaN checkpoint is never written."""
    payload: dict[str, Any] = model.official_state()
    broken = [f"{part}.{key}" for part, sd in payload.items() for key, t in sd.items()
              if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(f"refusing to write {path}: {len(broken)} weight tensor(s) hold NaN or infinite "
                              f"values ({', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}); the "
                              "previous checkpoint is kept.")
    if state is not None:
        payload["crossfuse"] = state
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read(path: str) -> dict[str, Any]:
    """The checkpoint's contents (tensors on the CPU), checked to be a CrossFuse checkpoint."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist.") from exc
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({exc}).") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in CHECKPOINT_PARTS):
        raise CheckpointError(f"{path} is not a CrossFuse checkpoint: it needs the entries {list(CHECKPOINT_PARTS)}.")
    return payload


def load_model(path: str) -> CrossFuse:
    """A network with the weights of an official checkpoint or one of ours (whose sizes it records)."""
    payload = read(path)
    net_cfg = (payload.get("crossfuse") or {}).get("config", {}).get("network")
    model = CrossFuse(NetworkConfig(**net_cfg) if net_cfg else NetworkConfig())
    try:
        model.load_official(payload)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} does not fit the network: {exc}") from exc
    return model


def file_sha256(path: str) -> str:
    """sha256 of a checkpoint file (what a fused folder records it was made with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
