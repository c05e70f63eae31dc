"""An experiment's specification, read once from TOML into frozen dataclasses and checked.

A spec names the corpora to build (``[corpora.NAME]``: ``pack`` a manifest as it is, or ``build``
an auxiliary manifest aligned to a target at one or several K), the variants to train
(``[variants.NAME]``: corpora with weights and training settings over ``[train]``), the seeds,
and the test sets (``[tests.NAME]``). Manifest paths are relative to the spec file. A corpus
with a list of K expands into one corpus per K, and every variant that uses it into one variant
per K (``NAME@k500``), which is what the plots of a metric against K draw.

    [train]                 # every key of crossfuse.fusion.config.TrainConfig; [train.network] too
    epochs = 8
    [corpora.target]
    pack = "../data_manifests/roadscene-train.json"
    [corpora.msrs-aligned]
    build = "../data_manifests/msrs.json"
    target = "../data_manifests/roadscene-train.json"
    k = [500, 1000]
    [variants.aligned]
    corpora = ["target", "msrs-aligned"]
    weights = [1, 1]        # optional; default 1 each
    train = { consistency = false }   # optional overrides of [train]
    [tests.roadscene]
    pairs = "../data_manifests/roadscene-test.json"
    published = "RoadScene"  # optional: the row of published numbers to show next to ours

A top-level ``models = ["crossfuse", "seafusion"]`` (default ``["crossfuse"]``) crosses every variant
with every model: variant ``NAME`` becomes ``NAME.MODEL`` for each, trained with that model's
official defaults under the spec's ``[train]`` keys, then its own ``[training.MODEL]`` keys (say
CrossFuse's phase I and learning rate), its network settings in ``[network.MODEL]``, and judged
against the baseline variant of the same model.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from crossfuse.errors import ConfigError, ParameterError
from crossfuse.fusion import config as train_config
from crossfuse.fusion.config import TrainConfig

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOP_KEYS = {"name", "description", "seeds", "patch", "stride", "chunk", "sheet_pairs", "train", "corpora",
             "variants", "tests", "baseline", "models", "network", "training", "question", "correction"}


@dataclass(frozen=True, kw_only=True)
class CorpusSpec:
    """One corpus: ``kind`` "packed" (``manifest`` as it is) or "aligned" (``manifest`` aligned to
    ``target`` keeping ``k`` patches); paths are absolute."""

    name: str
    kind: str
    manifest: str
    target: str | None = None
    k: int | None = None
    select: str = "topk"
    transform: str = "gamma"
    select_seed: int = 0


@dataclass(frozen=True, kw_only=True)
class VariantSpec:
    """One training setting: ``corpora`` (names) with ``weights``, its ``config``; ``k`` is the K of
    its aligned corpus when it was expanded from a list (the x axis of the K plots), ``family``
    the name it was expanded from."""

    name: str
    family: str
    corpora: tuple[str, ...]
    weights: tuple[float, ...]
    config: TrainConfig
    k: int | None = None
    model: str = "crossfuse"


@dataclass(frozen=True, kw_only=True)
class TestSpec:
    """A test set: its pairs manifest (absolute) and the published results to compare with."""

    name: str
    pairs: str
    published: str | None = None


@dataclass(frozen=True, kw_only=True)
class Spec:
    """The whole experiment (``text``: the spec file as read, kept with the results)."""

    name: str
    path: str
    text: str
    seeds: tuple[int, ...]
    patch: int
    stride: int
    chunk: int
    sheet_pairs: int
    corpora: dict[str, CorpusSpec]
    variants: dict[str, VariantSpec]
    tests: dict[str, TestSpec]
    #: The variant every other is judged against (``baseline = "NAME"``; default: the first).
    baseline: str = ""
    #: The models every variant is trained with (``models = [...]``).
    models: tuple[str, ...] = ("crossfuse",)
    #: Which question the verdict words answer (``question = "images"`` or ``"population"``;
    #: :data:`crossfuse.experiment.stats.QUESTIONS`) and the multiplicity correction over the
    #: family of comparisons (``correction = "holm"``, ``"bh"`` or ``"none"``).
    question: str = "images"
    correction: str = "holm"

    def baseline_for(self, variant: str) -> str:
        """The variant ``variant`` is judged against: the baseline trained with the same model."""
        if self.models == ("crossfuse",):
            return self.baseline
        return f"{self.baseline}.{self.variants[variant].model}"

    def variant(self, name: str) -> VariantSpec:
        if name not in self.variants:
            raise ConfigError(f"{self.path} has no variant {name!r}; its variants are {', '.join(self.variants)}.")
        return self.variants[name]


def _table(doc: dict, key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table, got {value!r}.")
    return value


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    train_config.check_keys(table, allowed, where)


def _name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: {name!r} is not a usable name (letters, digits, '_', '.', '-'; it names "
                          "folders).")
    return name


def _path(value: Any, base: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a manifest path or URL, got {value!r}.")
    if "://" in value or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base, value))


def _ks(value: Any, where: str) -> list[int | None]:
    if value is None:
        return [None]
    ks = value if isinstance(value, list) else [value]
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise ConfigError(f"{where}: k must be a positive integer or a list of distinct ones, got {value!r}.")
    return list(ks)


def _corpora(doc: dict, base: str, where: str) -> tuple[dict[str, CorpusSpec], dict[str, list[int | None]]]:
    """The corpora, one per K, and each spec name's K values."""
    out: dict[str, CorpusSpec] = {}
    expanded: dict[str, list[int | None]] = {}
    for name, table in _table(doc, "corpora", where).items():
        at = f"{where} [corpora.{_name(name, where)}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{at} must be a table.")
        _check_keys(table, {"pack", "build", "target", "k", "select", "transform", "select_seed"}, at)
        if ("pack" in table) == ("build" in table):
            raise ConfigError(f"{at}: give exactly one of pack = MANIFEST (as it is) or build = MANIFEST "
                              "(aligned to target = MANIFEST).")
        if "pack" in table:
            if set(table) & {"target", "k", "select", "transform", "select_seed"}:
                raise ConfigError(f"{at}: target, k, select, transform and select_seed belong to build corpora, not "
                                  "pack ones.")
            out[name] = CorpusSpec(name=name, kind="packed", manifest=_path(table["pack"], base, f"{at} pack"))
            expanded[name] = [None]
            continue
        if "target" not in table or "k" not in table:
            raise ConfigError(f"{at}: a build corpus needs target = MANIFEST and k = K (or a list of K).")
        expanded[name] = _ks(table["k"], at)
        for k in list(expanded[name]):
            key = name if len(expanded[name]) == 1 else f"{name}@k{k}"
            out[key] = CorpusSpec(name=key, kind="aligned", manifest=_path(table["build"], base, f"{at} build"),
                                  target=_path(table["target"], base, f"{at} target"), k=k, **_alignment(table, at))
            if key != name:  # a variant may also name one K of the list: NAME@kK
                expanded[key] = [k]
    if not out:
        raise ConfigError(f"{where}: no [corpora.NAME] tables; an experiment trains on at least one corpus.")
    return out, expanded


