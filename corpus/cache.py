"""A local, size-limited cache of a remote corpus' chunks, so that a second epoch over ``s3://``
(or any fsspec URL) reads from local disk instead of the network.

:class:`ChunkCache` wraps the zarr store of a remote corpus: a whole chunk object read through
it is kept as a file under ``folder`` (written under a temporary name, then renamed, so loader
workers sharing the folder never see half a file), and later reads of that chunk come from
there, but only when its bytes match the chunk's recorded digest: a cached chunk edited, swapped
for another or cut short is deleted and fetched again (``refetched``), never served and never
blamed on the corpus. Metadata (``zarr.json``) always comes from the store. When the files exceed
``max_bytes`` the least recently used are deleted. The folder is keyed by the store's URL and its
record digest (:func:`cache_folder`), so a corpus rebuilt at the same URL never reads the old
one's chunks.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from zarr.storage import WrapperStore

from crossfuse.verified import matches

#: The default size limit of a corpus cache folder.
DEFAULT_BYTES = 8 << 30


def cache_folder(root: str, url: str, record_sha256: str | None) -> str:
    """The cache folder of the corpus at ``url`` (with record digest ``record_sha256``) under ``root``."""
    key = hashlib.sha256(f"{url.rstrip('/')}\n{record_sha256}".encode()).hexdigest()[:24]
    return os.path.join(root, key)


def _is_chunk(key: str) -> bool:
    """Whether a store key names a chunk object (zarr v3's default encoding: ``ARRAY/c/...``)."""
    return "/c/" in f"/{key}" and not key.endswith("zarr.json")


class ChunkCache(WrapperStore):
    """A read-through cache of whole chunk objects in ``folder``, at most ``max_bytes`` of them
    (least recently used deleted first). ``hits`` and ``misses`` count this process' reads."""

    def __init__(self, store: Any, *, folder: str, max_bytes: int = DEFAULT_BYTES,
                 digests: dict[str, tuple[str, int, int, int]] | None = None) -> None:
        super().__init__(store)
        self.folder, self.max_bytes = folder, int(max_bytes)
        self.digests = digests or {}
        self.hits = self.misses = self.refetched = 0
        self._total: int | None = None

    def _with_store(self, store: Any) -> ChunkCache:
        return type(self)(store, folder=self.folder, max_bytes=self.max_bytes, digests=self.digests)

    def __repr__(self) -> str:
        return f"ChunkCache({self._store!r}, folder={self.folder!r})"

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if byte_range is not None or not _is_chunk(key):
            return await self._store.get(key, prototype, byte_range)
        path = os.path.join(self.folder, *key.split("/"))
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if self._good(key, data):
                os.utime(path)  # the least recently used go first
                self.hits += 1
                return prototype.buffer.from_bytes(data)
            # edited, swapped or cut short in the cache: the cache's fault, not the corpus'; fetch again
            self.refetched += 1
            os.unlink(path)
        except FileNotFoundError:
            pass
        buffer = await self._store.get(key, prototype, None)
        if buffer is None:
            return None
        self.misses += 1
        self._keep(path, buffer.to_bytes())
        return buffer

    def _good(self, key: str, data: bytes) -> bool:
        """Whether cached ``data`` is chunk ``key`` as its corpus recorded it (True without a digest)."""
        expected = self.digests.get(key)
        return expected is None or matches(data, expected)

    def _keep(self, path: str, data: bytes) -> None:
        """Write one chunk into the cache (whole, or not at all), then trim it to ``max_bytes``."""
        if len(data) > self.max_bytes:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:  # a full disk only costs the cache, never the read
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        if self._total is None:
            self._total = sum(size for _, _, size in self._files())
        else:
            self._total += len(data)
        if self._total > self.max_bytes:
            self._trim()

    def _files(self) -> list[tuple[float, str, int]]:
        out = []
        for folder, _, names in os.walk(self.folder):
            for name in names:
                if name.endswith(".tmp"):
                    continue
                try:
                    st = os.stat(os.path.join(folder, name))
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, os.path.join(folder, name), st.st_size))
        return out

    def _trim(self) -> None:
        files = sorted(self._files())
        total = sum(size for _, _, size in files)
        for _, path, size in files:
            if total <= self.max_bytes:
                break
            try:
                os.unlink(path)
                total -= size
            except FileNotFoundError:
                pass
        self._total = total


def open_cached(url: str, *, folder: str, max_bytes: int = DEFAULT_BYTES,
                digests: dict[str, tuple[str, int, int, int]] | None = None) -> ChunkCache:
    """A read-only zarr store of the remote corpus at ``url`` through a :class:`ChunkCache` that
    serves a cached chunk only when it matches ``digests`` (store key -> (sha256, size, ...))."""
    from zarr.storage import FsspecStore

    return ChunkCache(FsspecStore.from_url(url, read_only=True), folder=folder, max_bytes=max_bytes, digests=digests)
