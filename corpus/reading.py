"""Reading corpora: deterministic, chunk-wise, DDP- and worker-aware batches (the engine under
:mod:`crossfuse.corpus`'s public API).

An epoch's plan is computed from (seed, epoch) alone: every chunk of every corpus (repeated or
sub-sampled by its weight) is shuffled, consecutive chunks form shuffle buffers, each buffer's
patches are shuffled and cut into batches, and the batches are dealt to DDP ranks and then to
loader workers. Reading is chunk by chunk from Zarr, or from memory when the corpora are small
enough. Every rank yields the same number of batches, so DDP ranks never wait on each other.
"""

from __future__ import annotations

import math

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crossfuse.errors import ParameterError, StoreError
from crossfuse.schema import missing_chunks, open_corpus
from crossfuse.verified import ChunkDigestError, VerifiedStore, base_store, chunk_digests, open_verified

#: Luma weights of the visible image (ITU-R 601), as the release converts RGB to Y.
LUMA = (0.299, 0.587, 0.114)
#: The arrays a batch can carry: the pixels the trainer needs, and where each patch came from.
PIXELS = ("vis", "ir")
#: Every stored per-patch array: pixels, where each patch came from, its RGB means (0-255) and
#: its distance to the target (0 in a packed corpus).
FIELDS = ("vis", "ir", "source", "origin", "means", "distance")


@dataclass(frozen=True, kw_only=True)
class Block:
    """Rows ``start:stop`` of corpus ``corpus`` (one Zarr chunk)."""

    corpus: int
    start: int
    stop: int


@dataclass(frozen=True, kw_only=True)
class Subset:
    """Which patches of each corpus to read, without copying the store: those cut from the
    source ``pairs`` (pair ids), of corpora made from the auxiliary ``datasets`` (names, as
    ``records[i].aux.name``), and of those the ``best`` K' by distance to the target (ties in
    stored order; a packed corpus' distances are all 0, so its first K'). None: no condition."""

    best: int | None = None
    pairs: frozenset[str] | None = None
    datasets: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("pairs", "datasets"):  # any collection of names; one string is one name
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str) and not (hasattr(value, "__iter__")
                                                       and all(isinstance(v, str) for v in value)):
                    raise ParameterError(f"{name} must be a name or a collection of names (strings), got {value!r}.")
                object.__setattr__(self, name, frozenset([value] if isinstance(value, str) else value))
        if self.best is not None and (isinstance(self.best, bool) or not isinstance(self.best, int) or self.best < 1):
            raise ParameterError(f"best must be a positive number of patches, got {self.best!r}.")

    def rows(self, group, record) -> np.ndarray | None:
        """The stored rows of one corpus this subset keeps, sorted (None: all of them)."""
        if self.best is None and self.pairs is None and self.datasets is None:
            return None
        keep = np.ones(int(group["vis"].shape[0]), dtype=bool)
        if self.datasets is not None and record.aux.name not in self.datasets:
            keep[:] = False
        if self.pairs is not None:
            ids = [i for i, s in enumerate(record.sources) if s.id in self.pairs]
            keep &= np.isin(group["source"][...], ids)
        if self.best is not None:
            distance = np.where(keep, group["distance"][...].astype(np.float64), np.inf)
            order = np.argsort(distance, kind="stable")[:min(self.best, int(keep.sum()))]
            keep = np.zeros_like(keep)
            keep[order] = True
        return np.flatnonzero(keep)


