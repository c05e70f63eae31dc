"""Corpus store schema 1: the names, dtypes and attribute checks shared by writer and reader.

A corpus is a Zarr v3 group holding the arrays in :data:`ARRAYS` (first axis N, one row per
patch) and a JSON attribute ``crossfuse`` (see DESIGN.md). Nothing here imports zarr at module
level; :func:`open_corpus` does so lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossfuse.errors import StoreError

SCHEMA_VERSION = 1
ATTR_KEY = "crossfuse"
KINDS = ("aligned", "packed")
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


def check_meta(meta: Any, where: str, *, require_complete: bool = True) -> dict[str, Any]:
    """Validate the ``crossfuse`` attribute of a store and return it.

    Raises :class:`StoreError` naming ``where`` when the attribute is missing, of another
    schema version, of an unknown kind, or (with ``require_complete``) not marked complete.
    """
    if not isinstance(meta, Mapping):
        raise StoreError(
            f"{where} is not a crossfuse corpus: its group has no '{ATTR_KEY}' attribute. "
            "Build one with `crossfuse-align build` or `crossfuse-align pack`."
        )
    schema = meta.get("schema")
    if schema != SCHEMA_VERSION:
        raise StoreError(
            f"{where} has store schema {schema!r}; this crossfuse reads schema {SCHEMA_VERSION}. "
            "Rebuild the corpus with this version or use a matching crossfuse release."
        )
    if meta.get("kind") not in KINDS:
        raise StoreError(f"{where} has unknown kind {meta.get('kind')!r}; expected one of {KINDS}.")
    if require_complete and not meta.get("complete", False):
        raise StoreError(
            f"{where} is incomplete (its build did not finish). Rerun the same build command "
            "to resume it, or rebuild with --overwrite."
        )
    return dict(meta)


def open_corpus(url: str, *, require_complete: bool = True):
    """Open a corpus read-only and check its schema; returns ``(zarr.Group, meta dict)``."""
    import zarr

    try:
        group = zarr.open_group(store=url, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(f"no Zarr group at {url}: {exc}. Check the path.") from exc
    meta = check_meta(group.attrs.get(ATTR_KEY), url, require_complete=require_complete)
    patch = int(meta["params"]["patch"])
    n = int(meta["counts"]["patches"]) if require_complete else None
    if n is not None:
        for name, (dtype, shape) in array_specs(n, patch).items():
            if name not in group:
                raise StoreError(f"{url} lacks the array '{name}' that schema 1 requires.")
            arr = group[name]
            if str(arr.dtype) != dtype or tuple(arr.shape) != shape:
                raise StoreError(
                    f"{url}: array '{name}' is {arr.dtype}{tuple(arr.shape)}, "
                    f"schema 1 says {dtype}{shape}."
                )
    return group, meta
