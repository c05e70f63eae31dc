"""Checkpoints: the weights in each model's official layout plus crossfuse's typed training state.

A CrossFuse file holds ``DIDF_Encoder``, ``DIDF_Decoder``, ``BaseFuseLayer`` and ``DetailFuseLayer``
(keys prefixed ``module.`` as the release saves them, so its scripts load ours). A file of another
model holds ``model`` (its name) and ``weights`` (the state dict in its official layout:
``torch.load(f)["weights"]`` is what its own scripts load). Ours add a ``crossfuse`` entry: a
:class:`TrainingState` (training config with the model and its settings, optimiser, scheduler,
RNG states, epoch and step). An official checkpoint of another model is its bare state dict; which
model it is must then be said (``fuse --model``). Everything loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from crossfuse import atomic
from crossfuse.errors import CheckpointError, ConfigError
from crossfuse import models
from crossfuse.fusion.config import TrainConfig, from_dict
from crossfuse.fusion.network import CHECKPOINT_PARTS
from crossfuse.models.base import Model

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


#: The entries of a checkpoint of a model other than CrossFuse.
MODEL_KEY, WEIGHTS_KEY = "model", "weights"


def _payload(model: Model, net: torch.nn.Module) -> dict[str, Any]:
    if model.name == "crossfuse":
        return model.official_state(net)
    return {MODEL_KEY: model.name, WEIGHTS_KEY: model.official_state(net)}


def _has_parts(payload: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's contents hold CrossFuse's four state dicts."""
    return all(isinstance(payload.get(k), Mapping) for k in CHECKPOINT_PARTS)


def _weight_parts(payload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The state dicts of a checkpoint's contents, by name (for the finite checks)."""
    if _has_parts(payload):
        return {k: payload[k] for k in CHECKPOINT_PARTS}
    if isinstance(payload.get(WEIGHTS_KEY), Mapping):
        return {WEIGHTS_KEY: payload[WEIGHTS_KEY]}
    return {"state_dict": {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}}


def save(path: str, net: torch.nn.Module, state: TrainingState | None = None, *, model: Model | None = None) -> None:
    """Write ``net``'s weights (a network of ``model``; None: CrossFuse) atomically (temporary file,
    then rename), so a kill never leaves half a checkpoint. Weights that are not all finite are
    refused: a NaN checkpoint is never written."""
    model = model if model is not None else models.get("crossfuse")
    payload: dict[str, Any] = _payload(model, net)
    broken = _non_finite_weights(_weight_parts(payload))
    if broken:
        raise CheckpointError(f"refusing to write {path}: weight tensors hold NaN or infinite values ({broken}); "
                              "the previous checkpoint is kept.")
    if state is not None:
        payload[STATE_KEY] = state.to_payload()
    buffer = io.BytesIO()  # serialised in memory, so that a full disk is one OSError, not torch's C++ error
    torch.save(payload, buffer)
    atomic.write_bytes(path, buffer.getbuffer())


def resolve(path: str) -> str:
    """``path``, or for a run folder its ``checkpoints/latest.pth``; a :class:`CheckpointError`
    for any other folder (a corpus store, say)."""
    import os

    if not os.path.isdir(path):
        return path
    latest = os.path.join(path, "checkpoints", "latest.pth")
    if os.path.isfile(latest):
        return latest
    raise CheckpointError(f"{path} is a folder, not a checkpoint: give a .pth file, or a run folder that holds "
                          "checkpoints/latest.pth (a finished or resumable `crossfuse train --out`).")


def read(path: str) -> dict[str, Any]:
    """The checkpoint's contents (tensors on the CPU): a dict, loaded without running pickled code."""
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
                                  "crossfuse and the official releases write them).") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it cannot be unpickled).") from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(f"{path} is not a PyTorch checkpoint, or is damaged ({type(exc).__name__}).") \
            from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a checkpoint of state dicts (it holds a {type(payload).__name__}).")
    return payload