class Corpora:
    """One or more corpus stores opened for reading (schema checked), with optional weights and
    a :class:`Subset` of each.

    ``in_memory``: None decides by size (``memory_limit`` bytes of patches), True/False forces.
    Handles are opened lazily once per process, so the object can be sent to loader workers.
    ``cache_dir``: remote corpora (any URL but ``file://``) read their chunks through a local
    cache there, at most ``cache_bytes`` per corpus (:mod:`crossfuse.corpus.cache`).
    """

    def __init__(self, urls: Sequence[str], weights: Sequence[float] | None = None, *,
                 in_memory: bool | None = None, memory_limit: int = 2 << 30, subset: Subset | None = None,
                 cache_dir: str | None = None, cache_bytes: int | None = None) -> None:
        if not urls:
            raise StoreError("no corpus given; pass at least one --data STORE.")
        self.urls = list(urls)
        self.weights = list(weights) if weights is not None else [1.0] * len(urls)
        if len(self.weights) != len(self.urls) or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0
                for w in self.weights):
            raise ParameterError(f"need one positive weight per corpus (one --weight per --data, or none), got "
                                 f"{self.weights} for {len(self.urls)} corpora.")
        self.lengths, self.chunks, self.records, patches = [], [], [], set()
        self.digests: list[dict] = []  # per corpus: store key of each recorded chunk -> its digest
        self.kept: list[np.ndarray | None] = []  # per corpus: the stored rows read (None: all)
        self.subset, self.cache_dir, self.cache_bytes = subset, cache_dir, cache_bytes
        for url in self.urls:
            group, record = open_corpus(url)
            lost = missing_chunks(url, group, record, FIELDS)
            if lost:
                raise StoreError(f"{url} is damaged: {'; '.join(lost[:3])}{' ...' if len(lost) > 3 else ''} since "
                                 "it was built, so it is not trained on (a missing chunk reads as zeros, a changed "
                                 f"one as wrong pixels). Rebuild the corpus; `crossfuse-align verify {url}` lists "
                                 "every damaged chunk.")
            self.lengths.append(int(group["vis"].shape[0]))
            self.chunks.append(int(group["vis"].chunks[0]))
            self.records.append(record)
            self.digests.append(chunk_digests(group, record, FIELDS))
            self.kept.append((subset or Subset()).rows(group, record))
            patches.add(record.params.patch)
        if len(patches) != 1:
            raise StoreError(f"corpora have different patch sizes {sorted(patches)}; batches need one size.")
        if subset is not None and not sum(self.sizes()):
            raise ParameterError(f"the subset {subset} keeps no patch of {', '.join(self.urls)} (their auxiliary "
                                 f"datasets: {', '.join(r.aux.name for r in self.records)}).")
        self.patch = patches.pop()
        size = sum(self.lengths) * 4 * self.patch * self.patch
        self.in_memory = size <= memory_limit if in_memory is None else in_memory
        self._pid: int | None = None
        self._groups: list = []
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None

    def __len__(self) -> int:
        """Patches read (those of the subset)."""
        return sum(self.sizes())

    def sizes(self) -> list[int]:
        """Per corpus, the patches read (its length, or its subset's size)."""
        return [n if kept is None else len(kept) for n, kept in zip(self.lengths, self.kept)]

    def local_rows(self, block: Block) -> np.ndarray:
        """The rows of ``block`` read, relative to its start."""
        kept = self.kept[block.corpus]
        if kept is None:
            return np.arange(block.stop - block.start)
        lo, hi = np.searchsorted(kept, [block.start, block.stop])
        return kept[lo:hi] - block.start

    def _store(self, corpus: int) -> Any:
        """What zarr opens for corpus ``corpus``: its store (with a chunk cache in front of a remote
        one), through a :class:`~crossfuse.verified.VerifiedStore` that checks every chunk read
        against the digest recorded when it was written."""
        url = self.urls[corpus]
        if self.cache_dir is None or "://" not in url or url.startswith("file://"):
            inner = base_store(url)
        else:
            from crossfuse.corpus import cache

            folder = cache.cache_folder(self.cache_dir, url, self.records[corpus].record_sha256)
            inner = cache.open_cached(url, folder=folder, max_bytes=self.cache_bytes or cache.DEFAULT_BYTES,
                                      digests=self.digests[corpus])
        return VerifiedStore(inner, url=url, digests=self.digests[corpus])

    def cache_stats(self) -> dict[str, int]:
        """Chunk reads from the local cache (``hits``) and from the remote store (``misses``) in
        this process."""
        stores = [getattr(g.store, "_store", g.store) for g in self._groups]
        return {"hits": sum(getattr(s, "hits", 0) for s in stores), "misses": sum(getattr(s, "misses", 0) for s in stores)}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_pid=None, _groups=[], _cache=None)
        return state

    def _open(self) -> None:
        if self._pid != os.getpid():
            import zarr

            self._groups = [zarr.open_group(store=self._store(c), mode="r") for c in range(len(self.urls))]
            self._cache = None
            self._pid = os.getpid()
            if self.in_memory:
                self._cache = [{name: self._read_array(g, Block(corpus=c, start=0, stop=n), name) for name in FIELDS}
                               for c, (g, n) in enumerate(zip(self._groups, self.lengths))]

    def read(self, block: Block, fields: tuple[str, ...] = PIXELS) -> tuple[np.ndarray, ...]:
        """The arrays ``fields`` of one block, in that order: by default uint8 ``vis`` (n, 3, P, P)
        and ``ir`` (n, 1, P, P); also ``source`` (n,) int32 and ``origin`` (n, 2) int32."""
        self._open()
        if self._cache is not None:
            return tuple(self._cache[block.corpus][name][block.start:block.stop] for name in fields)
        g = self._groups[block.corpus]
        return tuple(self._read_array(g, block, name) for name in fields)

    def _read_array(self, group, block: Block, name: str) -> np.ndarray:
        try:
            return group[name][block.start:block.stop]
        except ChunkDigestError:
            raise
        except Exception as exc:  # any codec or I/O failure: name the store, array and chunk
            url = self.urls[block.corpus]
            raise StoreError(f"{url}: array '{name}' (rows {block.start}:{block.stop}) cannot be read "
                             f"({type(exc).__name__}: {exc}); run `crossfuse-align verify {url}` and rebuild "
                             "the corpus.") from exc

    def blocks(self) -> list[Block]:
        """Every chunk holding a patch read, in stored order."""
        every = [Block(corpus=c, start=s, stop=min(n, s + step))
                 for c, (n, step) in enumerate(zip(self.lengths, self.chunks)) for s in range(0, n, step)]
        return [b for b in every if self.kept[b.corpus] is None or len(self.local_rows(b))]


