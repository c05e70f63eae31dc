"""Checkpoints in the official format (four state dicts) plus crossfuse's typed training state.

A file holds ``DIDF_Encoder``, ``DIDF_Decoder``, ``BaseFuseLayer`` and ``DetailFuseLayer`` (keys
prefixed ``module.`` as the release saves them, so its scripts load ours) and, in ours, a
``crossfuse`` entry: a :class:`TrainingState` (training config with the network sizes,
optimiser, scheduler, RNG states, epoch and step). Everything loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from crossfuse import atomic
from crossfuse.errors import CheckpointError, ConfigError
from crossfuse.fusion.config import TrainConfig, from_dict
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse, NetworkConfig

#: The key of crossfuse's own entry in a checkpoint.
STATE_KEY = "crossfuse"


@dataclass(frozen=True, kw_only=True)
class TrainingState:
    """Everything a run needs to continue exactly: the last finished ``epoch`` (0-based) and the
    ``step`` count, the optimiser's and scheduler's state dicts, the RNG states (``{"torch": ...,
    "cuda": [...]}``, CUDA where available) and the run's ``config``."""

    epoch: int
    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    config: TrainConfig

    def to_payload(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "rng": self.rng, "config": self.config.to_dict()}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], where: str) -> TrainingState | None:
        """The state in a checkpoint's contents, None for an official checkpoint (which has none)."""
        entry = payload.get(STATE_KEY)
        if entry is None:
            return None
        try:
            if not isinstance(entry.get("config"), Mapping):
                raise ConfigError("no training config")
            return cls(epoch=int(entry["epoch"]), step=int(entry["step"]), optimizer=dict(entry["optimizer"]),
                       scheduler=dict(entry["scheduler"]), rng=dict(entry["rng"]),
                       config=from_dict(dict(entry["config"]), where=where))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where}: its '{STATE_KEY}' entry is not a crossfuse training state ({exc}); "
                                  "its weights still load for fusing, but a run cannot resume from it.") from exc


def _non_finite_weights(parts: Mapping[str, Mapping[str, Any]]) -> str:
    """The weight tensors of the state dicts ``parts`` that hold NaN or infinite values, named
    (the first three and a count), or "" when every weight is finite."""
    broken = [f"{part}.{key}" for part, sd in parts.items() for key, t in sd.items()
              if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    return f"{len(broken)}: {', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}" if broken else ""


def save(path: str, model: CrossFuse, state: TrainingState | None = None) -> None:
    """Write atomically (temporary file, then rename), so a kill never leaves half a checkpoint.
    Weights that are not all finite are refused: a NaN checkpoint is never written."""
    payload: dict[str, Any] = model.official_state()
    broken = _non_finite_weights(payload)
    if broken:
        raise CheckpointError(f"refusing to write {path}: weight tensors hold NaN or infinite values ({broken}); "
                              "the previous checkpoint is kept.")
    if state is not None:
        payload[STATE_KEY] = state.to_payload()
    buffer = io.BytesIO()  # serialised in memory, so that a full disk is one OSError, not torch's C++ error
    torch.save(payload, buffer)
    atomic.write_bytes(path, buffer.getbuffer())


def read(path: str) -> dict[str, Any]:
    """The checkpoint's contents (tensors on the CPU), checked to be a CrossFuse checkpoint."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist.") from exc
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch's zip format, or its legacy pickle
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (a .pth file written by torch.save).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist.") from exc
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):  # torch's refusal of pickled objects other than tensors
            raise CheckpointError(f"{path} holds pickled Python objects besides tensors, which could run code when "
                                  "loaded; crossfuse does not load it. Use a checkpoint of plain state dicts (as "
                                  "crossfuse and the official release write them).") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it cannot be unpickled).") from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(f"{path} is not a PyTorch checkpoint, or is damaged ({type(exc).__name__}).") \
            from None
    if not isinstance(payload, dict) or any(not isinstance(payload.get(k), dict) for k in CHECKPOINT_PARTS):
        raise CheckpointError(f"{path} is not a CrossFuse checkpoint: it needs the state dicts {list(CHECKPOINT_PARTS)}.")
    return payload


def read_state(path: str) -> tuple[dict[str, Any], TrainingState]:
    """A checkpoint of ours: its contents and its training state (to resume from)."""
    payload = read(path)
    state = TrainingState.from_payload(payload, path)
    if state is None:
        raise CheckpointError(f"{path} holds weights only (an official checkpoint?); a run cannot resume from it.")
    return payload, state


def load_model(path: str) -> CrossFuse:
    """A network with the weights of an official checkpoint or one of ours (whose sizes it records)."""
    payload = read(path)
    state = TrainingState.from_payload(payload, path)  # validates the recorded network sizes first
    model = CrossFuse(state.config.network if state else NetworkConfig())
    load_weights(model, payload, path)
    return model


def load_weights(model: CrossFuse, payload: Mapping[str, Any], path: str) -> None:
    """Load a checkpoint's weights into ``model``, refusing non-finite weights and weights of
    other names or shapes with a :class:`CheckpointError` naming ``path``."""
    broken = _non_finite_weights({part: payload[part] for part in CHECKPOINT_PARTS})
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({broken}); training or fusing from it would "
                              "give garbage. Use an earlier checkpoint of the run.")
    try:
        model.load_official(payload)
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{path} does not fit the network (its weights have other names or shapes: "
                              f"{' '.join(first[:3])[:400]}). It was made with another network config.") from None

