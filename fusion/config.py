"""Training configuration: a frozen dataclass loaded once from TOML, flags overriding it.

Defaults are the release's: Adam lr 1e-4 without weight decay, StepLR(20, 0.5) floored at 1e-6,
gradient-norm clip 0.01 per sub-network, batch 8, 160 epochs of which 40 in phase I.
A TOML file holds the same keys at top level (``model`` among them: the network to train, default
crossfuse) and that model's network settings under ``[network]``; each model brings its official
training defaults (:data:`crossfuse.models.settings.TRAIN_DEFAULTS`), which the file's keys override.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass
from typing import Any

from crossfuse.errors import ConfigError
from crossfuse.manifest import absolute
from crossfuse.models import settings as model_settings
from crossfuse.models.settings import NetworkConfig  # noqa: F401 - CrossFuse's settings, long imported from here

#: The aggressive views of phase II's consistency term (:func:`crossfuse.fusion.losses.aggressive_view`).
AGGRESSIVE_VIEWS = ("blur", "jpeg", "noise", "cutout")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that decides a training run (saved as ``config.toml`` in the run folder):
    ``model`` names the network (:mod:`crossfuse.models`), ``network`` holds its settings (an
    instance of that model's settings class; None: its defaults). Build a config of another model
    with :func:`defaults` or :func:`from_dict`, which also apply that model's training defaults."""

    model: str = model_settings.DEFAULT_MODEL
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
    consistency: bool = True  # the weak/aggressive self-supervision term (false: the ablation without it)
    aggressive: str = "blur"  # the aggressive view: blur (the paper's), jpeg, noise or cutout
    steps_per_epoch: int = 0  # 0: every batch of the corpora; >0: at most this many (brief runs)
    loader_workers: int = 0
    buffer_chunks: int = 4
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = True
    nan_patience: int = 20
    network: Any = None

    def __post_init__(self) -> None:
        try:
            kind = model_settings.settings_class(self.model)
        except ValueError as exc:
            raise ConfigError(f"{exc}.") from None
        if self.network is None:
            object.__setattr__(self, "network", kind())
        elif not isinstance(self.network, kind):
            raise ConfigError(f"model {self.model!r} takes network settings {kind.__name__}, got "
                              f"{type(self.network).__name__}.")
        if not 0 <= self.phase1_epochs <= self.epochs:
            raise ConfigError(f"phase1_epochs ({self.phase1_epochs}) must lie in 0..epochs ({self.epochs}).")
        for name in ("epochs", "batch_size", "lr_step", "crop", "blur_width", "blur_height", "nan_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.blur_width % 2 == 0 or self.blur_height % 2 == 0:
            raise ConfigError("blur_width and blur_height must be odd.")
        for name, low, high, closed in (("lr", 0.0, 10.0, False), ("min_lr", 0.0, 10.0, True),
                                        ("weight_decay", 0.0, 1.0, True), ("lr_gamma", 0.0, 1.0, False),
                                        ("clip_norm", 0.0, 1e6, True), ("beta_max", 0.0, 100.0, True),
                                        ("sigma_min", 0.0, 100.0, False), ("sigma_max", 0.0, 100.0, False)):
            value = getattr(self, name)
            if not (math.isfinite(value) and (low <= value if closed else low < value) and value <= high):
                raise ConfigError(f"{name} must be a finite number in {'[' if closed else '('}{low}, {high}], "
                                  f"got {value!r}.")
        if self.aggressive not in AGGRESSIVE_VIEWS:
            raise ConfigError(f"aggressive must be one of {', '.join(AGGRESSIVE_VIEWS)}, got {self.aggressive!r}.")
        if self.sigma_max < self.sigma_min:
            raise ConfigError(f"sigma_max ({self.sigma_max}) must be at least sigma_min ({self.sigma_min}).")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The table of config.toml that records the corpora a run trains on (not part of TrainConfig).
DATA_TABLE = "data"


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_types(cls: type, values: dict[str, Any], where: str, prefix: str = "") -> None:
    """Every value of the type its field declares (an int is accepted for a float), or a
    ConfigError naming the key, the expected type and what was given."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = hints.get(key)
        if expected not in _TYPE_WORDS:
            continue
        accepted = (int, float) if expected is float else expected
        if isinstance(value, bool) and expected is not bool or not isinstance(value, accepted):
            raise ConfigError(f"{where}: {prefix}{key} must be {_TYPE_WORDS[expected]}, "
                              f"got {value!r} ({type(value).__name__}).")


def check_keys(table: dict[str, Any], known: set[str] | frozenset[str], where: str, section: str = "") -> None:
    """A ConfigError for the keys of ``table`` not in ``known``: each unknown key named with its
    ``section`` (``[network]``), the closest known key suggested as flag typos get it ("did you
    mean"), then every known key."""
    import difflib

    unknown = sorted(set(table) - set(known))
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    place = f" in {section}" if section else ""
    raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''}{place}: {', '.join(named)}. "
                      f"Known keys{place}: {', '.join(sorted(known))}.")