def _alignment(table: dict, at: str) -> dict[str, Any]:
    """A build corpus' ``select``, ``transform`` and ``select_seed`` (the paper's by default),
    checked as ``crossfuse-align build`` checks them."""
    from crossfuse.align.config import BuildParams

    chosen = {k: table[k] for k in ("select", "transform", "select_seed") if k in table}
    try:
        BuildParams(**chosen)
    except (ParameterError, TypeError) as exc:
        raise ConfigError(f"{at}: {exc}") from exc
    return chosen


def _variant(name: str, table: Any, base_values: dict, expanded: dict[str, list[int | None]],
             where: str, *, model: str = "crossfuse", suffix: bool = False) -> list[VariantSpec]:
    at = f"{where} [variants.{_name(name, where)}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{at} must be a table.")
    _check_keys(table, {"corpora", "weights", "train"}, at)
    corpora = table.get("corpora")
    if not isinstance(corpora, list) or not corpora or not all(isinstance(c, str) for c in corpora):
        raise ConfigError(f"{at}: corpora must be a non-empty list of corpus names, got {corpora!r}.")
    for c in corpora:
        if c not in expanded:
            raise ConfigError(f"{at}: no corpus named {c!r}; the spec's corpora are {', '.join(expanded)}.")
    weights = table.get("weights", [1.0] * len(corpora))
    if not isinstance(weights, list) or len(weights) != len(corpora) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights):
        raise ConfigError(f"{at}: weights must list one positive number per corpus, got {weights!r}.")
    overrides = table.get("train", {})
    if not isinstance(overrides, dict):
        raise ConfigError(f"{at}: train must be a table of training settings, got {overrides!r}.")
    values = {**base_values, **overrides, "model": model}
    if "network" in overrides:
        values["network"] = {**base_values.get("network", {}), **overrides["network"]}
    cfg = train_config.from_dict(values, where=f"{at} train" + (f" (model {model})" if suffix else ""))
    tail = f".{model}" if suffix else ""
    multi = [c for c in corpora if len(expanded[c]) > 1]
    if len(multi) > 1:
        raise ConfigError(f"{at}: only one of its corpora may list several K (got {multi}).")
    if not multi:
        return [VariantSpec(name=name + tail, family=name + tail, corpora=tuple(corpora),
                            weights=tuple(map(float, weights)), config=cfg, k=_single_k(corpora, expanded), model=model)]
    return [VariantSpec(name=f"{name}@k{k}{tail}", family=name + tail, weights=tuple(map(float, weights)), config=cfg,
                        k=k, corpora=tuple(f"{c}@k{k}" if c == multi[0] else c for c in corpora), model=model)
            for k in expanded[multi[0]]]