def identify(payload: Mapping[str, Any], path: str, model: str | None = None) -> tuple[str, TrainingState | None]:
    """Which model a checkpoint's contents are of, and its training state (None for an official
    checkpoint). ``model``: the model the caller asks for; a checkpoint of another one is refused
    in one line naming both, and a bare state dict (an official checkpoint of SeAFusion, SDNet or
    DenseFuse) needs it."""
    if model is not None and model not in models.names():
        raise CheckpointError(f"unknown model {model!r}; the models are {', '.join(models.names())}.")
    if any(k in payload for k in CHECKPOINT_PARTS) and not _has_parts(payload):
        raise CheckpointError(f"{path} is not a CrossFuse checkpoint: it needs the state dicts {list(CHECKPOINT_PARTS)}.")
    state = TrainingState.from_payload(payload, path)
    if state is not None:
        found, what = state.config.model, "was trained as"
    elif _has_parts(payload):
        found, what = "crossfuse", "is an official checkpoint of"
    elif isinstance(payload.get(MODEL_KEY), str) and isinstance(payload.get(WEIGHTS_KEY), Mapping):
        found, what = str(payload[MODEL_KEY]), "holds weights of"
    elif payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        if model is None:
            raise CheckpointError(f"{path} is a bare state dict without a record of its model (an official checkpoint "
                                  f"of {', '.join(n for n in models.names() if n != 'crossfuse')}?); pass --model NAME.")
        return model, None
    else:
        raise CheckpointError(f"{path} is not a checkpoint of a fusion model: it needs the state dicts "
                              f"{list(CHECKPOINT_PARTS)} (CrossFuse), crossfuse's '{MODEL_KEY}' and '{WEIGHTS_KEY}', "
                              "or a bare state dict with --model.")
    if model is not None and found != model:
        raise CheckpointError(f"{path} {what} model {found!r}, not {model!r}: pass --model {found} (or leave --model "
                              "out), or use a checkpoint of the model you want.")
    if found not in models.names():
        raise CheckpointError(f"{path} is of model {found!r}, which this crossfuse does not know "
                              f"({', '.join(models.names())}).")
    return found, state


def read_state(path: str) -> tuple[dict[str, Any], TrainingState]:
    """A checkpoint of ours: its contents and its training state (to resume from)."""
    payload = read(path)
    state = TrainingState.from_payload(payload, path)
    if state is None:
        raise CheckpointError(f"{path} holds weights only (an official checkpoint?); a run cannot resume from it.")
    return payload, state


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """A checkpoint's model, its network (weights loaded, on the CPU) and its settings."""

    model: Model
    net: torch.nn.Module
    settings: Any


def load(path: str, model: str | None = None, **overrides: Any) -> Loaded:
    """The network of an official checkpoint or one of ours (whose model and settings it records);
    ``model`` names the model of a bare official state dict, or checks the checkpoint's;
    ``overrides`` change test-time settings (DenseFuse's ``strategy``) over the recorded ones."""
    path = resolve(path)
    payload = read(path)
    name, state = identify(payload, path, model)
    m = models.get(name)
    settings = state.config.network if state else m.settings()
    if overrides:
        try:
            settings = dataclasses.replace(settings, **overrides)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: model {name!r} does not take {sorted(overrides)} ({exc}).") from None
    net = m.build(settings)
    load_weights(m, net, payload, path)
    return Loaded(model=m, net=net, settings=settings)


def load_model(path: str) -> torch.nn.Module:
    """:func:`load`'s network alone (CrossFuse's or whichever model the checkpoint records)."""
    return load(path).net


def load_weights(model: Model, net: torch.nn.Module, payload: Mapping[str, Any], path: str) -> None:
    """Load a checkpoint's weights into ``net`` (of ``model``), refusing non-finite weights and
    weights of other names or shapes with a :class:`CheckpointError` naming ``path``."""
    parts = _weight_parts(payload)
    broken = _non_finite_weights(parts)
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({broken}); training or fusing from it would "
                              "give garbage. Use an earlier checkpoint of the run.")
    weights = payload if model.name == "crossfuse" else next(iter(parts.values()))
    model.load_official(net, dict(weights), where=path)