def _weighted_blocks(corpora: Corpora, rng: np.random.Generator) -> list[Block]:
    """Every block of each corpus floor(weight) times, plus, for the fraction f of the weight, a
    seeded uniform draw of blocks without replacement whose count is ``f n`` rounded down or up at
    random (up with probability its fractional part). Each block is then drawn with probability f,
    so a corpus gives weight x its patches per epoch in expectation, a one-block corpus included
    (rounding ``f n`` to whole blocks dropped a one-block corpus of weight 0.5 every epoch)."""
    out: list[Block] = []
    blocks = corpora.blocks()
    for c, weight in enumerate(corpora.weights):
        mine = [b for b in blocks if b.corpus == c]
        out += mine * int(weight)
        share = (weight - int(weight)) * len(mine)
        if share > 0:
            extra = int(share) + int(rng.random() < share - int(share))
            out += [mine[i] for i in sorted(rng.choice(len(mine), size=extra, replace=False))]
    return out


@dataclass(frozen=True, kw_only=True)
class EpochPlan:
    """One epoch as flat arrays: the shuffled sequence of patches (``block`` index into
    ``blocks``, ``row`` within it), cut into batches of ``batch_size``; this rank owns the
    batches numbered ``mine``."""

    blocks: list[Block]
    block: np.ndarray  # (n,) int64
    row: np.ndarray    # (n,) int64
    batch_size: int
    mine: np.ndarray   # (batches_per_rank,) int64

    @property
    def batches_per_rank(self) -> int:
        return len(self.mine)

    def batch(self, k: int) -> list[tuple[Block, np.ndarray]]:
        """Batch ``k`` of the epoch as (block, rows within the block) parts."""
        return [(self.blocks[b], rows) for b, rows in self.batch_parts(k)]

    def batch_parts(self, k: int) -> list[tuple[int, np.ndarray]]:
        """Batch ``k`` as (index into ``blocks``, rows) parts; a block repeated by its corpus
        weight has one index per repeat."""
        sel = slice(k * self.batch_size, (k + 1) * self.batch_size)
        blocks, rows = self.block[sel], self.row[sel]
        return [(b, rows[blocks == b]) for b in dict.fromkeys(blocks.tolist())]

    @property
    def batches(self) -> list[list[tuple[Block, np.ndarray]]]:
        """This rank's batches, in order."""
        return [self.batch(int(k)) for k in self.mine]


