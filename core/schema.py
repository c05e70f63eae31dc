"""Corpus store schema 1: the array names and dtypes, and the typed record of the attributes.

A corpus is a Zarr v3 group holding the arrays in :data:`ARRAYS` (first axis N, one row per
patch) and a JSON attribute ``crossfuse``: a :class:`CorpusRecord`. The record is the one place
where the attribute's layout and checks live; the writer (``crossfuse.align``), the reader
(``crossfuse.fusion``), ``inspect``/``verify`` and the CLI all go through it, never through
string keys. ``to_json`` writes the layout corpora have always had, so older stores read back.
Nothing here imports zarr at module level; :func:`open_corpus` does so lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from crossfuse.digest import json_sha256
from crossfuse.errors import StoreError

SCHEMA_VERSION = 1
ATTR_KEY = "crossfuse"
KINDS = ("aligned", "packed")
#: Group of an aligned corpus holding the patch means its alignment was judged on:
#: ``target_means`` (every target patch) and ``pool_means`` (every auxiliary patch), (n, 3)
#: float32 R, G, B on 0-255. The selection's own are the corpus' ``means`` array.
STATS_GROUP = "stats"
#: Scratch group used while a build runs; removed when the store is complete.
PARTIAL_GROUP = "_partial"


def array_specs(n: int, patch: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every array in a schema-1 corpus of ``n`` patches of ``patch``."""
    return {
        "vis": ("uint8", (n, 3, patch, patch)),
        "ir": ("uint8", (n, 1, patch, patch)),
        "source": ("int32", (n,)),
        "origin": ("int32", (n, 2)),
        "means": ("float32", (n, 3)),
        "distance": ("float32", (n,)),
    }


ARRAYS = tuple(array_specs(0, 1))


def chunk_count(n: int, chunk: int) -> int:
    """Chunks along N of an array of ``n`` rows in chunks of ``chunk`` rows."""
    return -(-n // chunk)


def chunk_key(array, index: int) -> str:
    """The key of chunk ``index`` (along N) of a zarr ``array``, relative to the array's folder."""
    return array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))


def chunk_url(url: str, array, index: int) -> str:
    """Where chunk ``index`` (along N) of the zarr ``array`` of the store at ``url`` is stored."""
    return f"{url.rstrip('/')}/{array.basename}/{chunk_key(array, index)}"


def stored_chunks(url: str, name: str) -> dict[str, int]:
    """Every chunk object of array ``name`` of the store at ``url`` that exists: key -> size
    (keys relative to the array's folder, as :func:`chunk_key` gives them)."""
    import fsspec

    fs, folder = fsspec.core.url_to_fs(f"{url.rstrip('/')}/{name}")
    fs.invalidate_cache(folder)  # object-store listings are cached; chunks may have been written since
    if not fs.exists(f"{folder}/c"):
        return {}
    return {p[len(folder):].lstrip("/"): int(info["size"]) for p, info in fs.find(f"{folder}/c", detail=True).items()}