def from_dict(values: dict[str, Any], *, where: str = "config") -> TrainConfig:
    """Build a config from plain values (a parsed TOML document), rejecting unknown keys (named,
    with the closest known one) and values of the wrong type. A ``[data]`` table (a run's
    corpora) is ignored here."""
    values = {k: v for k, v in values.items() if k != DATA_TABLE}
    check_keys(values, {f.name for f in dataclasses.fields(TrainConfig)}, where)
    model = values.get("model", model_settings.DEFAULT_MODEL)
    if model not in model_settings.SETTINGS:
        raise ConfigError(f"{where}: unknown model {model!r}; the models are {', '.join(model_settings.names())}.")
    values = {**model_settings.TRAIN_DEFAULTS[model], **values}
    net = values.pop("network", {})
    if not isinstance(net, dict):
        raise ConfigError(f"{where}: network must be a table ([network]) of network settings, got {net!r}.")
    kind = model_settings.settings_class(model)
    _refuse_other_models_settings(net, model, where)
    check_keys(net, model_settings.field_names(model), f"{where} (model {model!r})", "[network]")
    _check_types(TrainConfig, values, where)
    _check_types(kind, net, where, prefix="network.")
    try:
        return TrainConfig(**values, network=kind(**net))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _refuse_other_models_settings(net: dict[str, Any], model: str, where: str) -> None:
    """A ConfigError naming the ``[network]`` keys that are settings of other models, not ``model``'s."""
    own = model_settings.field_names(model)
    foreign = {key: [m for m in model_settings.names() if m != model and key in model_settings.field_names(m)]
               for key in net if key not in own}
    foreign = {k: ms for k, ms in foreign.items() if ms}
    if foreign:
        named = ", ".join(f"{k!r} (of {' and '.join(ms)})" for k, ms in sorted(foreign.items()))
        raise ConfigError(f"{where}: [network] holds settings of another model for model {model!r}: {named}. "
                          f"{model!r} takes {', '.join(sorted(own)) or 'no network settings'}; remove the others "
                          "or set model to theirs.")


def defaults(model: str = model_settings.DEFAULT_MODEL, **values: Any) -> TrainConfig:
    """The config of ``model`` with its official training defaults, ``values`` over them."""
    return from_dict({"model": model, **values}, where="defaults")


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def load(path: str | None, overrides: dict[str, Any] | None = None, *,
         base: TrainConfig | None = None) -> TrainConfig:
    """The config ``base`` (None: the defaults), then the keys of TOML file ``path`` over it, then
    ``overrides`` (None values ignored) over both. ``[network]`` keys override one by one."""
    values: dict[str, Any] = base.to_dict() if base is not None else {}
    if path:
        doc = _read_toml(path)
        net = doc.pop("network", None)
        values.update(doc)
        if net is not None:
            values["network"] = {**values.get("network", {}), **net} if isinstance(net, dict) else net
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(values, where=path or "flags")


@dataclass(frozen=True, kw_only=True)
class RunData:
    """The corpora a run trains on, as recorded in its config.toml: store locations, weights and
    each store's record digest (``corpora``: what identifies the data; None in runs from before)."""

    stores: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    corpora: tuple[str, ...] | None = None