def plan_epoch(corpora: Corpora, *, seed: int, epoch: int, batch_size: int, rank: int = 0, world: int = 1,
               buffer_chunks: int = 4, drop_last: bool = True) -> EpochPlan:
    """The deterministic plan of ``epoch``: blocks shuffled, patches shuffled within buffers of
    ``buffer_chunks`` blocks, the sequence cut into batches (an incomplete last batch is dropped,
    or with ``drop_last`` False kept as a smaller one); rank ``r`` of ``world`` takes batches r,
    r + world, ... and every rank the same number of them (batches beyond a multiple of ``world``
    are left out, so that DDP ranks stay in step)."""
    rng = np.random.default_rng([seed, epoch])
    blocks = _weighted_blocks(corpora, rng)
    order = rng.permutation(len(blocks))
    local = [corpora.local_rows(b) for b in blocks]
    sizes = np.array([len(rows) for rows in local], dtype=np.int64)
    seq_block, seq_row = [], []
    for index, first in enumerate(range(0, len(order), buffer_chunks)):
        ids = order[first:first + buffer_chunks]
        block = np.repeat(ids, sizes[ids])
        row = np.concatenate([local[i] for i in ids])
        perm = np.random.default_rng([seed, epoch, index]).permutation(len(block))
        seq_block.append(block[perm])
        seq_row.append(row[perm])
    block = np.concatenate(seq_block) if seq_block else np.zeros(0, np.int64)
    row = np.concatenate(seq_row) if seq_row else np.zeros(0, np.int64)
    batches = len(block) // batch_size if drop_last else -(-len(block) // batch_size)
    per_rank = batches // world
    mine = np.arange(rank, per_rank * world, world, dtype=np.int64)
    return EpochPlan(blocks=blocks, block=block, row=row, batch_size=batch_size, mine=mine)


