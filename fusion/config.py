"""Training configuration: a frozen dataclass loaded once from TOML, flags overriding it.

Defaults are the release's: Adam lr 1e-4 without weight decay, StepLR(20, 0.5) floored at 1e-6,
gradient-norm clip 0.01 per sub-network, batch 8, 160 epochs of which 40 in phase I.
A TOML file holds the same keys at top level and the network sizes under ``[network]``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from typing import Any

from crossfuse.errors import CrossfuseError
from crossfuse.fusion.network import NetworkConfig


class ConfigError(CrossfuseError, ValueError):
    """A training configuration file or flag that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that decides a training run (saved as ``config.toml`` in the run folder)."""

    epochs: int = 160
    phase1_epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_step: int = 20
    lr_gamma: float = 0.5
    min_lr: float = 1e-6
    clip_norm: float = 0.01
    seed: int = 0
    beta_max: float = 0.1
    crop: int = 32
    blur_width: int = 9
    blur_height: int = 21
    sigma_min: float = 0.1
    sigma_max: float = 5.0
    steps_per_epoch: int = 0  # 0: every batch of the corpora; >0: at most this many (brief runs)
    loader_workers: int = 0
    buffer_chunks: int = 4
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = True
    nan_patience: int = 20
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.phase1_epochs <= self.epochs:
            raise ConfigError(f"phase1_epochs ({self.phase1_epochs}) must lie in 0..epochs ({self.epochs}).")
        for name in ("epochs", "batch_size", "lr_step", "crop", "blur_width", "blur_height", "nan_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.blur_width % 2 == 0 or self.blur_height % 2 == 0:
            raise ConfigError("blur_width and blur_height must be odd.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(values: dict[str, Any], *, where: str = "config") -> TrainConfig:
    """Build a config from plain values (a parsed TOML document), rejecting unknown keys."""
    values = dict(values)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known keys are {sorted(known)}.")
    net = values.pop("network", {})
    net_known = {f.name for f in dataclasses.fields(NetworkConfig)}
    if not isinstance(net, dict) or set(net) - net_known:
        raise ConfigError(f"{where}: [network] accepts {sorted(net_known)}, got {net!r}.")
    try:
        return TrainConfig(**values, network=NetworkConfig(**net))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load(path: str | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config in TOML file ``path`` (None: defaults), with ``overrides`` (None values ignored)."""
    values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(values, where=path or "flags")


def to_toml(cfg: TrainConfig) -> str:
    """``cfg`` as a TOML document that :func:`load` reads back to an equal config."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return repr(v)

    d = cfg.to_dict()
    net = d.pop("network")
    lines = [f"{k} = {fmt(v)}" for k, v in d.items()] + ["", "[network]"]
    lines += [f"{k} = {fmt(v)}" for k, v in net.items()]
    return "\n".join(lines) + "\n"