def read_run(path: str) -> tuple[TrainConfig, RunData | None]:
    """A run's ``config.toml``: its config, and its corpora (None when it records none)."""
    doc = _read_toml(path)
    data = doc.get(DATA_TABLE)
    cfg = from_dict(doc, where=path)
    if not isinstance(data, dict) or not isinstance(data.get("stores"), list):
        return cfg, None
    weights = data.get("weights")
    corpora = data.get("corpora")
    return cfg, RunData(stores=tuple(str(s) for s in data["stores"]),
                        weights=tuple(float(w) for w in weights) if weights else None,
                        corpora=tuple(str(c) for c in corpora) if isinstance(corpora, list) else None)


def to_toml(cfg: TrainConfig, data: RunData | None = None) -> str:
    """``cfg`` (and the run's corpora ``data``, as a ``[data]`` table) as a TOML document that
    :func:`load` reads back to an equal config and :func:`read_run` to both."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)  # a TOML basic string: quotes and backslashes escaped
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    d = cfg.to_dict()
    net = d.pop("network")
    lines = [f"{k} = {fmt(v)}" for k, v in d.items()] + ["", "[network]"]
    lines += [f"{k} = {fmt(v)}" for k, v in net.items()]
    if data is not None:
        lines += ["", f"[{DATA_TABLE}]", f"stores = {fmt(data.stores)}"]
        if data.weights is not None:
            lines.append(f"weights = {fmt([float(w) for w in data.weights])}")
        if data.corpora is not None:
            lines.append(f"corpora = {fmt(list(data.corpora))}")
    return "\n".join(lines) + "\n"


def for_resume(run_dir: str, *, config_file: str | None, overrides: dict[str, Any], stores: list[str],
               weights: list[float] | None, new_data: bool) -> tuple[TrainConfig, list[str], list[float] | None]:
    """The config and corpora of a resumed run: its saved ``config.toml``, then ``config_file``
    and ``overrides`` over it (raising ``epochs`` extends the run). The corpora are the recorded
    ones when ``stores`` is empty; other corpora are refused unless ``new_data``."""
    saved = os.path.join(run_dir, "config.toml")
    if not os.path.exists(saved):
        raise ConfigError(f"--resume: {saved} does not exist, so {run_dir} holds no run to resume; "
                          "start it without --resume.")
    base, recorded = read_run(saved)
    cfg = load(config_file, overrides, base=base)
    if cfg.model != base.model:
        raise ConfigError(f"--resume: {run_dir} trains model {base.model!r}, not {cfg.model!r}; start a new run in "
                          "another --out for another model.")
    if cfg.network != base.network:
        raise ConfigError(f"--resume: the network sizes of {run_dir} ({base.network}) cannot change; "
                          "start a new run in another --out for another network.")
    if not stores:
        if recorded is None:
            raise ConfigError(f"{saved} records no corpora; pass the run's --data stores.")
        if not new_data:
            _refuse_rebuilt(run_dir, recorded)
        return cfg, list(recorded.stores), list(recorded.weights) if recorded.weights else None
    given = RunData(stores=tuple(absolute(s) for s in stores), weights=tuple(weights) if weights else None)
    if recorded is not None and not new_data and _normalised(given) != _normalised(recorded):
        raise ConfigError(f"--resume: {run_dir} was trained on {list(recorded.stores)} with weights "
                          f"{list(_normalised(recorded).weights)}, not {list(given.stores)} with "
                          f"{list(_normalised(given).weights)}. Omit --data to use the run's corpora, or pass "
                          "--new-data to continue on other data.")
    if recorded is not None and not new_data:
        _refuse_rebuilt(run_dir, recorded)
    return cfg, list(stores), list(weights) if weights else None


def _refuse_rebuilt(run_dir: str, recorded: RunData) -> None:
    """A ConfigError when a recorded store holds other data than the run trained on (rebuilt at the
    same path): its record digest differs from the one config.toml recorded."""
    if not recorded.corpora:
        return
    from crossfuse.schema import open_corpus

    for url, digest in zip(recorded.stores, recorded.corpora):
        _, record = open_corpus(url)
        now = record.record_sha256 or record.content_sha256()
        if now != digest:
            raise ConfigError(f"--resume: {url} holds other data than {run_dir} trained on (its record digest is "
                              f"{now[:12]}..., the run recorded {digest[:12]}...; rebuilt at the same path?). Pass "
                              "--new-data to continue on it anyway, or start a new run.")


def _normalised(data: RunData) -> RunData:
    return RunData(stores=data.stores, weights=data.weights or (1.0,) * len(data.stores))