def _get(doc: Mapping, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if key not in doc or doc[key] is None:
        if optional:
            return None
        raise StoreError(f"lacks '{key}'")
    value = doc[key]
    numeric = kind in (float, (int, float))
    if isinstance(value, bool) and kind is not bool or not isinstance(value, (int, float) if numeric else kind):
        raise StoreError(f"has '{key}' = {value!r}, expected {getattr(kind, '__name__', kind)}")
    return float(value) if kind is float else value


def _triple(doc: Mapping, key: str, *, optional: bool = False) -> tuple[float, float, float] | None:
    values = _get(doc, key, list, optional=optional)
    if values is None:
        return None
    if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise StoreError(f"has '{key}' = {values!r}, expected three numbers (R, G, B)")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class Params:
    """How the patches were cut and chosen: ``patch``/``stride`` in pixels (``stride`` 0: not
    known, an imported corpus), ``chunk`` patches per Zarr chunk; for an aligned corpus ``k``,
    ``metric`` ("L1") and ``index`` ("flat"/"ivf", with ``nlist``/``nprobe``);
    ``drop_low_contrast`` True when CDDFuse's low-contrast patches were left out; ``select``
    ("topk"/"random", with ``select_seed``) and ``transform`` ("gamma"/"none") how an aligned
    corpus chose and changed its patches (absent in corpora made before: "topk" and "gamma")."""

    patch: int
    stride: int
    chunk: int
    k: int | None = None
    metric: str | None = None
    index: str | None = None
    nlist: int | None = None
    nprobe: int | None = None
    drop_low_contrast: bool | None = None
    select: str | None = None
    transform: str | None = None
    select_seed: int | None = None
    descriptor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, doc: Mapping) -> Params:
        return cls(patch=_get(doc, "patch", int), stride=_get(doc, "stride", int), chunk=_get(doc, "chunk", int),
                   k=_get(doc, "k", int, optional=True), metric=_get(doc, "metric", str, optional=True),
                   index=_get(doc, "index", str, optional=True), nlist=_get(doc, "nlist", int, optional=True),
                   nprobe=_get(doc, "nprobe", int, optional=True),
                   drop_low_contrast=_get(doc, "drop_low_contrast", bool, optional=True),
                   select=_get(doc, "select", str, optional=True), transform=_get(doc, "transform", str, optional=True),
                   select_seed=_get(doc, "select_seed", int, optional=True),
                   descriptor=_get(doc, "descriptor", str, optional=True))


