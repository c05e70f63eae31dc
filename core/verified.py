"""Reading a corpus' chunks only as they were written: every chunk object read is checked
against the (size, sha256) its record holds before zarr decodes it.

Presence and size (``missing_chunks``) prove little: a chunk edited in place keeps its size, and
one swapped for another chunk of the same array keeps both. :class:`VerifiedStore` wraps the zarr
store of a corpus and hashes each chunk object as it is read; a mismatch is a
:class:`ChunkDigestError` naming the corpus, the array, the chunk and its rows, raised before a
single wrong pixel is served. Stores written before crossfuse recorded digests are read
unchecked (there is nothing to check against). The cost is one sha256 pass over bytes already
in memory (BENCHMARKS.md: loader throughput with and without).
"""

from __future__ import annotations

import hashlib
from typing import Any

from zarr.storage import WrapperStore

from crossfuse.errors import StoreError


class ChunkDigestError(StoreError):
    """A chunk read does not match the digest its corpus recorded when it was written."""


def base_store(url: str) -> Any:
    """The read-only zarr store of the corpus at ``url`` (a local path or an fsspec URL)."""
    from zarr.storage import FsspecStore, LocalStore

    if "://" in url and not url.startswith("file://"):
        return FsspecStore.from_url(url, read_only=True)
    return LocalStore(url.removeprefix("file://"), read_only=True)


def chunk_digests(group: Any, record: Any, names: tuple[str, ...]) -> dict[str, tuple[str, int, int, int]]:
    """Store key of every recorded chunk of arrays ``names`` -> (sha256, size, first row, last row)."""
    from crossfuse.schema import chunk_key

    out = {}
    for name in names:
        recorded = (record.chunks or {}).get(name)
        if not recorded:
            continue
        arr = group[name]
        step = arr.chunks[0]
        for index, (size, sha) in enumerate(recorded):
            out[f"{name}/{chunk_key(arr, index)}"] = (str(sha), int(size), index * step,
                                                      min(arr.shape[0], (index + 1) * step))
    return out


def matches(data: bytes, expected: tuple[str, int, int, int]) -> bool:
    """Whether ``data`` has the size and sha256 of ``expected`` (:func:`chunk_digests`' entry)."""
    return len(data) == expected[1] and hashlib.sha256(data).hexdigest() == expected[0]


def check_chunk(url: str, key: str, data: bytes, expected: tuple[str, int, int, int]) -> None:
    """Raise :class:`ChunkDigestError` unless ``data`` is the chunk ``key`` as written."""
    _, _, first, last = expected
    if not matches(data, expected):
        array, _, _ = key.partition("/")
        index = key.split("/c/", 1)[-1].split("/")[0]
        raise ChunkDigestError(f"{url}: array '{array}' chunk {index} (rows {first}:{last}) is not the chunk that was "
                               f"written (its sha256 differs from the corpus record's); it was edited or swapped since "
                               f"the build. Nothing from it was used. Rebuild the corpus; `crossfuse-align verify "
                               f"{url}` lists every damaged chunk.")


class VerifiedStore(WrapperStore):
    """A read-only view of a corpus store whose chunk objects are checked against ``digests``
    (:func:`chunk_digests`) as they are read; ``url`` names the corpus in errors."""

    def __init__(self, store: Any, *, url: str, digests: dict[str, tuple[str, int, int, int]]) -> None:
        super().__init__(store)
        self.url, self.digests = url, digests

    def _with_store(self, store: Any) -> VerifiedStore:
        return type(self)(store, url=self.url, digests=self.digests)

    def __repr__(self) -> str:
        return f"VerifiedStore({self._store!r})"

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        expected = self.digests.get(key)
        if expected is None or byte_range is not None:
            return await self._store.get(key, prototype, byte_range)
        buffer = await self._store.get(key, prototype, None)
        if buffer is None:
            raise ChunkDigestError(f"{self.url}: array '{key.partition('/')[0]}' chunk ({key}) is missing; Zarr would "
                                   "read it as zeros. Rebuild the corpus.")
        check_chunk(self.url, key, buffer.to_bytes(), expected)
        return buffer


def open_verified(url: str, group: Any, record: Any, names: tuple[str, ...], *, store: Any = None) -> Any:
    """The zarr group of the corpus at ``url`` read through a :class:`VerifiedStore` checking the
    chunks of ``names``; ``store``: the store to wrap (default :func:`base_store`)."""
    import zarr

    wrapped = VerifiedStore(store if store is not None else base_store(url), url=url,
                            digests=chunk_digests(group, record, names))
    return zarr.open_group(store=wrapped, mode="r")