def fixed_patches(urls: Sequence[str], count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` patches spread evenly over the corpora (the same ones every time): uint8 visible
    (n, 3, P, P) and infrared (n, 1, P, P), for the trainer's sample sheets."""
    vis, ir = [], []
    for i, url in enumerate(urls[:count]):
        group, record = open_corpus(url)
        group = open_verified(url, group, record, PIXELS)  # checked like every other read
        n = group["vis"].shape[0]
        share = count // len(urls[:count]) + (1 if i < count % len(urls[:count]) else 0)
        for row in np.unique(np.linspace(0, n - 1, share).round().astype(int)):
            vis.append(group["vis"][int(row)])
            ir.append(group["ir"][int(row)])
    return torch.from_numpy(np.stack(vis)), torch.from_numpy(np.stack(ir))


def to_model_inputs(vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 3, P, P) RGB and (n, 1, P, P) infrared -> float32 visible Y and infrared in [0, 1],
    each (n, 1, P, P): ``Y = (0.299 R + 0.587 G + 0.114 B) / 255``, not rounded. Runs on the
    tensors' device, so the trainer converts after moving the uint8 batch (half the bytes)."""
    v = vis.float()
    y = (LUMA[0] * v[:, 0:1] + LUMA[1] * v[:, 1:2] + LUMA[2] * v[:, 2:3]) / 255.0
    return y, ir.float() / 255.0


class PatchBatches(torch.utils.data.IterableDataset):
    """Batches of one epoch for this rank, as tuples of tensors named by ``fields``: by default
    uint8 ``(vis, ir)``, (n, 3, P, P) and (n, 1, P, P); ``source`` (n,) and ``origin`` (n, 2)
    int32 and ``corpus`` (n,) int64 (which store) on request. Use with ``DataLoader(batch_size=None)``
    and turn the pixels into model inputs with :func:`to_model_inputs` on the training device.
    Loader worker ``w`` of ``K`` produces the rank's batches w, w + K, ..., so the loader's
    round-robin yields the same sequence whatever K is. Call :meth:`set_epoch` before each epoch;
    ``set_epoch(e, skip=n)`` starts epoch ``e`` at its batch ``n`` (a mid-epoch resume: the
    batches an uninterrupted epoch would have given from there, with any number of workers)."""

    def __init__(self, corpora: Corpora, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 buffer_chunks: int = 4, fields: tuple[str, ...] = PIXELS, drop_last: bool = True) -> None:
        super().__init__()
        unknown = set(fields) - set(FIELDS + ("corpus",))
        if unknown:
            raise ParameterError(f"unknown batch field(s) {sorted(unknown)}; choose from {FIELDS + ('corpus',)}.")
        self.corpora, self.batch_size, self.seed = corpora, batch_size, seed
        self.rank, self.world, self.buffer_chunks = rank, world, buffer_chunks
        self.fields = tuple(fields)
        self._stored = tuple(f for f in fields if f != "corpus")
        self.epoch, self.skip, self.drop_last = 0, 0, drop_last

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def plan(self) -> EpochPlan:
        return plan_epoch(self.corpora, seed=self.seed, epoch=self.epoch, batch_size=self.batch_size,
                          rank=self.rank, world=self.world, buffer_chunks=self.buffer_chunks, drop_last=self.drop_last)

    def __len__(self) -> int:
        """Batches this rank gets in the current epoch (after a resume's skipped ones)."""
        return max(0, self.plan().batches_per_rank - self.skip)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan = self.plan()
        batches = [plan.batch_parts(int(k)) for k in plan.mine[self.skip:][worker::workers]]
        order = iter(dict.fromkeys(b for parts in batches for b, _ in parts))  # blocks by first use
        last_use = {b: i for i, parts in enumerate(batches) for b, _ in parts}
        # Streaming: one thread decompresses the next ``buffer_chunks`` blocks while batches are
        # served (Zstd releases the GIL); each block is dropped after the last batch that uses it.
        reader = None if self.corpora.in_memory else ThreadPoolExecutor(1, thread_name_prefix="crossfuse-read")
        pending: dict[int, Future | tuple[np.ndarray, np.ndarray]] = {}

        def fetch(limit: int) -> None:
            """Start reading blocks in order of first use while fewer than ``limit`` are held."""
            while len(pending) < limit and (b := next(order, None)) is not None:
                block = plan.blocks[b]
                pending[b] = (reader.submit(self.corpora.read, block, self._stored) if reader
                              else self.corpora.read(block, self._stored))

        try:
            for i, parts in enumerate(batches):
                columns: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}
                for b, rows in parts:
                    while b not in pending:  # read up to it (a batch may span more than the window)
                        fetch(len(pending) + 1)
                    if isinstance(pending[b], Future):
                        pending[b] = pending[b].result()
                    for name, array in zip(self._stored, pending[b]):
                        columns[name].append(array[rows])
                    if "corpus" in columns:
                        columns["corpus"].append(np.full(len(rows), plan.blocks[b].corpus, dtype=np.int64))
                for b, _ in parts:
                    if last_use[b] == i:
                        del pending[b]
                fetch(self.buffer_chunks)
                yield tuple(torch.from_numpy(np.concatenate(columns[f])) for f in self.fields)
        finally:
            if reader is not None:
                reader.shutdown(wait=False, cancel_futures=True)