@dataclass(frozen=True, kw_only=True)
class Source:
    """One source pair: ``id``, paths of ``ir`` and ``vis`` relative to the dataset root, sha256s."""

    id: str
    ir: str
    vis: str
    ir_sha256: str
    vis_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ir": self.ir, "vis": self.vis, "ir_sha256": self.ir_sha256,
                "vis_sha256": self.vis_sha256}

    @classmethod
    def from_json(cls, doc: Mapping) -> Source:
        return cls(**{f.name: _get(doc, f.name, str) for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A dataset a corpus was made from: ``name``, ``root`` (path or URL) and the sha256 of the
    list of pairs actually read. For the target of an aligned corpus also its statistics:
    ``means`` (R, G, B, 0-255, the mean of its patch means), ``pairs`` and ``patches``."""

    name: str
    root: str
    sha256: str
    means: tuple[float, float, float] | None = None
    pairs: int | None = None
    patches: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "root": self.root, "sha256": self.sha256}
        if self.means is not None:
            out.update(means=list(self.means), pairs=self.pairs, patches=self.patches)
        return out

    @classmethod
    def from_json(cls, doc: Mapping) -> Dataset:
        return cls(name=_get(doc, "name", str), root=_get(doc, "root", str), sha256=_get(doc, "sha256", str),
                   means=_triple(doc, "means", optional=True), pairs=_get(doc, "pairs", int, optional=True),
                   patches=_get(doc, "patches", int, optional=True))


@dataclass(frozen=True, kw_only=True)
class Counts:
    """Pairs and patches scanned (``aux_*``; ``target_*`` for an aligned corpus), ``patches``
    written (N), pairs ``skipped``, and (``--drop-low-contrast``) the auxiliary patches left out
    as ``low_contrast`` (not counted in ``aux_patches``)."""

    aux_pairs: int
    aux_patches: int
    patches: int
    skipped: int
    target_pairs: int | None = None
    target_patches: int | None = None
    low_contrast: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.target_pairs is not None:
            out.update(target_pairs=self.target_pairs, target_patches=self.target_patches)
        out.update(aux_pairs=self.aux_pairs, aux_patches=self.aux_patches, patches=self.patches,
                   skipped=self.skipped)
        if self.low_contrast is not None:
            out["low_contrast"] = self.low_contrast
        return out

    @classmethod
    def from_json(cls, doc: Mapping) -> Counts:
        return cls(aux_pairs=_get(doc, "aux_pairs", int), aux_patches=_get(doc, "aux_patches", int),
                   patches=_get(doc, "patches", int), skipped=_get(doc, "skipped", int),
                   target_pairs=_get(doc, "target_pairs", int, optional=True),
                   target_patches=_get(doc, "target_patches", int, optional=True),
                   low_contrast=_get(doc, "low_contrast", int, optional=True))


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A pair that could not be used (``--skip-bad``): its ``id``, the ``path`` at fault, the
    ``error`` message and the ``dataset`` ("target" or "aux") it belongs to."""

    id: str
    path: str
    error: str
    dataset: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "error": self.error, "dataset": self.dataset}

    @classmethod
    def from_json(cls, doc: Mapping) -> Problem:
        return cls(**{f.name: _get(doc, f.name, str) for f in fields(cls)})


def _items(doc: Mapping, key: str, kind: type) -> tuple:
    return tuple(kind.from_json(_get({"item": item}, "item", dict)) for item in _get(doc, key, list))


@dataclass(frozen=True, kw_only=True)
class Distances:
    """Alignment quality of an aligned corpus: per channel (R, G, B), the 1-D Wasserstein distance
    W1 (0-255 units) from the target's distribution of patch means to the whole auxiliary
    ``pool``'s, the selection's ``before`` and ``after`` the gamma correction."""

    pool: tuple[float, float, float]
    before: tuple[float, float, float]
    after: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {"pool": list(self.pool), "before": list(self.before), "after": list(self.after)}

    @classmethod
    def from_json(cls, doc: Mapping) -> Distances:
        return cls(pool=_triple(doc, "pool"), before=_triple(doc, "before"), after=_triple(doc, "after"))


@dataclass(frozen=True, kw_only=True)
class LumaDistances:
    """What the network sees: W1 (grey levels) from the target's distribution of pixel luma
    (Y = 0.299 R + 0.587 G + 0.114 B, every pixel of every target patch) to the whole ``pool``'s,
    the selection's ``before`` and ``after`` its transform."""

    pool: float
    before: float
    after: float

    def to_json(self) -> dict[str, Any]:
        return {"pool": self.pool, "before": self.before, "after": self.after}

    @classmethod
    def from_json(cls, doc: Mapping) -> LumaDistances:
        return cls(pool=_get(doc, "pool", float), before=_get(doc, "before", float), after=_get(doc, "after", float))


@dataclass(frozen=True, kw_only=True)
class CorpusRecord:
    """The ``crossfuse`` attribute of a corpus store.

    While a build runs only the header is set (``complete`` False: schema, kind, the build's
    ``fingerprint``/``scan_fingerprint`` and readable ``inputs``); a complete record also has
    ``params``, ``sources``, the ``aux`` and (aligned) ``target`` datasets, the per-channel
    ``gamma`` (R, G, B; 1 for a packed corpus), ``gamma_reachable`` (aligned), the selection's
    ``means_before``/``means_after`` (0-255), ``counts``, the ``skipped`` pairs, the ``created``
    time, with an IVF index ``ivf_recall``, and (aligned corpora built since W1 was recorded) the
    alignment quality ``w1`` (:class:`Distances`), and with ``--transform cdf`` the three
    ``luts`` (256 levels each) written with the patches. Integrity: ``chunks`` gives, per array, the
    (size, sha256) of every chunk object as written, ``stats_sha256`` (aligned) the digest of the
    ``stats`` group (:func:`stats_digest`), and ``record_sha256`` the digest of the rest of the
    record (:meth:`sealed`), so that a missing, swapped or altered chunk, edited statistics and
    an edited attribute are found. Stores written before crossfuse recorded digests have none
    of them; stores written before it digested the statistics lack ``stats_sha256`` alone.
    """

    schema: int = SCHEMA_VERSION
    kind: str
    complete: bool = False
    fingerprint: str | None = None
    scan_fingerprint: str | None = None
    inputs: dict[str, Any] | None = None
    tool_version: str | None = None
    params: Params | None = None
    sources: tuple[Source, ...] = ()
    aux: Dataset | None = None
    target: Dataset | None = None
    gamma: tuple[float, float, float] | None = None
    gamma_reachable: tuple[bool, bool, bool] | None = None
    means_before: tuple[float, float, float] | None = None
    means_after: tuple[float, float, float] | None = None
    counts: Counts | None = None
    skipped: tuple[Problem, ...] = field(default=())
    ivf_recall: float | None = None
    w1: Distances | None = None
    luts: tuple[tuple[int, ...], ...] | None = None
    w1_luma: LumaDistances | None = None
    created: str | None = None
    chunks: dict[str, tuple[tuple[int, str], ...]] | None = None
    stats_sha256: str | None = None
    record_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The attribute as stored (keys in the order corpora have always had; unset ones left out)."""
        out: dict[str, Any] = {"schema": self.schema, "kind": self.kind, "complete": self.complete}
        for name in ("fingerprint", "scan_fingerprint", "inputs", "tool_version"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.params is None:
            return out
        out.update(params=self.params.to_json(), sources=[s.to_json() for s in self.sources],
                   aux=self.aux.to_json() if self.aux else None,
                   target=self.target.to_json() if self.target else None, gamma=list(self.gamma or ()))
        if self.gamma_reachable is not None:
            out["gamma_reachable"] = list(self.gamma_reachable)
        out.update(means_before=list(self.means_before or ()), means_after=list(self.means_after or ()),
                   counts=self.counts.to_json() if self.counts else None, skipped=[p.to_json() for p in self.skipped])
        if self.ivf_recall is not None:
            out["ivf_recall"] = self.ivf_recall
        if self.w1 is not None:
            out["w1"] = self.w1.to_json()
        if self.luts is not None:
            out["luts"] = [list(lut) for lut in self.luts]
        if self.w1_luma is not None:
            out["w1_luma"] = self.w1_luma.to_json()
        if self.created is not None:
            out["created"] = self.created
        if self.chunks is not None:
            out["chunks"] = {name: [list(c) for c in chunks] for name, chunks in self.chunks.items()}
        if self.stats_sha256 is not None:
            out["stats_sha256"] = self.stats_sha256
        if self.record_sha256 is not None:
            out["record_sha256"] = self.record_sha256
        return out

    def content_sha256(self) -> str:
        """The digest of the record without its own ``record_sha256``."""
        doc = self.to_json()
        doc.pop("record_sha256", None)
        return json_sha256(doc)

    def sealed(self) -> CorpusRecord:
        """The record with its ``record_sha256`` set (what finalisation stores)."""
        return dataclasses.replace(self, record_sha256=self.content_sha256())

    @classmethod
    def from_json(cls, doc: Any, where: str, *, require_complete: bool = True) -> CorpusRecord:
        """Validate a stored attribute and return its record; a :class:`StoreError` naming
        ``where`` says what is wrong (missing, another schema, unknown kind, incomplete, or a
        field of the wrong type) and what to do."""
        if not isinstance(doc, Mapping):
            raise StoreError(f"{where} is not a crossfuse corpus: its group has no '{ATTR_KEY}' attribute. "
                             "Build one with `crossfuse-align build` or `crossfuse-align pack`.")
        if doc.get("schema") != SCHEMA_VERSION:
            raise StoreError(f"{where} has store schema {doc.get('schema')!r}; this crossfuse reads schema "
                             f"{SCHEMA_VERSION}. Rebuild the corpus with this version or use a matching crossfuse release.")
        if doc.get("kind") not in KINDS:
            raise StoreError(f"{where} has unknown kind {doc.get('kind')!r}; expected one of {KINDS}.")
        complete = doc.get("complete") is True
        if require_complete and not complete:
            raise StoreError(f"{where} is incomplete (its build did not finish). Rerun the same build command "
                             "to resume it, or rebuild with --overwrite.")
        try:
            header = {"schema": SCHEMA_VERSION, "kind": doc["kind"], "complete": complete,
                      "fingerprint": _get(doc, "fingerprint", str, optional=True),
                      "scan_fingerprint": _get(doc, "scan_fingerprint", str, optional=True),
                      "inputs": _get(doc, "inputs", dict, optional=True),
                      "tool_version": _get(doc, "tool_version", str, optional=True)}
            if not complete:
                return cls(**header)
            return cls(**header, **_body(doc))
        except StoreError as exc:  # a field's check: say where, and what to do
            raise StoreError(f"{where}: the '{ATTR_KEY}' attribute {exc}; the store is damaged or was not written "
                             "by crossfuse. Rebuild it with `crossfuse-align build` or `pack`.") from exc


def _body(doc: Mapping) -> dict[str, Any]:
    """The fields of a complete record, validated."""
    reachable = _get(doc, "gamma_reachable", list, optional=True)
    if reachable is not None and (len(reachable) != 3 or not all(isinstance(r, bool) for r in reachable)):
        raise StoreError(f"has 'gamma_reachable' = {reachable!r}, expected three booleans")
    target = _get(doc, "target", dict, optional=True)
    return {"params": Params.from_json(_get(doc, "params", dict)), "sources": _items(doc, "sources", Source),
            "aux": Dataset.from_json(_get(doc, "aux", dict)),
            "target": Dataset.from_json(target) if target is not None else None,
            "gamma": _triple(doc, "gamma"), "gamma_reachable": tuple(reachable) if reachable is not None else None,
            "means_before": _triple(doc, "means_before"), "means_after": _triple(doc, "means_after"),
            "counts": Counts.from_json(_get(doc, "counts", dict)), "skipped": _items(doc, "skipped", Problem),
            "ivf_recall": _get(doc, "ivf_recall", float, optional=True),
            "w1": Distances.from_json(w1) if (w1 := _get(doc, "w1", dict, optional=True)) is not None else None,
            "luts": _luts(doc),
            "w1_luma": LumaDistances.from_json(d) if (d := _get(doc, "w1_luma", dict, optional=True)) else None,
            "created": _get(doc, "created", str, optional=True), "chunks": _chunks(doc),
            "stats_sha256": _get(doc, "stats_sha256", str, optional=True),
            "record_sha256": _get(doc, "record_sha256", str, optional=True)}


def _luts(doc: Mapping) -> tuple[tuple[int, ...], ...] | None:
    luts = _get(doc, "luts", list, optional=True)
    if luts is None:
        return None
    if len(luts) != 3 or not all(isinstance(t, list) and len(t) == 256 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in t) for t in luts):
        raise StoreError("has a malformed 'luts' (expected three lists of 256 levels)")
    return tuple(tuple(t) for t in luts)


def _chunks(doc: Mapping) -> dict[str, tuple[tuple[int, str], ...]] | None:
    chunks = _get(doc, "chunks", dict, optional=True)
    if chunks is None:
        return None
    out = {}
    for name, items in chunks.items():
        if name not in ARRAYS or not isinstance(items, list) or not all(
                isinstance(i, list) and len(i) == 2 and isinstance(i[0], int) and isinstance(i[1], str) for i in items):
            raise StoreError(f"has a malformed 'chunks' entry for {name!r}")
        out[name] = tuple((int(size), str(sha)) for size, sha in items)
    return out


#: Attributes of the ``stats`` group left out of its digest: ``build``, the facts of how the build
#: ran (scratch peak, pairs read twice), which differ between a resumed and an uninterrupted build
#: of the same corpus and which nothing draws or reads back.
UNDIGESTED_STATS = ("build",)


def stats_digest(group) -> str | None:
    """sha256 of a corpus' ``stats`` group: its attributes (but :data:`UNDIGESTED_STATS`) and, per
    array, its dtype, shape and values as read (a missing chunk reads as zeros, so it changes the
    digest too). None when the group has no ``stats``."""
    import hashlib

    import numpy as np

    if STATS_GROUP not in group:
        return None
    stats = group[STATS_GROUP]
    arrays = {}
    for name in sorted(stats.array_keys()):
        values = np.ascontiguousarray(stats[name][...])
        arrays[name] = [str(values.dtype), list(values.shape), hashlib.sha256(values.tobytes()).hexdigest()]
    attrs = {k: v for k, v in stats.attrs.items() if k not in UNDIGESTED_STATS}
    return json_sha256({"attrs": attrs, "arrays": arrays})


def check_meta(meta: Any, where: str, *, require_complete: bool = True) -> CorpusRecord:
    """The record of a stored ``crossfuse`` attribute (see :meth:`CorpusRecord.from_json`)."""
    return CorpusRecord.from_json(meta, where, require_complete=require_complete)


def _not_a_store_hint(url: str) -> str:
    """What to do about a path that is not a store: a dataset (manifest or folder of pairs) is
    packed first; anything else is a wrong path."""
    import os

    local = "://" not in url
    if local and (url.endswith(".json") and os.path.isfile(url)
                  or os.path.isdir(url) and any(os.path.isdir(os.path.join(url, d)) for d in ("ir", "infrared"))):
        return (f"It looks like a dataset of image pairs: pack it into a corpus first "
                f"(crossfuse-align pack --manifest {url} --out CORPUS.zarr) and pass that.")
    return "Check the path."


def check_protocol(url: str) -> None:
    """A StoreError naming ``url`` when its protocol (``gopher://``) is one fsspec does not know,
    or one whose package is not installed (``s3://`` without s3fs): said before any reading, not
    blamed on the store's metadata."""
    if "://" not in url:
        return
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise StoreError(f"{url}: crossfuse cannot read or write {protocol}:// URLs (fsspec knows no such protocol). "
                         "Use a local path or a protocol fsspec supports (s3://, gs://, az://, https:// ...).") from exc
    except ImportError as exc:
        raise StoreError(f"{url}: {protocol}:// needs a package that is not installed ({exc}).") from exc


def open_corpus(url: str, *, require_complete: bool = True):
    """Open a corpus read-only and check its record and arrays; returns ``(zarr.Group, CorpusRecord)``."""
    import zarr

    check_protocol(url)
    try:
        group = zarr.open_group(store=url, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(f"no Zarr group at {url}: {exc}. {_not_a_store_hint(url)}") from exc
    except RecursionError as exc:  # zarr.json nested deeper than the JSON reader goes
        raise StoreError(f"{url} is not a readable Zarr store: its metadata nests too deep to read. Rebuild it, or "
                         "restore its zarr.json.") from exc
    except (ValueError, TypeError, KeyError) as exc:  # junk zarr.json (JSONDecodeError is a ValueError)
        raise StoreError(f"{url} is not a readable Zarr store: its metadata is damaged ({type(exc).__name__}: "
                         f"{exc}). Rebuild it, or restore its zarr.json.") from exc
    record = CorpusRecord.from_json(group.attrs.get(ATTR_KEY), url, require_complete=require_complete)
    if record.complete:
        for name, (dtype, shape) in array_specs(record.counts.patches, record.params.patch).items():
            if name not in group:
                raise StoreError(f"{url} lacks the array '{name}' that schema 1 requires.")
            arr = group[name]
            if str(arr.dtype) != dtype or tuple(arr.shape) != shape:
                raise StoreError(f"{url}: array '{name}' is {arr.dtype}{tuple(arr.shape)}, schema 1 says {dtype}{shape}.")
    return group, record


def missing_chunks(url: str, group, record: CorpusRecord, names: tuple[str, ...] = ARRAYS) -> list[str]:
    """Chunks of arrays ``names`` that are absent, or (where the record has digests) of another
    size than written: one line each naming the array, the chunk and its rows. Zarr would read
    such a chunk as zeros; a reader must refuse the store instead. One listing per array."""
    found = []
    for name in names:
        arr = group[name]
        present = stored_chunks(url, name)
        recorded = (record.chunks or {}).get(name)
        for index in range(chunk_count(arr.shape[0], arr.chunks[0])):
            size = present.get(chunk_key(arr, index))
            rows = f"rows {index * arr.chunks[0]}:{min(arr.shape[0], (index + 1) * arr.chunks[0])}"
            if size is None:
                found.append(f"array '{name}' chunk {index} ({rows}) is missing")
            elif recorded is not None and index < len(recorded) and size != recorded[index][0]:
                found.append(f"array '{name}' chunk {index} ({rows}) is {size} bytes, {recorded[index][0]} were written")
    return found