def _single_k(corpora: list[str], expanded: dict[str, list[int | None]]) -> int | None:
    ks = [expanded[c][0] for c in corpora if expanded[c][0] is not None]
    return ks[0] if len(ks) == 1 else None


def _tests(doc: dict, base: str, where: str) -> dict[str, TestSpec]:
    from crossfuse.experiment.published import PUBLISHED

    out = {}
    for name, table in _table(doc, "tests", where).items():
        at = f"{where} [tests.{_name(name, where)}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{at} must be a table.")
        _check_keys(table, {"pairs", "published"}, at)
        published = table.get("published")
        if published is not None and published not in PUBLISHED:
            raise ConfigError(f"{at}: published must be one of {', '.join(PUBLISHED)}, got {published!r}.")
        out[name] = TestSpec(name=name, pairs=_path(table.get("pairs"), base, f"{at} pairs"), published=published)
    if not out:
        raise ConfigError(f"{where}: no [tests.NAME] tables; an experiment is judged on at least one test set.")
    return out


def _positive(doc: dict, key: str, default: int, where: str) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}.")
    return value


def load(path: str) -> Spec:
    """Read and check the spec at ``path``; every problem is a ConfigError naming the file and key."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        doc = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"experiment spec {path} does not exist.") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    _check_keys(doc, _TOP_KEYS, path)
    base = os.path.dirname(os.path.abspath(path))
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                             for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of distinct integers, got {seeds!r}.")
    corpora, expanded = _corpora(doc, base, path)
    base_values = _table(doc, "train", path)
    chosen = _models(doc, path)
    crossed = "models" in doc and chosen != ("crossfuse",)
    networks = _table(doc, "network", path)
    trainings = _table(doc, "training", path)
    if crossed and "network" in base_values:
        raise ConfigError(f"{path}: with models = {list(chosen)}, give each model's network settings in "
                          "[network.MODEL] tables, not [train.network] (the models take different settings).")
    for table, extra in [("network", e) for e in set(networks) - set(chosen)] + \
            [("training", e) for e in set(trainings) - set(chosen)]:
        raise ConfigError(f"{path}: [{table}.{extra}] names a model that models = {list(chosen)} does not list.")
    variants = {}
    for model in chosen:
        own = trainings.get(model, {})
        if not isinstance(own, dict) or "network" in own or "model" in own:
            raise ConfigError(f"{path}: [training.{model}] must be a table of training settings (network settings "
                              f"go in [network.{model}]).")
        values = {**base_values, **own, "model": model}
        if model in networks:
            values["network"] = {**base_values.get("network", {}), **networks[model]}
        train_config.from_dict(values, where=f"{path} [train]" + (f" (model {model})" if crossed else ""))
        for name, table in _table(doc, "variants", path).items():
            for v in _variant(name, table, values, expanded, path, model=model, suffix=crossed):
                variants[v.name] = v
    if not variants:
        raise ConfigError(f"{path}: no [variants.NAME] tables; name at least one setting to train.")
    used = {c for v in variants.values() for c in v.corpora}
    first = next(iter(variants.values()))
    baseline = doc.get("baseline", first.family.removesuffix(f".{first.model}") if crossed else first.name)
    known = {v.name.removesuffix(f".{v.model}") for v in variants.values()} if crossed else set(variants)
    if baseline not in known:
        raise ConfigError(f"{path}: baseline must name a variant (one of {', '.join(sorted(known))}), got {baseline!r}.")
    return Spec(name=str(doc.get("name", os.path.splitext(os.path.basename(path))[0])), path=os.path.abspath(path),
                text=raw.decode("utf-8"), seeds=tuple(seeds), patch=_positive(doc, "patch", 64, path),
                stride=_positive(doc, "stride", 200, path), chunk=_positive(doc, "chunk", 256, path),
                sheet_pairs=_positive(doc, "sheet_pairs", 3, path),
                corpora={n: c for n, c in corpora.items() if n in used}, variants=variants,
                tests=_tests(doc, base, path), baseline=baseline, models=chosen if crossed else ("crossfuse",),
                **_analysis(doc, path))


def _analysis(doc: dict, where: str) -> dict[str, str]:
    from crossfuse.experiment.stats import CORRECTIONS, QUESTIONS

    out = {"question": doc.get("question", "images"), "correction": doc.get("correction", "holm")}
    for key, allowed in (("question", QUESTIONS), ("correction", CORRECTIONS)):
        if out[key] not in allowed:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(allowed)}, got {out[key]!r}.")
    return out


def _models(doc: dict, where: str) -> tuple[str, ...]:
    from crossfuse.models.settings import names

    value = doc.get("models", ["crossfuse"])
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value) \
            or len(set(value)) != len(value):
        raise ConfigError(f"{where}: models must be a non-empty list of distinct model names, got {value!r}.")
    unknown = [m for m in value if m not in names()]
    if unknown:
        raise ConfigError(f"{where}: unknown model(s) {unknown} in models; the models are {', '.join(names())}.")
    return tuple(value)
